"""The segmented bound within a binding device's memory (``budget_path``, ``memory_budget``,
``segmented``) on hand-written problems whose optimum is known."""

from __future__ import annotations

import random

import pytest

from partitioner.solver.bounds.budget_path import Option, cheapest_path
from partitioner.solver.bounds.memory_budget import BUDGET_UNITS, binding_budget, levels
from partitioner.solver.bounds.segments import segments
from partitioner.solver.evaluate import evaluate, is_acceptable
from partitioner.solver.index import index_of
from partitioner.solver.models.relaxation import run_relaxation
from partitioner.solver.problem import Problem
from partitioner.testing.random_problem import brute_force_optimum, toy_device, toy_problem

MS = 1e-3
MB = 2**20


def test_cheapest_path_keeps_within_the_capacity() -> None:
    # Two stages from state None; "fast" options use 3 units each, the slow ones none.
    stage = [Option(None, "x", 3, 1.0), Option(None, "y", 0, 4.0)]
    second = [Option("x", "z", 3, 1.0), Option("x", "z", 0, 5.0), Option("y", "z", 3, 1.0)]
    assert cheapest_path([stage, second], 6) == (2.0, [0, 0])
    # Room for one fast option only: fast then slow (6.0) loses to slow then fast (5.0).
    assert cheapest_path([stage, second], 5) == (5.0, [1, 2])
    assert cheapest_path([stage, [Option("x", "z", 9, 1.0)]], 5) is None


def _chain(memory: int, *, activations: int = 0, **problem_fields: object) -> Problem:
    """``s -> a -> b -> c -> t`` on a fast ``gpu`` and a slow ``cpu``: a, b and c hold 40 MB of
    weights each and take 1 ms on the GPU, 5 ms on the CPU; s and t take 0.1 ms anywhere.
    Every node outputs ``activations`` bytes; copies are free."""
    devices = (toy_device("gpu", memory_bytes=memory), toy_device("cpu"))
    costs = {n: {"gpu": 0.1 * MS, "cpu": 0.1 * MS} for n in ("s", "t")}
    costs.update({n: {"gpu": 1 * MS, "cpu": 5 * MS} for n in ("a", "b", "c")})
    costs = {n: costs[n] for n in ("s", "a", "b", "c", "t")}
    edges = [(u, v, activations) for u, v in ("sa", "ab", "bc", "ct")]
    return toy_problem(costs, edges, devices, bandwidth=1e15,
                       weights=dict.fromkeys("abc", 40 * MB),
                       outputs=dict.fromkeys("sabct", activations), **problem_fields)


def test_a_device_binds_when_the_weights_that_may_go_there_overflow_it() -> None:
    roomy = _chain(200 * MB)
    assert binding_budget(roomy, index_of(roomy)) is None
    problem = _chain(100 * MB, activations=6 * MB)
    idx = index_of(problem)
    budget = binding_budget(problem, idx)
    assert budget is not None and idx.devices[budget.device] == "gpu"
    unit = 100 * MB / BUDGET_UNITS
    assert budget.weights[idx.pos["a"]] == int(40 * MB // unit)
    # s holds its output; a, b, c and t also their input: two footprint levels.
    one, two = int(6 * MB // unit), int(12 * MB // unit)
    assert budget.footprints[idx.pos["s"]] == one and budget.footprints[idx.pos["t"]] == two
    low, high = levels(budget, idx)
    assert low.banned == {idx.pos[n] for n in "abct"} and low.capacity == BUDGET_UNITS - one
    assert high.banned == set() and high.capacity == BUDGET_UNITS - two


@pytest.mark.parametrize(("activations", "pins"), [(0, {}), (6 * MB, {}), (0, {"b": "gpu"})])
def test_the_segmented_bound_keeps_within_the_memory_of_a_binding_device(
        activations: int, pins: dict[str, str]) -> None:
    """Two of the three layers fit on the GPU: one runs on the CPU (4 ms more), which a
    bound per segment, each free to keep its layer on the GPU, cannot see. A layer pinned
    to the GPU is never tried off it."""
    problem = _chain(100 * MB, activations=activations, pins=pins)
    all_gpu = evaluate(problem, dict.fromkeys("sabct", "gpu")).latency_s
    optimum = brute_force_optimum(problem)
    assert optimum == pytest.approx(all_gpu + 4 * MS)
    # Segments s-a and b-c-t: b and c are inside the second, not its cut nodes.
    relaxed = run_relaxation(problem, 1e-6 * MS, None, time_limit_s=2.0, seed=0, workers=1,
                             segment_min_nodes=2)
    assert relaxed.bound_s == pytest.approx(optimum, rel=1e-6)
    # Its path is a plan that fits and is optimal.
    idx = index_of(problem)
    plans = [evaluate(problem, {n: idx.devices[dev[i]] for i, n in enumerate(idx.names)})
             for dev in relaxed.solutions]
    assert any(is_acceptable(problem, ev) and ev.latency_s == pytest.approx(optimum)
               for ev in plans)


def _random_memory_bound_problem(seed: int) -> Problem:
    """A random DAG of 5 to 7 nodes on a fast GPU whose memory holds about half the weights
    and an unlimited, slower CPU (copies and call overheads random too)."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(5 + seed % 3)]
    weights = {n: rng.choice((0, 10, 30, 60)) * MB for n in names}
    memory = max(40 * MB, sum(weights.values()) // 2)
    devices = (toy_device("gpu", memory_bytes=memory, overhead_s=rng.choice((0.0, 0.2)) * MS),
               toy_device("cpu", overhead_s=rng.choice((0.0, 0.1)) * MS))
    costs: dict[str, dict[str, float | None]] = {
        n: {"gpu": rng.choice((0.2, 0.5, 1.0)) * MS, "cpu": rng.choice((1.0, 2.0, 4.0)) * MS}
        for n in names}
    edges = [(names[j], names[i], rng.choice((0, MB)))
             for i in range(1, len(names))
             for j in rng.sample(range(i), k=min(i, rng.choice((1, 1, 2))))]
    return toy_problem(costs, edges, devices, bandwidth=1e9, weights=weights,
                       outputs=dict.fromkeys(names, MB))


def test_the_budgeted_bound_never_exceeds_the_brute_force_optimum() -> None:
    binding = 0  # cases cut into segments, joined within the GPU's memory
    for seed in range(24):
        problem = _random_memory_bound_problem(seed)
        optimum = brute_force_optimum(problem)
        assert optimum < float("inf"), seed  # the CPU holds anything
        idx = index_of(problem)
        binding += binding_budget(problem, idx) is not None and len(segments(idx, 1)) > 1
        relaxed = run_relaxation(problem, optimum / 1e5, None, time_limit_s=0.5, seed=0,
                                 workers=1, segment_min_nodes=1)
        assert relaxed.bound_s is not None and relaxed.bound_s <= optimum * (1 + 1e-9), seed
    assert binding >= 16, binding
