"""Executor, Session and `hetpart run`: numerics, concurrency, streams, emulation, errors."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_plan_fixtures import (
    BRANCHY_SPLIT,
    alternate,
    branchy_model,
    cluster,
    device,
    save_and_analyse,
    token_model,
)

from partitioner import Session
from partitioner.cli import main
from partitioner.errors import ClusterError, PlanError, RunError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.io import load_plan, write_plan
from partitioner.runtime.executor import Executor
from partitioner.runtime.records import load_run

X = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)


def _plan_dir(tmp_path: Path, model: onnx.ModelProto, devices, assignment=None) -> Path:
    analysed = save_and_analyse(model, tmp_path, "model")
    ids = [d.id for d in devices]
    plan = plan_from_assignment(analysed, cluster(*devices), assignment or alternate(analysed, ids))
    write_plan(plan, analysed, tmp_path / "plan")
    return tmp_path / "plan"


def _whole(tmp_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def test_mixed_runners_match_whole_model(tmp_path: Path) -> None:
    root = _plan_dir(tmp_path, branchy_model(), [device("a"), device("r", runner="reference")])
    plan = load_plan(root)
    # Alternating placement; the cut merges what it can and splits where branches can overlap.
    assert len(plan.partitions) == 6
    assert {p.device for p in plan.partitions} == {"a", "r"}
    with Executor(plan, root) as executor:
        result = executor.run({"x": X})
    expected = _whole(tmp_path, {"x": X})
    for name, value in expected.items():
        np.testing.assert_allclose(result.outputs[name], value, rtol=1e-5, atol=1e-6)
    assert set(result.partition_s) == set(range(6))
    # Every cross-device input was copied and timed; same-device inputs were not.
    copied = {(t.tensor, t.dst_partition) for t in result.transfers}
    expected_copies = {
        (i.name, p.index)
        for p in plan.partitions
        for i in p.inputs
        if i.from_partition is not None and plan.partitions[i.from_partition].device != p.device
    }
    assert copied == expected_copies and copied


def _heavy_branches(n: int = 256, depth: int = 12) -> onnx.ModelProto:
    """Two independent chains of MatMul+Tanh from one input; each takes milliseconds."""
    rng = np.random.default_rng(0)
    inits, nodes, outs = [], [], []
    for branch in "ab":
        prev = "x"
        for i in range(depth):
            w = f"W{branch}{i}"
            inits.append(
                numpy_helper.from_array((rng.standard_normal((n, n)) / n).astype(np.float32), w)
            )
            nodes.append(
                helper.make_node("MatMul", [prev, w], [f"{branch}m{i}"], name=f"{branch}_mm{i}")
            )
            nodes.append(
                helper.make_node(
                    "Tanh", [f"{branch}m{i}"], [f"{branch}{i}"], name=f"{branch}_tanh{i}"
                )
            )
            prev = f"{branch}{i}"
        outs.append(prev)
    nodes.append(helper.make_node("Add", outs, ["y"], name="join"))
    graph = helper.make_graph(
        nodes,
        "heavy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


class _MeetAtBarrier:
    """A prepared partition that waits until the other branch's call has started too: the
    run completes only if the executor calls both at the same time (checked by rendezvous,
    not by timing, so it holds on one core or a loaded machine)."""

    def __init__(self, inner: Any, barrier: threading.Barrier) -> None:
        self._inner, self._barrier = inner, barrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def run(self, feeds: Any) -> Any:
        self._barrier.wait()
        return self._inner.run(feeds)


def test_independent_partitions_on_different_devices_run_concurrently(tmp_path: Path) -> None:
    model = _heavy_branches()
    assignment = {n.name: ("b" if n.name.startswith("b_") else "a") for n in model.graph.node}
    root = _plan_dir(tmp_path, model, [device("a"), device("b")], assignment)
    plan = load_plan(root)
    branch_a = next(p.index for p in plan.partitions if "a_mm0" in p.nodes)
    branch_b = next(p.index for p in plan.partitions if p.device == "b")
    x = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    with Executor(plan, root) as executor:
        # A stream first: with one shared thread pool its idle count outgrew its threads, and
        # the two branches then queued behind each other on one worker.
        executor.stream([{"x": x}] * 4)
        # A serialising executor would leave one branch waiting: the barrier then breaks.
        barrier = threading.Barrier(2, timeout=60)
        for index in (branch_a, branch_b):
            executor._prepared[index] = _MeetAtBarrier(executor._prepared[index], barrier)
        for _ in range(3):
            result = executor.run({"x": x})
    np.testing.assert_allclose(
        result.outputs["y"], _whole(tmp_path, {"x": x})["y"], rtol=1e-4, atol=1e-5
    )


def test_stream_pipelines_inputs_and_keeps_them_apart(tmp_path: Path) -> None:
    root = _plan_dir(tmp_path, branchy_model(), [device("a"), device("b")], BRANCHY_SPLIT)
    inputs = [{"x": X * (k + 1)} for k in range(6)]
    with Executor(load_plan(root), root) as executor:
        streamed = executor.stream(inputs)
    assert len(streamed.results) == 6 and streamed.throughput_per_s > 0
    for feeds, result in zip(inputs, streamed.results, strict=True):
        np.testing.assert_allclose(
            result.outputs["y"], _whole(tmp_path, feeds)["y"], rtol=1e-5, atol=1e-6
        )


def test_null_runner_exercises_plumbing(tmp_path: Path) -> None:
    root = _plan_dir(tmp_path, branchy_model(), [device("n0", "null"), device("n1", "null")])
    with Executor(load_plan(root), root) as executor:
        out = executor.run({"x": X}).outputs
    assert out["y"].shape == (2, 16) and not out["y"].any() and out["a1"].dtype == np.float32


def test_absent_device_needs_emulate(tmp_path: Path) -> None:
    gpu = device("gpu0", provider="CUDAExecutionProvider")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is present here: nothing to emulate")
    root = _plan_dir(
        tmp_path,
        branchy_model(),
        [device("a"), gpu],
        {k: ("gpu0" if v == "b" else "a") for k, v in BRANCHY_SPLIT.items()},
    )
    plan = load_plan(root)
    with pytest.raises(ClusterError, match="device 'gpu0' is not available.*--emulate"):
        Executor(plan, root)
    with Executor(plan, root, emulate=True) as executor:
        assert set(executor.emulated) == {"gpu0"}
        out = executor.run({"x": X}).outputs
    np.testing.assert_allclose(out["y"], _whole(tmp_path, {"x": X})["y"], rtol=1e-5, atol=1e-6)


def test_spec_sheet_device_needs_emulate_even_with_its_runner_installed(tmp_path: Path) -> None:
    """A preset's CPU (local = false) runs ONNX Runtime, but it is not this machine."""
    epyc = dataclasses.replace(device("epyc"), local=False)
    root = _plan_dir(tmp_path, branchy_model(), [device("a"), epyc],
                     {k: ("epyc" if v == "b" else "a") for k, v in BRANCHY_SPLIT.items()})
    plan = load_plan(root)
    with pytest.raises(ClusterError, match="device 'epyc' is not available.*spec sheet"):
        Executor(plan, root)
    with Executor(plan, root, emulate=True) as executor:
        assert set(executor.emulated) == {"epyc"}


def test_runner_failure_names_partition_and_device(tmp_path: Path) -> None:
    root = _plan_dir(tmp_path, branchy_model(), [device("a"), device("b")], BRANCHY_SPLIT)
    with Executor(load_plan(root), root) as executor:
        # A wrong shape is refused before any runner sees it.
        wrong = r"^input 'x': expected float32\[2,16\], got float32\[3,5\]$"
        with pytest.raises(RunError, match=wrong):
            executor.run({"x": np.zeros((3, 5), np.float32)})
        with pytest.raises(RunError, match=r"^the model's inputs are \['x'\]: missing \['x'\]$"):
            executor.run({})
        with pytest.raises(RunError, match=r"^the model's inputs are \['x'\]: unknown \['y'\]$"):
            executor.run({"x": np.zeros((2, 16), np.float32), "y": 1.0})
        with pytest.raises(RunError, match="must map each input name to its value.*got a list"):
            executor.run([np.zeros((2, 16), np.float32)])  # type: ignore[arg-type]
        # What a runtime raises comes back as one line naming the partition and device.
        with pytest.raises(RunError, match="^onnxruntime failed running partition 0 on a: .*"
                           "invalid dimensions for input: x [^\n]*Expected: 16"):
            executor._prepared[0].run({"x": np.zeros((3, 5), np.float32)})
        def broken(feeds: object) -> dict[str, np.ndarray]:
            raise RuntimeError("kaput\n  in some.cpp:12")

        executor._prepared[0].run = broken
        one_line = r"^partition 0 on a failed: RuntimeError: kaput in some\.cpp:12$"
        with pytest.raises(RunError, match=one_line):
            executor.run({"x": X})


def test_session_api(tmp_path: Path) -> None:
    root = _plan_dir(tmp_path, branchy_model(), [device("a"), device("b")], BRANCHY_SPLIT)
    with Session(root) as session:
        assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
            ("x", [2, 16], "tensor(float)")
        ]
        assert [o.name for o in session.get_outputs()] == ["y", "a1"]
        y, a1 = session.run(None, {"x": X})
        (only,) = session.run(["a1"], {"x": X})
        with pytest.raises(RunError, match="unknown output"):
            session.run(["nope"], {"x": X})
    expected = _whole(tmp_path, {"x": X})
    np.testing.assert_allclose(y, expected["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(only, a1)
    # A Plan object without its directory: partitions are cut again from the model in memory.
    with Session(load_plan(root)) as in_memory:
        np.testing.assert_array_equal(in_memory.run(["y"], {"x": X})[0], y)


@pytest.mark.openvino
def test_openvino_and_onnxruntime_devices_together(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    devices = [device("ort"), device("ov", runner="openvino", threads=1)]
    root = _plan_dir(tmp_path, branchy_model(), devices)
    with Executor(load_plan(root), root) as executor:
        out = executor.run({"x": X}).outputs
    np.testing.assert_allclose(out["y"], _whole(tmp_path, {"x": X})["y"], rtol=1e-4, atol=1e-5)


def test_cli_run_json_check_save(tmp_path: Path, capsys) -> None:
    root = _plan_dir(tmp_path, branchy_model(), [device("a"), device("b")], BRANCHY_SPLIT)
    code = main(["run", str(root), "--json", "--check", "--repeat", "3", "--stream", "4", "--save"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0
    assert record["check"]["passed"] and record["max_abs_error"] < 1e-5
    assert record["max_rel_error"] < 1e-5
    assert record["measured_latency_s"] > 0 and record["predicted_latency_s"] > 0
    assert record["throughput_per_s"] > 0 and len(record["partitions"]) == 5
    assert all(p["measured_s"] > 0 for p in record["partitions"])
    starts = {p["index"]: p["start_s"] for p in record["partitions"]}
    assert min(starts.values()) == 0.0  # offsets from the run's first call
    plan = load_plan(root)
    for part in plan.partitions:  # a call starts after the calls it reads from
        for i in part.inputs:
            if i.from_partition is not None:
                assert starts[part.index] > starts[i.from_partition]
    assert load_run(root)["measured_latency_s"] == record["measured_latency_s"]
    (root / "plan.json").write_text((root / "plan.json").read_text() + "\n")
    with pytest.raises(PlanError, match="different plan.json"):
        load_run(root)


def test_cli_text_output_and_token_inputs(tmp_path: Path, capsys) -> None:
    root = _plan_dir(tmp_path, token_model(vocab=7), [device("a"), device("b")])
    assert main(["run", str(root), "--check", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "check            PASSED" in out and "p1" in out


def test_cli_bad_inputs_file(tmp_path: Path, capsys) -> None:
    root = _plan_dir(tmp_path, branchy_model(), [device("a")], dict.fromkeys(BRANCHY_SPLIT, "a"))
    good = tmp_path / "good.npz"
    np.savez(good, x=X)
    assert main(["run", str(root), "--inputs", str(good), "--repeat", "1"]) == 0
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=X.astype(np.float64)[:1], extra=X)
    assert main(["run", str(root), "--inputs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown name(s) ['extra']" in err and "shape [1, 16], expected [2, 16]" in err
    assert "dtype float64, expected float32" in err and "Traceback" not in err
    (tmp_path / "junk.npz").write_text("junk")
    assert main(["run", str(root), "--inputs", str(tmp_path / "junk.npz")]) == 2
    assert "cannot read as .npz" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_emulate_flag(tmp_path: Path, capsys) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is present here: nothing to emulate")
    gpu = device("gpu0", provider="CUDAExecutionProvider")
    root = _plan_dir(
        tmp_path,
        branchy_model(),
        [device("a"), gpu],
        {k: ("gpu0" if v == "b" else "a") for k, v in BRANCHY_SPLIT.items()},
    )
    assert main(["run", str(root), "--repeat", "1"]) == 2
    err = capsys.readouterr().err
    assert "device 'gpu0' is not available" in err and "--emulate" in err
    assert main(["run", str(root), "--repeat", "1", "--emulate", "--check"]) == 0
    out = capsys.readouterr().out
    assert "EMULATED devices" in out and "gpu0" in out and "PASSED" in out


def test_host_hand_offs_share_arrays_without_aliasing_between_runs(tmp_path: Path) -> None:
    from partitioner.runtime.executor import _hand_off

    array = np.arange(4, dtype=np.float32)
    assert _hand_off(array) is array  # host memory is shared: no copy between host devices
    assert isinstance(_hand_off(ort.OrtValue.ortvalue_from_numpy(array)), np.ndarray)
    root = _plan_dir(tmp_path, branchy_model(), [device("a"), device("b")])
    other = np.random.default_rng(9).standard_normal(X.shape).astype(np.float32)
    with Executor(load_plan(root), root) as executor:
        first = executor.run({"x": X})
        kept = {k: v.copy() for k, v in first.outputs.items()}
        second = executor.run({"x": other})
        assert first.transfers and all(t.seconds >= 0 for t in first.transfers)
    for name, value in kept.items():  # a later run never writes into earlier results
        np.testing.assert_array_equal(first.outputs[name], value)
        assert not np.array_equal(second.outputs[name], value)
    for name, value in _whole(tmp_path, {"x": other}).items():
        np.testing.assert_allclose(second.outputs[name], value, rtol=1e-5, atol=1e-6)
