"""Hypothesis properties of ``solve()`` over random DAGs and clusters with user constraints.

Every problem may carry pins (by node), forbidden devices, any of the three objectives (cost
with a latency target derived from a baseline's latency) and ``max_partitions``. Whatever
``solve`` returns must be a plan the user can run:

* every node placed exactly once, on a device that supports it, is not forbidden for it and
  is its pin when it has one;
* no device's peak memory (per the common evaluator) above its capacity;
* the partitions the plan executes (``Evaluation.partitions``, cut by
  ``split_into_partitions`` / ``timed_partitions``) cover every node once, on its device, and
  their dependency graph is acyclic; at most ``max_partitions`` of them;
* the latency target met (cost objective);
* objective never above the best acceptable baseline, bound never above the objective;
* the same input gives the same plan.

When ``solve`` raises ``InfeasibleError`` the brute force (small problems) must find no
acceptable plan either: a wrong "infeasible" fails here. The coarsened path (more than
``DEFAULT_GROUP_TARGET`` nodes) is checked with the same invariants, a constructed witness
plan replacing the brute force.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from test_solver_bruteforce import _random_problem

from partitioner.costing.types import Supported
from partitioner.errors import InfeasibleError
from partitioner.solver import DEFAULT_GROUP_TARGET, solve
from partitioner.solver.baselines import run_baselines
from partitioner.solver.evaluate import evaluate, is_acceptable, objective_value
from partitioner.solver.problem import OBJECTIVES, Problem, SolveReport
from partitioner.testing.random_problem import brute_force_optimum, demo_cluster, random_problem

#: Brute force only below this many assignments (7 nodes x 3 devices = 2,187).
BRUTE_FORCE_LIMIT = 2_187

TIME_LIMIT_S = 2.0

#: No shrinking: every example costs seconds of solving, and the printed recipe (``Case``)
#: already rebuilds a failing problem.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


def _supported(problem: Problem, name: str) -> list[str]:
    return [d for d in problem.cluster.device_ids
            if isinstance(problem.costs.get(name, d), Supported)]


def _allowed(problem: Problem, name: str) -> list[str]:
    """Devices ``name`` may use, computed from the problem's fields (not the solver's index)."""
    pin = problem.pins.get(name)
    return [d for d in _supported(problem, name)
            if d not in problem.forbidden.get(name, ()) and (pin is None or pin == d)]


class Case:
    """A drawn problem and the recipe that rebuilds it (Hypothesis prints the recipe)."""

    def __init__(self, recipe: str, problem: Problem) -> None:
        self.recipe = recipe
        self.problem = problem

    def __repr__(self) -> str:
        return self.recipe


def _with_constraints(draw: st.DrawFn, base: Problem, recipe: str, objective: str, *,
                      max_pins: int, max_forbidden: int,
                      max_partitions: st.SearchStrategy[int | None], strand: bool) -> Case:
    """``base`` plus drawn pins (to a supported device), forbidden devices, max_partitions
    and ``objective``; cost gets a latency target of a baseline's latency times a factor.
    With ``strand``, one example in ten forbids every device to one node."""
    names = [n.name for n in base.nodes]
    devices = base.cluster.device_ids
    pins: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(names), max_size=max_pins, unique=True)):
        supported = _supported(base, name)
        if supported:
            pins[name] = draw(st.sampled_from(supported))
    forbidden: dict[str, tuple[str, ...]] = {}
    for name in draw(st.lists(st.sampled_from(names), max_size=max_forbidden, unique=True)):
        # Forbid a device the node could otherwise use, leaving it at least one.
        supported = _supported(base, name)
        pin = pins.get(name)
        options = [d for d in supported if d != pin] if pin else (
            supported if len(supported) > 1 else [])
        if options:
            forbidden[name] = (draw(st.sampled_from(options)),)
    if strand and draw(st.integers(0, 9)) == 0:
        # Now and then a node no device may run: the diagnosis must name it.
        forbidden[draw(st.sampled_from(names))] = tuple(devices)
    problem = replace(base, pins=pins, forbidden=forbidden, objective="latency",
                      latency_target_s=None, max_partitions=draw(max_partitions))
    if objective == "cost":
        # A target that some plan meets: the fastest acceptable baseline's latency (under the
        # same pins, memory and max_partitions) times a factor >= 1.
        latencies = [r.evaluation.latency_s for r in run_baselines(problem).values()
                     if r.evaluation is not None]
        reference = min(latencies, default=sum(
            min((c for c in (_cost(base, n, d) for d in devices) if c is not None),
                default=0.0) for n in names))
        factor = draw(st.sampled_from([1.0, 1.1, 1.5, 3.0]))
        problem = replace(problem, latency_target_s=max(reference, 1e-6) * factor)
    problem = replace(problem, objective=objective)
    return Case(f"replace({recipe}, pins={pins!r}, forbidden={forbidden!r}, "
                f"objective={objective!r}, latency_target_s={problem.latency_target_s!r}, "
                f"max_partitions={problem.max_partitions!r})", problem)


def _cost(problem: Problem, name: str, device: str) -> float | None:
    c = problem.costs.get(name, device)
    return c.latency_s if isinstance(c, Supported) else None


@st.composite
def small_problems(draw: st.DrawFn, objective: str) -> Case:
    """At most 7 nodes x 3 devices: brute force stays under a second or two."""
    args = (draw(st.integers(0, 10_000)), draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 6, 7])),
            draw(st.sampled_from([1, 2, 3, 3])))
    shared = draw(st.booleans())
    memory = draw(st.sampled_from([2**40, 900, 1500]))
    base = _random_problem(*args, shared=shared, memory=memory)
    recipe = f"_random_problem{args[0], args[1], args[2]}[shared={shared}, memory={memory}]"
    return _with_constraints(draw, base, recipe, objective, max_pins=2, max_forbidden=3,
                             max_partitions=st.none() | st.integers(1, 4), strand=True)


@st.composite
def coarse_problems(draw: st.DrawFn, objective: str) -> Case:
    """200-400 nodes: more than ``DEFAULT_GROUP_TARGET``, so solve coarsens and refines."""
    kind = draw(st.sampled_from(["cpu+gpu", "cpu+npu", "cpu+cpu"]))
    gpu_memory = draw(st.sampled_from([16 * 2**30, 8 * 2**20]))
    n, seed = draw(st.integers(200, 400)), draw(st.integers(0, 10_000))
    base = random_problem(n, demo_cluster(kind, gpu_memory), seed=seed)
    recipe = f"random_problem({n}, demo_cluster({kind!r}, {gpu_memory}), seed={seed})"
    return _with_constraints(draw, base, recipe, objective, max_pins=12, max_forbidden=12,
                             max_partitions=st.none() | st.integers(2, 12), strand=False)


def _check_plan(problem: Problem, report: SolveReport) -> None:
    """The invariants every returned plan must satisfy (see the module docstring)."""
    names = [n.name for n in problem.nodes]
    assert sorted(report.assignment) == sorted(names), "every node placed exactly once"
    for name in names:
        assert report.assignment[name] in _allowed(problem, name), (
            f"{name} on {report.assignment[name]}: supported {_supported(problem, name)}, "
            f"pin {problem.pins.get(name)}, forbidden {problem.forbidden.get(name, ())}")

    ev = evaluate(problem, report.assignment)
    assert objective_value(problem, ev) == pytest.approx(report.objective, rel=1e-9, abs=1e-15)
    for dev in problem.cluster.devices:
        assert ev.peak_memory[dev.id] <= dev.memory_bytes, (
            f"{dev.id} needs {ev.peak_memory[dev.id]} bytes, capacity {dev.memory_bytes}")
    if problem.objective == "cost":
        assert problem.latency_target_s is not None
        assert ev.latency_s <= problem.latency_target_s * (1 + 1e-9), (
            f"latency {ev.latency_s} misses the target {problem.latency_target_s}")
    if problem.max_partitions is not None:
        assert ev.num_partitions <= problem.max_partitions, (
            f"{ev.num_partitions} partitions, max_partitions {problem.max_partitions}")

    # The cut the plan executes: each node once, on its device; the quotient graph is a DAG.
    parts = report.evaluation.partitions
    assert report.evaluation.num_partitions == len(parts)
    part_of: dict[str, int] = {}
    for j, part in enumerate(parts):
        for name in part.nodes:
            assert name not in part_of, f"{name} in two partitions"
            assert report.assignment[name] == part.device, f"{name} runs off its device"
            part_of[name] = j
    assert sorted(part_of) == sorted(names)
    succ: dict[int, set[int]] = {j: set() for j in range(len(parts))}
    for e in problem.edges:
        a, b = part_of[e.src], part_of[e.dst]
        if a != b:
            succ[a].add(b)
        assert a <= b, f"edge {e.src}->{e.dst} runs backwards in execution order"
    indegree = {j: 0 for j in succ}
    for js in succ.values():
        for j in js:
            indegree[j] += 1
    ready = [j for j, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        j = ready.pop()
        seen += 1
        for t in succ[j]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    assert seen == len(parts), "the partition graph has a cycle"

    acceptable = [objective_value(problem, r.evaluation) for r in report.baselines.values()
                  if r.evaluation is not None and is_acceptable(problem, r.evaluation)]
    if acceptable:
        best = min(acceptable)
        assert report.objective <= best * (1 + 1e-9) + 1e-15, (
            f"objective {report.objective} above the best baseline {best}")
    assert report.bound <= report.objective * (1 + 1e-12) + 1e-15
    assert 0.0 <= report.gap <= 1.0


def _events(problem: Problem) -> None:
    """Hypothesis statistics (``--hypothesis-show-statistics``): what the examples cover."""
    event(f"objective {problem.objective}")
    event("pins" if problem.pins else "no pins")
    event("forbidden" if problem.forbidden else "nothing forbidden")
    event("max_partitions" if problem.max_partitions is not None else "no max_partitions")


def _search_space(problem: Problem) -> int:
    return math.prod(len(_allowed(problem, n.name)) for n in problem.nodes)


@pytest.mark.parametrize("objective", OBJECTIVES)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=PHASES)
@given(data=st.data())
def test_small_problems_give_valid_plans_or_a_true_diagnosis(objective: str,
                                                             data: st.DataObject) -> None:
    check_small(data.draw(small_problems(objective)).problem)


def check_small(problem: Problem) -> None:
    """Solve ``problem`` (at most 7 nodes x 3 devices) and check every invariant; a wrong
    "infeasible" fails."""
    small = _search_space(problem) <= BRUTE_FORCE_LIMIT
    _events(problem)
    try:
        report = solve(problem, time_limit_s=TIME_LIMIT_S)
    except InfeasibleError as exc:
        event("infeasible")
        message = str(exc)
        assert message.strip(), "the diagnosis is empty"
        for n in problem.nodes:
            if not _allowed(problem, n.name):
                assert n.name in message, f"the diagnosis does not name stranded {n.name}"
        if small:
            optimum = brute_force_optimum(problem)
            assert optimum == float("inf"), (
                f"SOLVER BUG: solve() raised InfeasibleError ({message.splitlines()[0]!r}) but "
                f"brute force finds an acceptable plan with objective {optimum}")
        return
    _check_plan(problem, report)
    if small:
        optimum = brute_force_optimum(problem)
        assert report.objective >= optimum * (1 - 1e-9), "better than the exact optimum"
        assert report.bound <= optimum * (1 + 1e-9), (
            f"bound {report.bound} above the brute-force optimum {optimum}")
    _check_same_plan_again(problem, report)


@pytest.mark.parametrize(("seed", "n", "shared"), [(506, 6, False), (509, 5, False),
                                                   (509, 5, True)])
def test_no_false_infeasible_under_tight_memory(seed: int, n: int, shared: bool) -> None:
    """Regression: 3 devices of 900 bytes; brute force finds plans, solve said infeasible."""
    problem = _random_problem(seed, n, 3, shared=shared, memory=900)
    optimum = brute_force_optimum(problem)
    assert optimum < float("inf")
    report = _solve_expecting_a_plan(
        problem, f"brute force finds a plan with latency {optimum}")
    _check_plan(problem, report)
    assert report.objective >= optimum * (1 - 1e-9)


def _witness(problem: Problem) -> dict[str, str] | None:
    """A simple plan respecting pins and support: each node on its first allowed device in
    fallback-first order; None when some node has none."""
    devices = list(problem.cluster.device_ids)
    fb = problem.cluster.fallback_device
    if fb in devices:
        devices.remove(fb)
        devices.insert(0, fb)
    plan = {}
    for n in problem.nodes:
        allowed = _allowed(problem, n.name)
        if not allowed:
            return None
        plan[n.name] = min(allowed, key=devices.index)
    return plan


def _solve_expecting_a_plan(problem: Problem, witness: str) -> SolveReport:
    """``solve(problem)``, failing the test if it says infeasible although ``witness``."""
    try:
        return solve(problem, time_limit_s=TIME_LIMIT_S)
    except InfeasibleError as exc:
        pytest.fail(f"SOLVER BUG: InfeasibleError ({str(exc).splitlines()[0]!r}) but {witness}")


def _check_same_plan_again(problem: Problem, report: SolveReport) -> None:
    """The same input gives the same plan, unless the clock ended a stage of either solve
    (``SolveReport.clock_stopped``: a loaded machine), which the report then says."""
    again = solve(problem, time_limit_s=TIME_LIMIT_S)
    if report.clock_stopped or again.clock_stopped:
        return
    assert again.assignment == report.assignment, (
        f"same input, different plan: objective {report.objective} ({report.status}), "
        f"then {again.objective} ({again.status})")


def _coarse_max_partitions_cases() -> list[Problem]:
    """Found by ``test_coarsened_problems_give_valid_plans``: the fallback-first plan fits in
    memory within max_partitions, yet solve() said no plan tried does."""
    npu = random_problem(294, demo_cluster("cpu+npu", 8 * 2**20), seed=358)
    gpu = random_problem(308, demo_cluster("cpu+gpu", 8 * 2**20), seed=326)
    return [
        replace(npu, max_partitions=11, forbidden={"n136": ("cpu",)}, pins={
            "n140": "npu", "n206": "cpu", "n169": "npu", "n172": "npu", "n88": "npu",
            "n78": "cpu", "n263": "cpu", "n163": "cpu", "n228": "npu", "n189": "npu"}),
        replace(gpu, max_partitions=9, pins={"n142": "cpu", "n199": "cpu", "n90": "gpu"},
                forbidden={"n198": ("cpu",), "n172": ("cpu",), "n254": ("cpu",),
                           "n228": ("gpu",), "n65": ("cpu",), "n242": ("cpu",),
                           "n94": ("gpu",), "n163": ("gpu",), "n36": ("cpu",),
                           "n229": ("cpu",), "n42": ("gpu",), "n169": ("gpu",)}),
    ]


@pytest.mark.parametrize("case", range(2))
def test_no_false_infeasible_under_max_partitions_after_coarsening(case: int) -> None:
    problem = _coarse_max_partitions_cases()[case]
    plan = _witness(problem)
    assert plan is not None and is_acceptable(problem, evaluate(problem, plan))
    report = _solve_expecting_a_plan(problem, "the fallback-first plan is acceptable")
    _check_plan(problem, report)


@pytest.mark.parametrize("objective", OBJECTIVES)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=PHASES)
@given(data=st.data())
def test_coarsened_problems_give_valid_plans(objective: str, data: st.DataObject) -> None:
    check_coarse(data.draw(coarse_problems(objective)).problem)


def check_coarse(problem: Problem) -> None:
    """Solve ``problem`` (over ``DEFAULT_GROUP_TARGET`` nodes) and check every invariant."""
    assert len(problem.nodes) > DEFAULT_GROUP_TARGET
    _events(problem)
    try:
        report = solve(problem, time_limit_s=TIME_LIMIT_S)
    except InfeasibleError as exc:
        event("infeasible")
        assert str(exc).strip(), "the diagnosis is empty"
        plan = _witness(problem)
        if plan is not None:
            assert not is_acceptable(problem, evaluate(problem, plan)), (
                f"SOLVER BUG: InfeasibleError ({str(exc).splitlines()[0]!r}) but the "
                "fallback-first plan is acceptable")
        return
    assert report.groups, "a problem this large should have been coarsened"
    _check_plan(problem, report)
    _check_same_plan_again(problem, report)
