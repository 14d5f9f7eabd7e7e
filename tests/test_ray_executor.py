"""Plans on Ray: a simulated three-node loopback cluster (head without CPUs, one node per
device), started once for this module; a zoo model compiled for three devices on three
hosts runs across it and matches the whole model; missing devices and dying actors fail
fast, naming what is at fault; ``restarts`` brings an actor back for the next run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_plan_fixtures import cluster, device, save_and_analyse

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'hetpart[ray]'")
pytest.importorskip("openvino", reason="device ov-b needs the openvino extra")

from partitioner import Session  # noqa: E402
from partitioner.benchmarks.ray_overhead import matmul_chain  # noqa: E402
from partitioner.cli import main  # noqa: E402
from partitioner.distributed.executor import RayExecutor  # noqa: E402
from partitioner.distributed.local_cluster import (  # noqa: E402
    LOOPBACK,
    LocalRayCluster,
)
from partitioner.errors import DeviceLostError, RayClusterError, RunError  # noqa: E402
from partitioner.plan.assign import plan_from_assignment  # noqa: E402
from partitioner.plan.io import load_plan, write_plan  # noqa: E402
from partitioner.runtime.executor import Executor  # noqa: E402
from partitioner.runtime.feeds import random_inputs  # noqa: E402
from partitioner.runtime.records import load_run, measure, whole_model_outputs  # noqa: E402
from partitioner.testing.host_clusters import cpu_device_toml  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.openvino]

#: Device id -> (runner, host): three CPU devices, each on its own simulated machine.
DEVICES = {"cpu-a": ("onnxruntime", "box-a"), "ov-b": ("openvino", "box-b"),
           "cpu-c": ("onnxruntime", "box-c")}

CLUSTER_TOML = "".join(cpu_device_toml(d, f'host = "{host}"', runner)
                       for d, (runner, host) in DEVICES.items())


@pytest.fixture(scope="module")
def ray_cluster():
    """A head with no CPUs and three nodes, each advertising one device; the driver joins it."""
    with LocalRayCluster({host: [d] for d, (_, host) in DEVICES.items()}) as local:
        ray.init(address=local.address, _node_ip_address=LOOPBACK, log_to_driver=False)
        try:
            yield local
        finally:
            ray.shutdown()


def _devices():
    return [dataclasses.replace(device(d, runner=r, threads=1), host=h)
            for d, (r, h) in DEVICES.items()]


def test_every_node_is_on_loopback_and_advertises_one_device(ray_cluster) -> None:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 4
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    head = [n for n in nodes if "node:__internal_head__" in n["Resources"]]
    assert len(head) == 1 and head[0]["Resources"].get("CPU", 0) == 0
    advertised = sorted(r for n in nodes for r in n["Resources"] if r.startswith("hetpart_"))
    assert advertised == sorted(f"hetpart_device:{d}" for d in DEVICES)


@pytest.fixture(scope="module")
def zoo_plan(ray_cluster, tmp_path_factory) -> Path:
    """The zoo MLP compiled for the three-device cluster, pinned so every device has a part."""
    pytest.importorskip("torch", reason="zoo models need torch (the zoo extra)")
    zoo = pytest.importorskip("models.zoo", reason="zoo models need torch")
    root = tmp_path_factory.mktemp("zoo")
    (root / "three.toml").write_text(CLUSTER_TOML)
    model = Path(zoo.build("mlp"))
    pins = ["node_linear=cpu-a", "node_linear_2=ov-b", "node_linear_4=cpu-c"]
    argv = ["compile", str(model), "--cluster", str(root / "three.toml"), "-o",
            str(root / "plan"), "--quiet", "--time-limit", "5"]
    for pin in pins:
        argv += ["--pin", pin]
    assert main(argv) == 0
    return root / "plan"


@pytest.mark.zoo
def test_zoo_plan_runs_across_three_nodes_and_matches_the_whole_model(zoo_plan) -> None:
    plan = load_plan(zoo_plan)
    assert {p.device for p in plan.partitions} == set(DEVICES)
    assert {d.host for d in plan.cluster.devices} == {"box-a", "box-b", "box-c"}
    feeds = random_inputs(plan.model.inputs, seed=1)
    expected = whole_model_outputs(Path(plan.model.path), feeds)
    with RayExecutor(plan, zoo_plan, address=ray_cluster_address(),
                     measure_memory=True) as executor:
        # One actor per device, each in its own process on the node advertising it.
        assert executor.hosts == {d: h for d, (_, h) in DEVICES.items()}
        assert len({p["pid"] for p in executor.placement.values()}) == 3
        assert {p["threads"] for p in executor.placement.values()} == {1}
        record, last = measure(executor, feeds, repeat=3, warmup=1, stream=4)
        for name, value in expected.items():
            np.testing.assert_allclose(last.outputs[name], value, rtol=1e-4, atol=1e-5)
        streamed = executor.stream([feeds] * 3)
        for result in streamed.results:
            np.testing.assert_allclose(result.outputs["logits"], expected["logits"],
                                       rtol=1e-4, atol=1e-5)
    boundaries = {(i.name, p.index) for p in plan.partitions for i in p.inputs
                  if i.from_partition is not None
                  and plan.partitions[i.from_partition].device != p.device}
    assert {(t.tensor, t.dst_partition) for t in last.transfers} == boundaries
    # Each is a measured hand-off within the run: producer done -> consumer started.
    assert all(0 <= t.seconds <= last.latency_s for t in last.transfers)
    assert len(record["transfers"]) == len(boundaries) >= 2
    assert record["throughput_per_s"] > 0 and record["stream"]["inputs"] == 4
    assert all(p["measured_s"] > 0 for p in record["partitions"])
    # The same record keys as the in-process executor's, memory included: each device's
    # actor measured its own process (RSS on these CPUs), beside the plan's prediction.
    with Executor(plan, zoo_plan, emulate=True, measure_memory=True) as local:
        local_record, _ = measure(local, feeds, repeat=1, stream=2)
    assert set(local_record) == set(record)
    assert set(record["memory"]) == set(DEVICES)
    for device_id, memory in record["memory"].items():
        assert memory["method"] == "rss", device_id
        assert memory["peak_bytes"] == memory["prepare_bytes"] + memory["run_bytes"] > 0
        assert memory["runtime_bytes"] > 0  # the runtime was loaded before the partitions
        assert memory["predicted_peak_bytes"] == int(plan.solver.peak_memory[device_id])


def ray_cluster_address() -> str:
    """The cluster the driver joined (the module's), as ``RayExecutor`` takes it."""
    return ray.get_runtime_context().gcs_address


@pytest.mark.zoo
def test_cli_run_ray_check_json_save(zoo_plan, capsys) -> None:
    code = main(["run", str(zoo_plan), "--ray", ray_cluster_address(), "--check", "--json",
                 "--save", "--repeat", "2", "--stream", "3"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["check"]["passed"]
    assert out["ray"]["hosts"] == {d: h for d, (_, h) in DEVICES.items()}
    # Where each actor really ran: one process per device, all on loopback here.
    placement = out["ray"]["placement"]
    assert set(placement) == set(DEVICES) and len({p["pid"] for p in placement.values()}) == 3
    assert {p["node_ip"] for p in placement.values()} == {LOOPBACK}
    saved = load_run(zoo_plan)  # reports read it as any run.json
    assert saved["ray"]["address"] == ray_cluster_address()
    assert saved["throughput_per_s"] > 0
    assert set(saved["memory"]) == set(DEVICES)  # measured in each device's actor


@pytest.mark.zoo
def test_session_runs_on_ray(zoo_plan) -> None:
    plan = load_plan(zoo_plan)
    feeds = random_inputs(plan.model.inputs, seed=2)
    expected = whole_model_outputs(Path(plan.model.path), feeds)
    with Session(zoo_plan, ray=ray_cluster_address()) as sess:
        (logits,) = sess.run(None, feeds)
    np.testing.assert_allclose(logits, expected["logits"], rtol=1e-4, atol=1e-5)


def test_devices_command_lists_what_the_cluster_advertises(ray_cluster, capsys) -> None:
    assert main(["devices", "--cluster", f"ray://{ray_cluster_address()}", "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    assert sorted(d for n in nodes for d in n["devices"]) == sorted(DEVICES)
    assert {n["node_ip"] for n in nodes} == {"127.0.0.1"}
    # ray://local: the cluster running on this machine, found on loopback.
    assert main(["devices", "--cluster", "ray://local"]) == 0
    text = capsys.readouterr().out
    assert f"Ray cluster {ray_cluster_address()}: 4 live node(s), 3 plan device(s)" in text


def test_a_loopback_address_connects_without_the_loopback_switch_set(ray_cluster) -> None:
    """A fresh process given 127.0.0.1:PORT, without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0:
    Ray would swap the address for this machine's own and retry it for ten minutes."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run(
        [sys.executable, "-m", "partitioner.cli", "devices", "--cluster",
         f"ray://{ray_cluster_address()}", "--json"],
        text=True, capture_output=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    nodes = json.loads(done.stdout)["nodes"]
    assert sorted(d for n in nodes for d in n["devices"]) == sorted(DEVICES)


def test_an_empty_ray_address_is_refused(zoo_plan, capsys) -> None:
    assert main(["run", str(zoo_plan), "--ray", ""]) == 2
    assert "argument --ray: needs an address" in capsys.readouterr().err


def _chain_model(width: int = 384, depth: int = 12) -> onnx.ModelProto:
    """x -> (MatMul, Tanh) x depth: milliseconds per partition, so runs last a while."""
    return matmul_chain(width=width, rows=64, depth=depth)


@pytest.fixture(scope="module")
def chain_plan(ray_cluster, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chain")
    analysed = save_and_analyse(_chain_model(), root, "chain")
    names = [n.name for n in analysed.facts.nodes]
    ids = list(DEVICES)
    assignment = {n: ids[k * 3 // len(names)] for k, n in enumerate(names)}
    plan = plan_from_assignment(analysed, cluster(*_devices()), assignment)
    write_plan(plan, analysed, root / "plan")
    return root / "plan"


def test_missing_devices_fail_at_start_naming_every_id(ray_cluster, tmp_path: Path) -> None:
    analysed = save_and_analyse(_chain_model(depth=2), tmp_path, "m")
    names = [n.name for n in analysed.facts.nodes]
    devices = [device("gpu-x"), device("cpu-a"), device("npu-y")]
    plan = plan_from_assignment(analysed, cluster(*devices),
                                {n: ("gpu-x", "cpu-a", "npu-y", "npu-y")[k]
                                 for k, n in enumerate(names)})
    write_plan(plan, analysed, tmp_path / "plan")
    started = time.monotonic()
    with pytest.raises(RayClusterError, match=r"no node advertises plan device\(s\) 'gpu-x', "
                                              r"'npu-y'") as info:
        RayExecutor(load_plan(tmp_path / "plan"), tmp_path / "plan",
                    address=ray_cluster_address())
    assert time.monotonic() - started < 5
    assert "\n" not in str(info.value)
    # The failed start left no actor holding a device: the resources are all free again.
    free = ray.available_resources()
    assert all(free.get(f"hetpart_device:{d}", 0) == 1 for d in DEVICES)


def _kill_during_run(executor: RayExecutor, device_id: str, feeds, after_s: float
                     ) -> tuple[BaseException, float]:
    """Stream inputs, SIGKILL ``device_id``'s actor process mid-stream; (error, seconds from
    the kill to the error)."""
    pid = executor.placement[device_id]["pid"]
    killed: list[float] = []

    def kill() -> None:
        time.sleep(after_s)
        os.kill(pid, signal.SIGKILL)
        killed.append(time.monotonic())

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with pytest.raises(DeviceLostError) as info:
            # Streams back to back until the kill lands in one (a fast machine may finish a
            # stream of 60 inputs before ``after_s``), bounded.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                executor.stream([feeds] * 60)
    finally:
        killer.join()
    return info.value, time.monotonic() - killed[0]


def test_device_outputs_come_back_as_refs_and_go_in_as_feeds(chain_plan) -> None:
    """A fed-back output (a decode step's KV cache) stays an ObjectRef the driver never
    fetches: returned as one, taken back as a feed, with the in-process results."""
    plan = load_plan(chain_plan)
    (out,) = [t.name for t in plan.model.outputs]
    (x,) = [t.name for t in plan.model.inputs]
    feeds = random_inputs(plan.model.inputs, seed=4)
    with Executor(plan, chain_plan, emulate=True) as local:
        first = local.run(feeds).outputs[out]
        second = local.run({x: first}).outputs[out]
    with RayExecutor(plan, chain_plan, address=ray_cluster_address(),
                     device_outputs=[out]) as executor:
        ref = executor.run(feeds).outputs[out]
        assert isinstance(ref, ray.ObjectRef)
        again = executor.run({x: ref}).outputs[out]
        np.testing.assert_allclose(ray.get(ref), first, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ray.get(again), second, rtol=1e-5, atol=1e-6)
    with pytest.raises(RunError, match="device_outputs names no output of the model"):
        RayExecutor(plan, chain_plan, address=ray_cluster_address(), device_outputs=["nope"])


def test_an_output_another_partition_also_reads_comes_back(ray_cluster, tmp_path: Path) -> None:
    """A tensor that is a model output and a boundary is returned both ways, with or without
    ``device_outputs``."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="first"),
         helper.make_node("Neg", ["h"], ["y"], name="second")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [4, 8]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    analysed = save_and_analyse(model, tmp_path, "both")
    plan = plan_from_assignment(analysed, cluster(*_devices()),
                                {"first": "cpu-a", "second": "cpu-c"})
    write_plan(plan, analysed, tmp_path / "plan")
    plan = load_plan(tmp_path / "plan")
    feeds = random_inputs(plan.model.inputs, seed=5)
    x = feeds["x"]
    for held in ((), ("h",)):
        with RayExecutor(plan, tmp_path / "plan", address=ray_cluster_address(),
                         device_outputs=held) as executor:
            out = executor.run(feeds).outputs
        h = ray.get(out["h"]) if held else out["h"]
        np.testing.assert_array_equal(h, np.maximum(x, 0))
        np.testing.assert_array_equal(out["y"], -np.maximum(x, 0))


def test_actor_dying_mid_run_names_device_host_and_partition(chain_plan) -> None:
    plan = load_plan(chain_plan)
    feeds = random_inputs(plan.model.inputs, seed=0)
    with RayExecutor(plan, chain_plan, address=ray_cluster_address()) as executor:
        executor.run(feeds)
        error, delay = _kill_during_run(executor, "ov-b", feeds, after_s=0.3)
        assert delay < 5
        message = str(error)
        part = next(p.index for p in plan.partitions if p.device == "ov-b")
        assert f"device 'ov-b' on host box-b was lost while running partition {part}" in message
        assert "nothing was rerun" in message and "\n" not in message
        with pytest.raises(DeviceLostError, match="device 'ov-b'"):
            executor.run(feeds)  # no restarts: the device stays lost


def test_restarts_bring_the_actor_back_for_the_next_run(chain_plan) -> None:
    plan = load_plan(chain_plan)
    feeds = random_inputs(plan.model.inputs, seed=0)
    with Executor(plan, chain_plan, emulate=True) as local:
        expected = local.run(feeds).outputs
    with RayExecutor(plan, chain_plan, address=ray_cluster_address(), restarts=1) as executor:
        error, delay = _kill_during_run(executor, "cpu-c", feeds, after_s=0.3)
        assert delay < 5 and "device 'cpu-c' on host box-c" in str(error)
        assert "--restarts 1" in str(error)
        result = executor.run(feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(result.outputs[name], value, rtol=1e-4, atol=1e-5)


def test_a_node_leaving_between_runs_fails_the_next_run_naming_its_device(
        ray_cluster, chain_plan) -> None:
    """Last in this module: it takes box-c's node away."""
    plan = load_plan(chain_plan)
    feeds = random_inputs(plan.model.inputs, seed=0)
    with RayExecutor(plan, chain_plan, address=ray_cluster_address(), restarts=1) as executor:
        executor.run(feeds)
        ray_cluster.remove_node("box-c")
        started = time.monotonic()
        with pytest.raises((DeviceLostError, RayClusterError), match="'cpu-c'") as info:
            for _ in range(3):  # Ray may notice the node's death a moment after it is gone
                executor.run(feeds)
        assert time.monotonic() - started < 30
        assert "\n" not in str(info.value)

