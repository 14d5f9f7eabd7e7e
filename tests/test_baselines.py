"""Baselines: names, semantics (priority, HEFT, memory fill) and infeasibility notes."""

from __future__ import annotations

import pytest

from partitioner.cluster.types import DeviceSpec
from partitioner.solver.baselines import best_baseline, run_baselines
from partitioner.solver.evaluate import evaluate
from partitioner.solver.problem import Problem
from partitioner.testing.random_problem import demo_cluster, random_problem, toy_device, toy_problem

MS = 1e-3


def test_every_baseline_is_reported_and_scored_by_the_evaluator() -> None:
    p = random_problem(60, demo_cluster("cpu+gpu"), seed=3)
    results = run_baselines(p)
    assert list(results) == ["single:gpu", "single:cpu", "best_single", "priority_greedy",
                             "heft", "memory_greedy", "contiguous_split"]
    for res in results.values():
        if res.evaluation is not None:
            assert evaluate(p, res.assignment).latency_s == pytest.approx(res.evaluation.latency_s)
        else:
            assert res.note
    assert results["single:cpu"].evaluation is not None
    assert results["best_single"].assignment == results["single:cpu"].assignment


def test_priority_greedy_takes_the_first_supporting_device_then_the_fallback() -> None:
    gpu, npu, cpu = toy_device("gpu"), toy_device("npu"), toy_device("cpu")
    costs = {"a": {"gpu": MS, "npu": MS, "cpu": MS},
             "b": {"gpu": None, "npu": MS, "cpu": MS},
             "c": {"gpu": None, "npu": None, "cpu": MS}}
    p = toy_problem(costs, [("a", "b", 0), ("b", "c", 0)], (gpu, npu, cpu))
    res = run_baselines(p)["priority_greedy"]
    assert res.assignment == {"a": "gpu", "b": "npu", "c": "cpu"}
    assert "cannot run" in run_baselines(p)["single:gpu"].note


def test_heft_runs_independent_work_on_both_devices() -> None:
    costs = {n: {"d0": 3 * MS, "d1": 3 * MS} for n in ("a", "b")}
    costs["j"] = {"d0": MS, "d1": MS}
    p = toy_problem(costs, [("a", "j", 0), ("b", "j", 0)], (toy_device("d0"), toy_device("d1")))
    res = run_baselines(p)["heft"]
    assert res.assignment["a"] != res.assignment["b"]
    assert res.evaluation.latency_s == pytest.approx(4 * MS)


def _pipeline_chain(n: int, nbytes: int, copy_engine: bool) -> Problem:
    costs = {f"n{i}": {"d0": MS, "d1": MS} for i in range(n)}
    edges = [(f"n{i}", f"n{i + 1}", nbytes) for i in range(n - 1)]
    devices = (toy_device("d0", copy_engine=copy_engine), toy_device("d1", copy_engine=copy_engine))
    return toy_problem(costs, edges, devices, bandwidth=1e6, objective="throughput")


def test_contiguous_split_halves_a_chain_into_two_pipeline_stages() -> None:
    res = run_baselines(_pipeline_chain(6, 100, copy_engine=True))["contiguous_split"]
    assert res.evaluation is not None
    assert [res.assignment[f"n{i}"] for i in range(6)] in (["d0"] * 3 + ["d1"] * 3,
                                                           ["d1"] * 3 + ["d0"] * 3)
    assert res.evaluation.stage_s == pytest.approx(3 * MS, rel=1e-3)


def test_contiguous_split_keeps_a_chain_whole_when_copies_occupy_both_ends() -> None:
    """A 4 ms copy that keeps both devices busy makes every cut worse than one device."""
    res = run_baselines(_pipeline_chain(6, 4_000, copy_engine=False))["contiguous_split"]
    assert res.evaluation is not None and len(set(res.assignment.values())) == 1
    assert res.evaluation.stage_s == pytest.approx(6 * MS, rel=1e-3)


def test_contiguous_split_respects_memory_and_support() -> None:
    costs = {"a": {"d0": MS, "d1": MS}, "b": {"d0": None, "d1": MS}, "c": {"d0": MS, "d1": MS}}
    p = toy_problem(costs, [("a", "b", 0), ("b", "c", 0)],
                    (toy_device("d0"), toy_device("d1", memory_bytes=16)),
                    weights={"a": 8, "b": 8, "c": 8}, objective="throughput")
    # b runs only on d1, which holds two nodes' weights: d0 takes a, d1 the rest.
    res = run_baselines(p)["contiguous_split"]
    assert res.assignment == {"a": "d0", "b": "d1", "c": "d1"}
    small = toy_problem(costs, [("a", "b", 0), ("b", "c", 0)],
                        (toy_device("d0"), toy_device("d1", memory_bytes=10)),
                        weights={"a": 8, "b": 8, "c": 8}, objective="throughput")
    none = run_baselines(small)["contiguous_split"]
    assert none.evaluation is None and "memory" in none.note


def test_memory_greedy_fills_the_first_device_then_spills() -> None:
    devs = (toy_device("gpu", memory_bytes=2500), toy_device("cpu", memory_bytes=10**6))
    costs = {f"l{i}": {"gpu": MS, "cpu": 5 * MS} for i in range(4)}
    edges = [(f"l{i}", f"l{i + 1}", 10) for i in range(3)]
    p = toy_problem(costs, edges, devs, weights=dict.fromkeys(costs, 1000),
                    outputs=dict.fromkeys(costs, 10))
    res = run_baselines(p)["memory_greedy"]
    assert [res.assignment[f"l{i}"] for i in range(4)] == ["gpu", "gpu", "cpu", "cpu"]
    assert res.evaluation is not None
    assert run_baselines(p)["single:gpu"].evaluation is None
    assert "needs" in run_baselines(p)["single:gpu"].note


def test_no_feasible_baseline_gives_none_with_notes() -> None:
    devs = (toy_device("d0", memory_bytes=100), toy_device("d1", memory_bytes=100))
    p = toy_problem({"a": {"d0": MS, "d1": MS}}, [], devs, weights={"a": 500})
    results = run_baselines(p)
    assert best_baseline(p, results) is None
    assert all(r.evaluation is None and r.note for r in results.values())


def _chain(devs: tuple[DeviceSpec, ...], unsupported: dict[str, str] | None = None) -> Problem:
    """Four 1000-byte layers in a chain, 100-byte activations, runnable everywhere but where
    ``unsupported`` (node -> device) says."""
    unsupported = unsupported or {}
    costs: dict[str, dict[str, float | None]] = {
        f"l{i}": {d.id: (None if unsupported.get(f"l{i}") == d.id else MS) for d in devs}
        for i in range(4)}
    edges = [(f"l{i}", f"l{i + 1}", 100) for i in range(3)]
    return toy_problem(costs, edges, devs, weights=dict.fromkeys(costs, 1000),
                       outputs=dict.fromkeys(costs, 100))


def test_memory_greedy_splits_weights_in_layer_order_like_accelerate() -> None:
    # 4000 bytes of weights fit on neither device alone, only split two and two. Activations
    # (two 100-byte tensors at a time) are reserved once per device, not summed per layer.
    p = _chain((toy_device("gpu", memory_bytes=2300), toy_device("cpu", memory_bytes=2300)))
    results = run_baselines(p)
    res = results["memory_greedy"]
    assert [res.assignment[f"l{i}"] for i in range(4)] == ["gpu", "gpu", "cpu", "cpu"]
    assert res.evaluation is not None
    assert res.evaluation.peak_memory == {"gpu": 2200, "cpu": 2200}
    assert results["best_single"].evaluation is None


def test_memory_greedy_keeps_a_model_that_fits_on_the_first_device() -> None:
    p = _chain((toy_device("gpu", memory_bytes=4200), toy_device("cpu", memory_bytes=10**6)))
    res = run_baselines(p)["memory_greedy"]
    assert set(res.assignment.values()) == {"gpu"}
    assert res.evaluation is not None and res.evaluation.peak_memory["gpu"] == 4200


def test_memory_greedy_sends_an_unsupported_node_on_and_keeps_filling() -> None:
    p = _chain((toy_device("gpu", memory_bytes=3300), toy_device("cpu", memory_bytes=10**6)),
               unsupported={"l1": "gpu"})
    res = run_baselines(p)["memory_greedy"]
    assert [res.assignment[f"l{i}"] for i in range(4)] == ["gpu", "cpu", "gpu", "gpu"]
    assert res.evaluation is not None
    assert res.evaluation.peak_memory["gpu"] <= 3300
