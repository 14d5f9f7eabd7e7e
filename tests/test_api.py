"""The Python API: compile(model, cluster, CompileOptions) -> Plan, Session, write/load_plan."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_plan_fixtures import branchy_model, cluster, device

import partitioner
from partitioner.errors import ClusterError, PartitionerError, PlanError, RunError, ShapeError
from partitioner.registry import cost_models

X = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)


def _expected(model: onnx.ModelProto) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": X})  # type: ignore[no-any-return]


def _check_runs(session: partitioner.Session, model: onnx.ModelProto) -> None:
    with session:
        outputs = session.run(None, {"x": X})
    for got, want in zip(outputs, _expected(model), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_compile_returns_a_plan_that_a_session_runs_without_a_plan_dir(tmp_path: Path) -> None:
    path = tmp_path / "branchy.onnx"
    onnx.save(branchy_model(), path)
    two = cluster(device("a"), device("b"))
    options = partitioner.CompileOptions(time_limit_s=2, cost_model=cost_models.create("roofline"))
    plan = partitioner.compile(str(path), two, options)
    assert isinstance(plan, partitioner.Plan) and plan.objective == "latency"
    assert set(plan.assignment) == {n.name for n in branchy_model().graph.node}
    _check_runs(partitioner.Session(plan), branchy_model())
    # A plan whose model changed since compiling is refused, not run on the wrong weights.
    onnx.save(branchy_model(seed=3), path)
    with pytest.raises(PlanError, match="does not match the plan"):
        partitioner.Session(plan)


def test_in_memory_model_on_a_preset_writes_loads_and_runs(tmp_path: Path) -> None:
    model = branchy_model()
    # One branch pinned to each device, so the plan really is split across the preset.
    options = partitioner.CompileOptions(
        time_limit_s=2, cost_model="roofline", pins=["a_mm=l4", "b_mm=cpu"]
    )
    plan = partitioner.compile(model, "cpu+l4", options)
    assert plan.model.path == "<ModelProto>" and plan.solver.num_partitions >= 2
    assert {plan.assignment["a_mm"], plan.assignment["b_mm"]} == {"l4", "cpu"}
    written = partitioner.write_plan(plan, model, tmp_path / "plan")
    assert written == tmp_path / "plan" / "plan.json"
    loaded = partitioner.load_plan(tmp_path / "plan")
    assert loaded == plan and loaded.placement == plan.placement
    # The preset's devices are not on this machine: emulated on ONNX Runtime CPU.
    _check_runs(partitioner.Session(tmp_path / "plan", emulate=True), model)
    _check_runs(partitioner.Session(plan, plan_dir=tmp_path / "plan", emulate=True), model)
    # write_plan refuses a model that is not the plan's (its partitions would be wrong).
    with pytest.raises(PlanError, match="does not match the plan"):
        partitioner.write_plan(plan, branchy_model(seed=3), tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_in_memory_model_on_local_ort_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETPART_CACHE", str(tmp_path / "cache"))
    model = branchy_model()
    options = partitioner.CompileOptions(devices=["ort-cpu"], time_limit_s=2)
    plan = partitioner.compile(model, "local", options)
    assert plan.cluster.device_ids == ("ort-cpu",)
    assert {p.device for p in plan.partitions} == {"ort-cpu"}
    partitioner.write_plan(plan, model, tmp_path / "plan")
    assert partitioner.load_plan(tmp_path / "plan") == plan
    _check_runs(partitioner.Session(tmp_path / "plan"), model)


def test_session_runs_a_plan_compiled_from_a_model_proto_in_memory() -> None:
    model = branchy_model()
    plan = partitioner.compile(model, "cpu+l4", partitioner.CompileOptions(time_limit_s=2))
    _check_runs(partitioner.Session(plan, emulate=True), model)
    _check_runs(partitioner.Session(plan, model=model, emulate=True), model)
    # A plan that lost its source (rebuilt from JSON, say) needs the model handed in.
    bare = dataclasses.replace(plan, source=None)
    with pytest.raises(RunError, match=r"compiled from an in-memory model\): pass it as "
                                       r"Session\(plan, model=\.\.\.\)"):
        partitioner.Session(bare, emulate=True)
    other = branchy_model()
    other.graph.node[0].name = "renamed"
    with pytest.raises(RunError, match="does not match the plan"):
        partitioner.Session(plan, model=other, emulate=True)


def test_import_partitioner_is_lazy() -> None:
    code = (
        "import sys, partitioner\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'onnx', 'onnxruntime', 'ortools', 'openvino', 'numpy', 'partitioner.compiler'})\n"
        "assert not heavy, heavy\n"
        "loaded = [m for m in sys.modules if m.startswith('partitioner.')]\n"
        "assert loaded == ['partitioner._version'], loaded\n"
        "print(partitioner.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == partitioner.__version__


def test_facade_exports_exactly_the_public_api() -> None:
    assert sorted(partitioner.__all__) == sorted([
        "compile", "CompileOptions", "Session", "Plan", "Cluster", "load_plan", "write_plan",
        "Generator",
        "__version__",
    ])
    for name in partitioner.__all__:
        assert getattr(partitioner, name) is not None
        assert name in dir(partitioner)
    with pytest.raises(AttributeError, match="no attribute 'compile_model'"):
        _ = partitioner.compile_model  # type: ignore[attr-defined]


def test_compile_options_are_frozen_hashable_plain_data() -> None:
    options = partitioner.CompileOptions(
        devices=["cpu"], pins=["a_mm=cpu"], input_shapes={"x": [2, 16]}
    )
    assert options.devices == ("cpu",) and options.pins == ("a_mm=cpu",)
    assert options.input_shapes == {"x": (2, 16)}
    assert hash(options) == hash(dataclasses.replace(options))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.objective = "cost"  # type: ignore[misc]
    assert partitioner.CompileOptions(objective="cost", latency_target_s=1e-3).latency_target_s
    with pytest.raises(ShapeError, match=r"input_shapes\['x'\]='2,16'"):
        partitioner.CompileOptions(input_shapes={"x": "2,16"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("objective", "fastest", PartitionerError),
        ("time_limit_s", 0, PartitionerError),
        ("time_limit_s", float("nan"), PartitionerError),
        ("workers", 0, PartitionerError),
        ("workers", 1.5, PartitionerError),
        ("seed", -1, PartitionerError),
        ("seed", 2**31, PartitionerError),
        ("max_partitions", 0, PartitionerError),
        ("min_gain", -0.1, PartitionerError),
        ("devices", "ort-cpu", ClusterError),
        ("devices", [], ClusterError),
        ("pins", "a_mm=cpu", PartitionerError),
        ("input_shapes", [2, 16], ShapeError),
        ("cost_model", 42, PartitionerError),
    ],
)
def test_a_bad_option_is_one_line_naming_it(field: str, value: object, error: type) -> None:
    with pytest.raises(error) as caught:
        partitioner.CompileOptions(**{field: value})  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message and field in message and repr(value) in message, message


def test_objective_and_latency_target_go_together() -> None:
    with pytest.raises(PartitionerError, match="objective='cost' needs latency_target_s"):
        partitioner.CompileOptions(objective="cost")
    with pytest.raises(PartitionerError, match="latency_target_s=0.001 applies only to"):
        partitioner.CompileOptions(latency_target_s=1e-3)
    with pytest.raises(PartitionerError, match="latency_target_s=-1"):
        partitioner.CompileOptions(objective="cost", latency_target_s=-1)


def test_unknown_device_and_unknown_cost_model_name_the_value() -> None:
    with pytest.raises(ClusterError, match="nope not in cluster 'cpu\\+l4'"):
        partitioner.compile(branchy_model(), "cpu+l4", partitioner.CompileOptions(devices=["nope"]))
    with pytest.raises(ClusterError, match="unknown cost model 'magic'"):
        partitioner.compile(branchy_model(), "cpu+l4", partitioner.CompileOptions(
            cost_model="magic"))
