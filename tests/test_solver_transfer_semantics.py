"""Transfer semantics per device and link: a copy occupies its endpoints (no copy engine) or
overlaps compute on a copy engine (issue 19). Evaluator numbers worked out by hand, a
throughput plan the semantics change, cluster-file parsing and the presets' defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from partitioner.cluster.file import cluster_from_toml, load_cluster
from partitioner.cluster.types import Cluster, DeviceSpec, Link
from partitioner.errors import ClusterError
from partitioner.plan.codec import cluster_from_dict, cluster_to_dict
from partitioner.solver import solve
from partitioner.solver.evaluate import evaluate
from partitioner.solver.index import index_of
from partitioner.solver.models.load_relaxation import run_load_relaxation
from partitioner.testing.random_problem import brute_force_optimum, toy_device, toy_problem

MS = 1e-3


def _devices(engine: bool) -> tuple[DeviceSpec, DeviceSpec]:
    return toy_device("d0", copy_engine=engine), toy_device("d1", copy_engine=engine)


def _chain(engine: bool, objective: str = "latency"):
    # a (d0, 1 ms) -> 1 MB -> b (d1, 2 ms) -> 0.5 MB -> c (d0, 1 ms); 1 GB/s: 1 ms and 0.5 ms.
    return toy_problem({"a": {"d0": 1 * MS, "d1": 1 * MS}, "b": {"d0": 2 * MS, "d1": 2 * MS},
                        "c": {"d0": 1 * MS, "d1": 1 * MS}},
                       [("a", "b", 10**6), ("b", "c", 5 * 10**5)], _devices(engine),
                       objective=objective)


def test_three_node_chain_by_hand() -> None:
    """Copy engines: d0 computes a and c (2 ms), d1 computes b (2 ms), the links carry 1 and
    0.5 ms. Occupying: each copy also keeps both ends busy, 3.5 ms each; the chain's latency
    is the same (the copies were on the path anyway)."""
    placed = {"a": "d0", "b": "d1", "c": "d0"}
    engine = evaluate(_chain(True), placed)
    assert engine.latency_s == pytest.approx(5.5 * MS)
    assert engine.busy_s == pytest.approx({"d0": 2 * MS, "d1": 2 * MS})
    assert engine.stage_s == pytest.approx(2 * MS)
    busy = evaluate(_chain(False), placed)
    # a [0,1]; copy a->b [1,2] on d0 and d1; b [2,4]; copy b->c [4,4.5]; c [4.5,5.5]
    assert busy.schedule["b"][1:] == pytest.approx((2 * MS, 4 * MS))
    assert busy.schedule["c"][1:] == pytest.approx((4.5 * MS, 5.5 * MS))
    assert busy.latency_s == pytest.approx(5.5 * MS)
    assert busy.busy_s == pytest.approx({"d0": 3.5 * MS, "d1": 3.5 * MS})
    assert busy.stage_s == pytest.approx(3.5 * MS)


def _fork(src_engine: bool, dst_engine: bool):
    # a (d0, 1 ms) feeds b (d1, 2 ms, over a 1 ms copy) and c (d0, 3 ms).
    devs = (toy_device("d0", copy_engine=src_engine), toy_device("d1", copy_engine=dst_engine))
    return toy_problem({"a": {"d0": 1 * MS}, "b": {"d1": 2 * MS}, "c": {"d0": 3 * MS}},
                       [("a", "b", 10**6), ("a", "c", 10**6)], devs)


def test_an_occupying_copy_delays_the_senders_next_call() -> None:
    """Copy engine: c runs [1,4] while the copy flies, b [2,4]: 4 ms. Without one on d0, the
    copy holds d0 [1,2], so c runs [2,5]: 5 ms; d0 is busy 1 + 3 + 1 ms. Occupying only the
    receiver (d1 idle until then) costs nothing on this fork."""
    placed = {"a": "d0", "b": "d1", "c": "d0"}
    assert evaluate(_fork(True, True), placed).latency_s == pytest.approx(4 * MS)
    sender = evaluate(_fork(False, True), placed)
    assert sender.latency_s == pytest.approx(5 * MS)
    assert sender.schedule["c"][1:] == pytest.approx((2 * MS, 5 * MS))
    assert sender.busy_s == pytest.approx({"d0": 5 * MS, "d1": 2 * MS})
    receiver = evaluate(_fork(True, False), placed)
    assert receiver.latency_s == pytest.approx(4 * MS)
    assert receiver.busy_s == pytest.approx({"d0": 4 * MS, "d1": 3 * MS})


def test_an_occupying_copy_waits_for_the_busy_receiver() -> None:
    """d1 runs x [0,3] (first in model order) when a's copy is ready at 1 ms; the copy
    occupies d1, so it waits: [3,4], and b then runs [4,6]. With a copy engine on d1 it lands
    at 2 ms, b runs [3,5]. (Calls and copies claim a device in execution order: had a's call
    come first, its copy would take d1 at [1,2] and push x to [2,5], b to [5,7].)"""
    def problem(engine: bool):
        devs = (toy_device("d0", copy_engine=True), toy_device("d1", copy_engine=engine))
        return toy_problem({"x": {"d1": 3 * MS}, "a": {"d0": 1 * MS}, "b": {"d1": 2 * MS}},
                           [("a", "b", 10**6)], devs)
    placed = {"a": "d0", "x": "d1", "b": "d1"}
    assert evaluate(problem(True), placed).latency_s == pytest.approx(5 * MS)
    assert evaluate(problem(False), placed).latency_s == pytest.approx(6 * MS)


def test_one_copy_per_tensor_and_device() -> None:
    """Two consumers of one tensor on d1 take one occupying copy (as the links count it)."""
    devs = _devices(False)
    p = toy_problem({"a": {"d0": 1 * MS}, "b": {"d1": 1 * MS}, "c": {"d1": 1 * MS}},
                    [("a", "b", 10**6), ("a", "c", 10**6)], devs, objective="throughput")
    ev = evaluate(p, {"a": "d0", "b": "d1", "c": "d1"})
    assert ev.busy_s == pytest.approx({"d0": 2 * MS, "d1": 3 * MS})
    assert ev.stage_s == pytest.approx(3 * MS)


def _split_chain(engine: bool):
    # Four 1 ms nodes, 3 MB (3 ms) between neighbours; both devices equally fast.
    names = [f"n{i}" for i in range(4)]
    costs = {n: {"d0": 1 * MS, "d1": 1 * MS} for n in names}
    edges = [(names[i], names[i + 1], 3 * 10**6) for i in range(3)]
    return toy_problem(costs, edges, _devices(engine), objective="throughput")


def test_occupying_copies_change_the_optimal_throughput_plan() -> None:
    """Copy engines: splitting the chain 2 + 2 pipelines to max(2, 2, link 3) = 3 ms < 4 ms
    on one device. Occupying: the split costs both devices the 3 ms copy (5 ms each), so the
    single device wins, and solve() finds it."""
    split = {"n0": "d0", "n1": "d0", "n2": "d1", "n3": "d1"}
    one = dict.fromkeys(split, "d0")
    assert evaluate(_split_chain(True), split).stage_s == pytest.approx(3 * MS)
    assert evaluate(_split_chain(False), split).stage_s == pytest.approx(5 * MS)
    assert evaluate(_split_chain(False), one).stage_s == pytest.approx(4 * MS)

    with_engines = solve(_split_chain(True), time_limit_s=1)
    assert len(set(with_engines.assignment.values())) == 2
    assert with_engines.objective == pytest.approx(3 * MS)
    occupying = _split_chain(False)
    report = solve(occupying, time_limit_s=1)
    assert len(set(report.assignment.values())) == 1
    assert report.objective == pytest.approx(4 * MS) == pytest.approx(
        brute_force_optimum(occupying))
    assert report.bound <= report.objective * (1 + 1e-9)


def test_load_relaxation_counts_occupying_copies_and_stays_a_bound() -> None:
    """The throughput relaxation charges occupying copies to the endpoints: on the chain it
    proves the single device's 4 ms (links alone prove at most the copy engines' 3 ms)."""
    p = _split_chain(False)
    optimum = brute_force_optimum(p)
    result = run_load_relaxation(p, optimum / 1e5, None, 2.0, 0, 1)
    assert result.bound_s is not None
    assert 3.5 * MS < result.bound_s <= optimum * (1 + 1e-9)


def test_link_copy_engine_overrides_the_devices() -> None:
    cpu = DeviceSpec("cpu", "cpu", "null", 2**30, {"float32": 1e12}, 1e11)
    gpu = DeviceSpec("gpu", "gpu", "null", 2**30, {"float32": 1e12}, 1e11)
    plain = Cluster("c", (cpu, gpu),
                    (Link("cpu", "gpu", 1e9), Link("gpu", "cpu", 1e9, 0, True)))
    assert not cpu.has_copy_engine and gpu.has_copy_engine
    assert plain.transfer_occupies("cpu", "gpu") == (True, False)
    assert plain.transfer_occupies("gpu", "cpu") == (False, False)  # the link's engine
    assert plain.transfer_occupies("cpu", "cpu") == (False, False)
    sync = Cluster("c", (cpu, gpu), (Link("cpu", "gpu", 1e9, 0, False),))
    assert sync.transfer_occupies("cpu", "gpu") == (True, True)
    assert sync.transfer_occupies("gpu", "cpu") == (False, True)  # implied host link


def test_link_copy_engine_survives_a_plan_round_trip() -> None:
    cpu = DeviceSpec("cpu", "cpu", "null", 2**30, {"float32": 1e12}, 1e11)
    gpu = DeviceSpec("gpu", "gpu", "null", 2**30, {"float32": 1e12}, 1e11)
    links = (Link("cpu", "gpu", 1e9), Link("gpu", "cpu", 1e9, 0, False))
    data = cluster_to_dict(Cluster("c", (cpu, gpu), links))
    assert "copy_engine" not in data["links"][0]  # no override: written as before
    assert data["links"][1]["copy_engine"] is False
    again = cluster_from_dict(data)
    assert again.links == links
    assert again.transfer_occupies("gpu", "cpu") == (True, True)


def test_devices_sharing_a_processor_pay_a_copy_once() -> None:
    devs = (toy_device("d0", processor="host", copy_engine=False),
            toy_device("d1", processor="host", copy_engine=False))
    p = toy_problem({"a": {"d0": 1 * MS}, "b": {"d1": 1 * MS}}, [("a", "b", 10**6)], devs,
                    objective="throughput")
    assert index_of(p).occupies == [[(), (0,)], [(1,), ()]]
    ev = evaluate(p, {"a": "d0", "b": "d1"})
    assert ev.stage_s == pytest.approx(3 * MS) and ev.latency_s == pytest.approx(3 * MS)


def test_cluster_file_copy_engine(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('''
[[device]]
id = "cpu"
class = "cpu"
runner = "null"
memory = "1GB"
peak_flops = { float32 = "1TFLOP/s" }
memory_bandwidth = "10GB/s"

[[device]]
id = "acc"
class = "gpu"
runner = "null"
memory = "1GB"
peak_flops = { float32 = "1TFLOP/s" }
memory_bandwidth = "10GB/s"
copy_engine = false

[[link]]
src = "cpu"
dst = "acc"
bandwidth = "10GB/s"
bidirectional = true
copy_engine = true
''')
    cluster = cluster_from_toml(path)
    cpu, acc = cluster.devices
    assert cpu.copy_engine is None and not cpu.has_copy_engine
    assert acc.copy_engine is False and not acc.has_copy_engine
    assert all(lk.copy_engine is True for lk in cluster.links)
    assert cluster.transfer_occupies("acc", "cpu") == (False, False)
    path.write_text(path.read_text().replace("copy_engine = false", 'copy_engine = "no"'))
    with pytest.raises(ClusterError, match="device acc|acc.*copy_engine|copy_engine"):
        cluster_from_toml(path)


def test_presets_gpus_keep_copy_engines_cpus_and_the_npu_occupy() -> None:
    for name in ("cpu+l4", "cpu+h100", "cpu+npu", "smallgpu+cpu"):
        for dev in load_cluster(name).devices:
            assert dev.has_copy_engine == (dev.device_class == "gpu"), (name, dev.id)
