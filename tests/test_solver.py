"""Placement solver on hand-written problems with known optima, objectives and diagnoses."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from partitioner.errors import InfeasibleError, SolverError
from partitioner.solver import solve
from partitioner.solver.evaluate import evaluate
from partitioner.solver.models import cpsat
from partitioner.solver.models.cpsat import ScheduleModel, run
from partitioner.testing.random_problem import (
    demo_cluster,
    random_problem,
    toy_device,
    toy_problem,
)

MS = 1e-3
TWO = (toy_device("d0"), toy_device("d1"))


def _both(**costs: float) -> dict[str, dict[str, float | None]]:
    return {n: {"d0": c * MS, "d1": c * MS} for n, c in costs.items()}


def test_independent_branches_run_in_parallel_on_two_devices() -> None:
    p = toy_problem(_both(a=3, b=3, j=1), [("a", "j", 0), ("b", "j", 0)], TWO)
    report = solve(p, time_limit_s=5)
    assert report.assignment["a"] != report.assignment["b"]
    assert report.objective == pytest.approx(4 * MS)
    assert report.baselines["best_single"].evaluation.latency_s == pytest.approx(7 * MS)
    assert report.status == "OPTIMAL"
    assert report.gap == pytest.approx(0.0, abs=1e-4)


def test_min_gain_keeps_a_small_predicted_gain_on_one_device() -> None:
    # Splitting runs a (1.0 ms) and b (0.9 ms) in parallel: 2.0 ms vs 2.9 ms on one device.
    p = toy_problem(_both(a=1.0, b=0.9, j=1.0), [("a", "j", 0), ("b", "j", 0)], TWO)
    split = solve(p, time_limit_s=2, min_gain=0.30)
    assert split.objective == pytest.approx(2.0 * MS)
    assert len(set(split.assignment.values())) == 2 and split.status == "OPTIMAL"
    kept = solve(p, time_limit_s=2, min_gain=0.50)  # a 45% gain is not enough for 50%
    assert len(set(kept.assignment.values())) == 1
    assert kept.status == "SINGLE_DEVICE" and kept.objective == pytest.approx(2.9 * MS)
    assert kept.bound == pytest.approx(split.bound) and kept.gap > 0.3


def test_transfer_cost_keeps_a_chain_on_one_device() -> None:
    costs = {"a": {"d0": 1 * MS, "d1": 1 * MS}, "b": {"d0": 2 * MS, "d1": 1.5 * MS},
             "c": {"d0": 1 * MS, "d1": 1 * MS}}
    p = toy_problem(costs, [("a", "b", 10**6), ("b", "c", 10**6)], TWO, bandwidth=1e9)
    report = solve(p, time_limit_s=5)
    assert len(set(report.assignment.values())) == 1
    assert report.objective == pytest.approx(3.5 * MS)


def test_unsupported_op_forces_a_split() -> None:
    gpu, cpu = toy_device("gpu"), toy_device("cpu")
    costs = {"a": {"gpu": 1 * MS, "cpu": 10 * MS}, "b": {"gpu": None, "cpu": 1 * MS},
             "c": {"gpu": 1 * MS, "cpu": 10 * MS}}
    p = toy_problem(costs, [("a", "b", 0), ("b", "c", 0)], (gpu, cpu))
    report = solve(p, time_limit_s=5)
    assert report.assignment == {"a": "gpu", "b": "cpu", "c": "gpu"}
    assert report.objective == pytest.approx(3 * MS)
    assert report.baselines["single:gpu"].evaluation is None
    assert "b" in report.baselines["single:gpu"].note


def test_memory_forces_a_split() -> None:
    devs = (toy_device("d0", memory_bytes=1000), toy_device("d1", memory_bytes=1000))
    p = toy_problem(_both(a=1, b=1), [("a", "b", 0)], devs, weights={"a": 600, "b": 600})
    report = solve(p, time_limit_s=5)
    assert report.assignment["a"] != report.assignment["b"]
    assert all(v <= 1000 for v in report.evaluation.peak_memory.values())
    assert report.baselines["best_single"].evaluation is None


def test_pins_and_forbidden_devices_are_respected() -> None:
    p = toy_problem(_both(a=1, b=1, c=1), [("a", "b", 0), ("b", "c", 0)], TWO,
                    pins={"b": "d1"}, forbidden={"a": ("d0",)})
    report = solve(p, time_limit_s=5)
    assert report.assignment["b"] == "d1"
    assert report.assignment["a"] == "d1"


def test_unplaceable_node_gets_a_diagnosis_naming_every_device() -> None:
    costs = {"a": {"d0": MS, "d1": MS}, "weird": {"d0": None, "d1": None}}
    p = toy_problem(costs, [("a", "weird", 0)], TWO)
    with pytest.raises(InfeasibleError) as info:
        solve(p, time_limit_s=1)
    text = str(info.value)
    assert text.splitlines()[0].startswith("no placement exists")
    assert "weird" in text and "d0: weird unsupported on d0" in text and "d1:" in text


def test_memory_diagnosis_names_device_bytes_and_capacity() -> None:
    devs = (toy_device("gpu", memory_bytes=100), toy_device("cpu", memory_bytes=10**6))
    costs = {"a": {"gpu": MS, "cpu": None}}
    p = toy_problem(costs, [], devs, weights={"a": 500})
    with pytest.raises(InfeasibleError, match=r"gpu needs at least 500 bytes .* has 100"):
        solve(p, time_limit_s=1)


def test_pin_on_a_device_that_cannot_run_the_node() -> None:
    costs = {"a": {"d0": MS, "d1": None}}
    p = toy_problem(costs, [], TWO, pins={"a": "d1"})
    with pytest.raises(InfeasibleError, match="pinned here but unsupported"):
        solve(p, time_limit_s=1)


def test_throughput_objective_balances_a_chain() -> None:
    p = toy_problem(_both(a=1, b=1, c=1, d=1), [("a", "b", 0), ("b", "c", 0), ("c", "d", 0)],
                    TWO, objective="throughput")
    report = solve(p, time_limit_s=5)
    assert report.evaluation.stage_s == pytest.approx(2 * MS)
    assert report.objective == pytest.approx(2 * MS)
    assert report.evaluation.latency_s == pytest.approx(4 * MS)
    # The load relaxation proves it: one device carries at least half the work.
    assert report.status == "OPTIMAL" and report.gap == pytest.approx(0.0, abs=1e-6)


def test_throughput_bound_counts_a_call_per_return_to_a_device() -> None:
    """a -> b -> c with b only on d1: d0 runs a and c in two calls (c needs b's output,
    which needs a's call to return), so d0 is busy 1 + 1 + 2 overheads of 1 ms = 4 ms.
    Counting one overhead per device (3 ms) would leave a 25% gap."""
    d0, d1 = toy_device("d0", overhead_s=1 * MS), toy_device("d1")
    costs = {"a": {"d0": 1 * MS, "d1": 5 * MS}, "b": {"d0": None, "d1": 1 * MS},
             "c": {"d0": 1 * MS, "d1": 5 * MS}}
    p = toy_problem(costs, [("a", "b", 0), ("b", "c", 0)], (d0, d1), objective="throughput")
    report = solve(p, time_limit_s=5)
    assert report.objective == pytest.approx(4 * MS)
    assert report.bound == pytest.approx(4 * MS, rel=1e-4)
    assert report.status == "OPTIMAL"


def test_cost_objective_trades_price_against_the_latency_target() -> None:
    cheap = toy_device("cheap", price_per_hour=1.0, power_w=10)
    fast = toy_device("fast", price_per_hour=10.0, power_w=300)
    costs = {"a": {"cheap": 4 * MS, "fast": 1 * MS}, "b": {"cheap": 4 * MS, "fast": 1 * MS}}
    loose = toy_problem(costs, [("a", "b", 0)], (fast, cheap), objective="cost",
                        latency_target_s=10 * MS)
    assert set(solve(loose, time_limit_s=5).assignment.values()) == {"cheap"}
    tight = toy_problem(costs, [("a", "b", 0)], (fast, cheap), objective="cost",
                        latency_target_s=5.5 * MS)
    report = solve(tight, time_limit_s=5)
    assert report.evaluation.latency_s <= 5.5 * MS
    assert sorted(report.assignment.values()) == ["cheap", "fast"]
    assert report.evaluation.energy_j > 0
    # Within the target, the load relaxation proves the split optimal (price of 5 ms).
    assert report.status == "OPTIMAL"
    impossible = toy_problem(costs, [("a", "b", 0)], (fast, cheap), objective="cost",
                             latency_target_s=1 * MS)
    with pytest.raises(InfeasibleError, match=r"^latency target 1 ms cannot be met: the "
                                              r"fastest placement found takes 2 ms"):
        solve(impossible, time_limit_s=2)
    no_target = toy_problem(costs, [], (fast, cheap), objective="cost")
    with pytest.raises(SolverError, match="latency target"):
        solve(no_target, time_limit_s=1)


def test_max_partitions_limits_runner_calls() -> None:
    p = toy_problem(_both(a=3, b=3, j=1), [("a", "j", 0), ("b", "j", 0)], TWO,
                    max_partitions=1)
    report = solve(p, time_limit_s=5)
    assert report.evaluation.num_partitions == 1
    # One partition is one device: the best single device is proven optimal.
    assert report.status == "OPTIMAL" and report.gap == 0.0


def test_cost_ties_between_free_devices_go_to_the_faster_plan() -> None:
    """Every device is free, so every plan costs 0: the fastest one must be returned, not
    whichever came first (a plan cut into many partitions)."""
    free = (toy_device("d0", overhead_s=0.1 * MS), toy_device("d1", overhead_s=0.1 * MS))
    costs = {f"n{i}": {"d0": (1 + i % 2) * MS, "d1": (2 - i % 2) * MS} for i in range(6)}
    chain = [(f"n{i}", f"n{i + 1}", 10**6) for i in range(5)]
    p = toy_problem(costs, chain, free, bandwidth=1e9, objective="cost",
                    latency_target_s=100 * MS)
    report = solve(p, time_limit_s=3)
    fastest = solve(replace(p, objective="latency", latency_target_s=None), time_limit_s=3)
    assert report.objective == 0.0
    assert report.evaluation.latency_s == pytest.approx(fastest.objective)


def test_single_device_cluster_reports_single_device() -> None:
    p = toy_problem({"a": {"d0": MS}, "b": {"d0": MS}}, [("a", "b", 0)], (toy_device("d0"),))
    report = solve(p, time_limit_s=1)
    assert report.status == "SINGLE_DEVICE"
    assert report.gap == 0.0


def test_same_input_gives_same_plan_and_progress_is_reported() -> None:
    costs = {f"n{i}": {"d0": (i % 3 + 1) * MS, "d1": ((i * 7) % 4 + 1) * MS} for i in range(8)}
    edges = [(f"n{i}", f"n{i + 2}", 1000) for i in range(6)]
    p = toy_problem(costs, edges, TWO, bandwidth=1e6)
    seen: list[tuple[float, float]] = []
    first = solve(p, time_limit_s=3, progress=lambda o, b: seen.append((o, b)))
    second = solve(p, time_limit_s=3)
    assert first.assignment == second.assignment
    assert first.seed == 0 and first.workers == 2 and first.time_limit_s == 3
    assert seen and all(b <= o + 1e-9 for o, b in seen)
    assert evaluate(p, first.assignment).latency_s == pytest.approx(first.evaluation.latency_s)


def test_the_time_limit_bounds_every_cp_sat_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search, relaxation and refinement end at fixed points of the clock: every CP-SAT solve
    of a 400-node problem is told to stop by the end of the limit. Checked on the limits the
    solver hands CP-SAT, not on how long this (possibly loaded) machine took."""
    ends: list[float] = []

    class RecordingSolver(cpsat.cp_model.CpSolver):
        def solve(self, model, callback=None):  # type: ignore[no-untyped-def]
            ends.append(time.perf_counter() + self.parameters.max_time_in_seconds)
            return super().solve(model, callback)

    monkeypatch.setattr(cpsat.cp_model, "CpSolver", RecordingSolver)
    p = random_problem(400, demo_cluster("cpu+npu"), seed=0)
    started = time.perf_counter()
    report = solve(p, time_limit_s=3)
    assert ends and report.time_limit_s == 3
    # A solve that starts after its stage ended still gets CP-SAT's 10 ms minimum.
    assert max(ends) <= started + 3 + 0.01 + 1e-3


def test_a_solve_stopped_by_its_deadline_says_so() -> None:
    p = random_problem(400, demo_cluster("cpu+npu"), seed=0)
    model = ScheduleModel(p, 1e-6)
    model.minimise_latency()
    result = run(model, time_limit_s=30, seed=0, workers=1, unit_s=1e-6,
                 deadline=time.perf_counter() + 0.2)
    assert result.clock_stopped
