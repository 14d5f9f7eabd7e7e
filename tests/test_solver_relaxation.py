"""The CP-SAT latency relaxation on hand-written problems whose optimum is known."""

from __future__ import annotations

import pytest

from partitioner.solver.evaluate import evaluate
from partitioner.solver.models.cpsat import run
from partitioner.solver.models.relaxation import RelaxationModel, run_relaxation
from partitioner.solver.problem import Problem
from partitioner.testing.random_problem import toy_device, toy_problem

MS = 1e-3
TICK = 1e-6


def _fork_join() -> Problem:
    """``s`` forks to ``x`` and ``w``, which join in ``t``; all run on ``acc`` (1 ms each,
    1 ms per call), and ``x`` also runs on ``cpu`` in 0.1 ms with no call overhead."""
    devices = (toy_device("acc", overhead_s=1 * MS), toy_device("cpu"))
    costs = {"s": {"acc": 1 * MS, "cpu": None}, "x": {"acc": 1 * MS, "cpu": 0.1 * MS},
             "w": {"acc": 1 * MS, "cpu": None}, "t": {"acc": 1 * MS, "cpu": None}}
    edges = [("s", "x", 0), ("s", "w", 0), ("x", "t", 0), ("w", "t", 0)]
    return toy_problem(costs, edges, devices)


def test_a_round_trip_to_another_device_pays_for_the_extra_call() -> None:
    """Sending ``x`` to the CPU ends ``s``'s call and opens another for ``t``: one more
    overhead on the accelerator, so it never pays off (the evaluator's best is all-acc, 5 ms).
    A relaxation charging one call per device proved only 4.1 ms here."""
    problem = _fork_join()
    names = ("s", "x", "w", "t")
    all_acc = evaluate(problem, dict.fromkeys(names, "acc")).latency_s
    x_on_cpu = evaluate(problem, {**dict.fromkeys(names, "acc"), "x": "cpu"}).latency_s
    assert all_acc == pytest.approx(5 * MS) and x_on_cpu > all_acc
    relaxed = run_relaxation(problem, TICK, None, time_limit_s=2.0, seed=0, workers=1)
    assert relaxed.bound_s is not None
    assert relaxed.bound_s >= all_acc * (1 - 1e-6)


def test_a_round_trip_idles_the_accelerator_or_costs_it_one_more_call() -> None:
    """``x`` costs 3 ms on ``acc`` and 1 ms on ``cpu``. Sent to the CPU, the accelerator
    either waits for it between two calls ([s, w], x, [t]) or runs ``w`` meanwhile in a third
    call ([s], [w], [t]): 6 ms either way, against 7 ms all on ``acc``. Two overheads and the
    accelerator's work alone prove only 5 ms; the return's idle time (``_return_idle``) is
    the missing millisecond."""
    devices = (toy_device("acc", overhead_s=1 * MS), toy_device("cpu"))
    costs = {"s": {"acc": 1 * MS, "cpu": None}, "x": {"acc": 3 * MS, "cpu": 1 * MS},
             "w": {"acc": 1 * MS, "cpu": None}, "t": {"acc": 1 * MS, "cpu": None}}
    problem = toy_problem(costs, [("s", "x", 0), ("s", "w", 0), ("x", "t", 0), ("w", "t", 0)],
                          devices)
    names = ("s", "x", "w", "t")
    x_on_cpu = evaluate(problem, {**dict.fromkeys(names, "acc"), "x": "cpu"}).latency_s
    assert x_on_cpu == pytest.approx(6 * MS)
    assert evaluate(problem, dict.fromkeys(names, "acc")).latency_s == pytest.approx(7 * MS)
    relaxed = run_relaxation(problem, TICK, None, time_limit_s=2.0, seed=0, workers=1)
    assert relaxed.bound_s == pytest.approx(x_on_cpu)


def test_after_a_cut_node_only_its_device_may_be_mid_call() -> None:
    """A segment source (cut node, done at time 0) on ``cpu`` leaves ``acc`` idle with no
    call open: a node there waits for a whole overhead; on ``cpu`` it may start at once."""
    devices = (toy_device("acc", overhead_s=1 * MS), toy_device("cpu", overhead_s=1 * MS))
    costs = {"c": {"acc": 0.0, "cpu": 0.0}, "y": {"acc": 0.5 * MS, "cpu": 0.5 * MS}}
    for source_device in ("cpu", "acc"):  # ``y`` joins the source's open call either way
        problem = toy_problem(costs, [("c", "y", 0)], devices, pins={"c": source_device})
        model = RelaxationModel(problem, TICK, source=0)
        result = run(model, time_limit_s=1.0, seed=0, workers=1, unit_s=TICK, keep=1)
        assert result.bound_s is not None and result.bound_s == pytest.approx(0.5 * MS)
    pinned = toy_problem(costs, [("c", "y", 0)], devices, pins={"c": "cpu", "y": "acc"})
    result = run(RelaxationModel(pinned, TICK, source=0), time_limit_s=1.0, seed=0, workers=1,
                 unit_s=TICK, keep=1)
    assert result.bound_s is not None and result.bound_s == pytest.approx(1.5 * MS)


def _solve_relaxation(problem: Problem, call_slots: int) -> float:
    result = run(RelaxationModel(problem, TICK, call_slots=call_slots), time_limit_s=5.0,
                 seed=0, workers=1, unit_s=TICK, keep=1)
    assert result.status == "OPTIMAL" and result.bound_s is not None
    return result.bound_s


def test_call_slots_make_outputs_wait_for_the_end_of_their_call() -> None:
    """``a`` (1 ms) and ``b`` (5 ms) run only on the CPU (2 ms per call); ``x``, fed by ``a``,
    takes 1 ms on ``acc`` (0.5 ms per call). One CPU call [a, b] sends ``a``'s output at
    8 ms, so ``x`` ends at 9.5; ending the call after ``a`` costs a second CPU call (10 ms).
    Without slots ``a``'s output left at its own end and the bound was 8 ms."""
    devices = (toy_device("acc", overhead_s=0.5 * MS), toy_device("cpu", overhead_s=2 * MS))
    costs = {"a": {"acc": None, "cpu": 1 * MS}, "b": {"acc": None, "cpu": 5 * MS},
             "x": {"acc": 1 * MS, "cpu": 10 * MS}}
    problem = toy_problem(costs, [("a", "x", 0)], devices)
    best = min(evaluate(problem, {"a": "cpu", "b": "cpu", "x": x}).latency_s
               for x in ("acc", "cpu"))
    assert best == pytest.approx(9.5 * MS)
    assert _solve_relaxation(problem, 0) == pytest.approx(8 * MS)
    assert _solve_relaxation(problem, 3) == pytest.approx(best)


def test_call_slots_make_a_call_wait_for_all_its_inputs() -> None:
    """``p`` (1 ms) and ``q`` (4 ms) run on the CPU (no call overhead) and feed ``u`` (3 ms)
    and ``v`` (1 ms) on ``acc`` (2 ms per call), joined by ``t`` (1 ms) on the CPU. The call
    running ``u`` (3-6 ms) has started before ``v``'s input arrives at 5 ms, so ``v`` needs a
    second call from 6 ms (``t`` ends at 10), or one call waits for both (12, the evaluator's
    best: its cuts keep ``p`` and ``q`` in one CPU call). Without slots ``v``'s call overhead
    overlapped ``u``'s run: 9 ms."""
    devices = (toy_device("acc", overhead_s=2 * MS), toy_device("cpu"))
    costs = {"p": {"acc": None, "cpu": 1 * MS}, "q": {"acc": None, "cpu": 4 * MS},
             "u": {"acc": 3 * MS, "cpu": 8 * MS}, "v": {"acc": 1 * MS, "cpu": 8 * MS},
             "t": {"acc": None, "cpu": 1 * MS}}
    edges = [("p", "u", 0), ("q", "v", 0), ("u", "t", 0), ("v", "t", 0)]
    problem = toy_problem(costs, edges, devices)
    names = list(costs)
    best = min(evaluate(problem, {**dict.fromkeys(names, "cpu"), "u": u, "v": v}).latency_s
               for u in ("acc", "cpu") for v in ("acc", "cpu"))
    assert best == pytest.approx(12 * MS)
    assert _solve_relaxation(problem, 0) == pytest.approx(9 * MS)
    assert _solve_relaxation(problem, 3) == pytest.approx(10 * MS)
