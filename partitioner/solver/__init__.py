"""Placement solver facade: ``solve(problem) -> SolveReport`` (baselines, coarsen, CP-SAT, refine).

Pipeline: cheap infeasibility checks (``diagnose``) -> baselines (``baselines``) -> coarsening
to a few hundred groups (``coarsen``) -> CP-SAT model for the objective, hinted with the best
baseline (``cpsat`` / ``serial`` / ``throughput``) -> every improving CP-SAT solution expanded
to nodes and re-scored by the common evaluator (``evaluate``) together with the baselines ->
a relaxation that proves the bound (its solutions are candidates too) -> the best few
acceptable candidates refined locally (``refine``; when none is acceptable, the least
overflowing repaired first). The returned assignment is therefore never worse than the best
baseline under the evaluator. The time limit is split into stages (``stages.Stages``) that end at
fixed points of the clock.

``bound`` is the best of the closed-form and LP bounds in ``bounds`` (critical path with
device choice, work per processor, serial work, the load-balancing / precedence LP) and, on
up to ``RELAXATION_NODE_LIMIT`` nodes, the proven bound of a CP-SAT relaxation given
``RELAXATION_SHARE`` of the time limit: ``relaxation`` for latency, ``load_relaxation`` for
throughput and cost. When the latency schedule model was solved uncoarsened on a cluster
without call overheads, that model's proven bound (less the tick rounding) counts too. The
bound is clamped to the objective; ``gap = (objective - bound) / objective``. The other
models' bounds are not used: they may over-count overheads or shared transfers, so they do
not bound the evaluator.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from partitioner.errors import SolverError
from partitioner.solver.baselines import best_baseline, evaluation_of, run_baselines
from partitioner.solver.bounds.cheap import lower_bound
from partitioner.solver.build import build_problem
from partitioner.solver.candidates import (
    Attempt,
    Candidate,
    add_if_acceptable,
    candidate,
    refine_best,
    repaired,
)
from partitioner.solver.coarsen import coarsen
from partitioner.solver.diagnose import check_feasible, explain_no_plan
from partitioner.solver.evaluate import evaluate, is_acceptable, objective_value
from partitioner.solver.index import ProblemIndex, index_of
from partitioner.solver.models.cpsat import (
    TICKS_PER_REFERENCE,
    AssignmentModel,
    ModelResult,
    ScheduleModel,
    run,
)
from partitioner.solver.models.load_relaxation import PRICE_SCALE, run_load_relaxation
from partitioner.solver.models.relaxation import RELAXATION_NODE_LIMIT, run_relaxation
from partitioner.solver.models.serial import SerialModel
from partitioner.solver.models.throughput import ThroughputModel
from partitioner.solver.problem import BaselineResult, Evaluation, Problem, SolveReport
from partitioner.solver.stages import Stages

__all__ = ["DEFAULT_GROUP_TARGET", "build_problem", "evaluate", "run_baselines", "solve"]

log = logging.getLogger(__name__)

#: Clusters with at most this many processors also run the serial latency model (``serial``)
#: before the schedule model; the evaluator picks among both models' solutions.
SERIAL_PROCESSORS = int(os.environ.get("HETPART_SERIAL_PROCESSORS", "2"))

#: Groups CP-SAT sees at most after coarsening.
DEFAULT_GROUP_TARGET = 160


def solve(
    problem: Problem,
    *,
    time_limit_s: float = 30.0,
    seed: int = 0,
    workers: int = 2,
    progress: Callable[[float, float], None] | None = None,
    group_target: int = DEFAULT_GROUP_TARGET,
    min_gain: float = 0.0,
) -> SolveReport:
    """Find a placement for ``problem`` minimising its objective.

    Args:
        problem: The placement problem.
        time_limit_s: Wall-clock limit of the whole solve, split into stages (``stages.Stages``);
            only the baselines and coarsening, which come first, are not cut.
        seed: CP-SAT random seed.
        workers: CP-SAT search workers (interleaved, with deterministic limits, so the same
            input gives the same plan unless the clock stops a stage on a loaded machine).
        progress: Called as ``progress(best_objective, bound)`` on every improving CP-SAT
            solution, in the units of the model being solved.
        group_target: Coarsen to at most this many groups before CP-SAT.
        min_gain: A plan spanning several devices must beat the best single device by this
            fraction (0.05 = 5%), else the single-device plan is returned (status
            ``SINGLE_DEVICE``): a smaller predicted gain is within the error of measured
            costs, and every cut costs something the cost model does not see.

    Returns:
        The report; its assignment maps every original node to a device.

    Raises:
        InfeasibleError: With a diagnosis, when no placement exists or none was found.
    """
    t_start = time.perf_counter()
    if problem.objective == "cost" and problem.latency_target_s is None:
        raise SolverError("objective 'cost' needs a latency target (--latency-target MS)")
    check_feasible(problem)
    idx = index_of(problem)
    baselines = run_baselines(problem)
    best = best_baseline(problem, baselines)
    candidates: list[Candidate] = []
    rejected: list[Attempt] = []
    if best is not None and best.evaluation is not None:
        candidates.append(candidate(problem, best.assignment, best.evaluation, 1, "hint"))

    if all(len(a) == 1 for a in idx.allowed):
        assignment = {n: idx.devices[idx.allowed[i][0]] for i, n in enumerate(idx.names)}
        ev = evaluate(problem, assignment)
        if not is_acceptable(problem, ev):
            raise explain_no_plan(problem, baselines, ev.latency_s,
                                  attempts=[("the only placement", ev)])
        value = objective_value(problem, ev)
        return SolveReport(assignment, ev, "SINGLE_DEVICE", value, value, 0.0, 0.0, seed,
                           workers, time_limit_s, baselines, {})
    if problem.max_partitions == 1:
        # One partition runs on one device: the best single-device plan is the optimum.
        alone = baselines["best_single"]
        if alone.evaluation is None:
            raise explain_no_plan(problem, baselines, None)
        value = objective_value(problem, alone.evaluation)
        return SolveReport(dict(alone.assignment), alone.evaluation, "OPTIMAL", value, value,
                           0.0, time.perf_counter() - t_start, seed, workers, time_limit_s,
                           baselines, {})

    coarse = coarsen(problem, group_target)
    model_problem = coarse.problem if coarse is not None else problem
    ref = objective_value(problem, best.evaluation) if best and best.evaluation else 0.0
    if problem.objective == "cost":
        ref = best.evaluation.latency_s if best and best.evaluation else 0.0
    ref = ref or lower_bound(problem) or 1e-3
    tick = ref / TICKS_PER_REFERENCE
    hint = [idx.dev_pos[best.assignment[n]] for n in idx.names] if best else None
    if hint is not None and coarse is not None:
        hint = coarse.restrict(hint)

    kinds = _model_kinds(problem, idx)
    results: list[ModelResult] = []
    keep = 5 if len(idx.names) <= 20_000 else 2
    relax = len(idx.names) <= RELAXATION_NODE_LIMIT
    stages = Stages(t_start, time_limit_s, relax)
    spent = 0.0
    for j, kind in enumerate(kinds):
        share = (stages.search_s - spent) / (len(kinds) - j)
        for memory in ("safe", "weights"):
            result = _run_model(model_problem, kind, tick, memory, hint, max(0.05, share),
                                seed, workers, progress, keep, stages.search_end)
            spent += result.used_s
            share -= result.used_s
            results.append(result)
            if result.solutions:
                break
            log.info("CP-SAT %s on the %s model with %s memory", result.status, kind, memory)
    cp_status = "OPTIMAL" if any(r.status == "OPTIMAL" for r in results) else "FEASIBLE"
    solutions = [dev for r in results for dev in r.solutions]
    for k, dev in enumerate(solutions):
        full = coarse.expand(dev) if coarse is not None else dev
        add_if_acceptable(problem, idx, full, candidates, rejected, f"cpsat{k}", -k)
    relaxed = None
    if relax:
        # Proves the bound on the uncoarsened problem; its optimum's assignment is one more
        # candidate (the evaluator's call semantics may still make it worse).
        incumbent = min(candidates, key=lambda c: c.key).assignment if candidates else None
        relax_run = run_relaxation if problem.objective == "latency" else run_load_relaxation
        relaxed = relax_run(problem, tick, [idx.dev_pos[incumbent[n]] for n in idx.names]
                            if incumbent else None, max(0.05, stages.relaxation_s), seed,
                            workers, deadline=stages.relaxation_end)
        for dev in relaxed.solutions:
            add_if_acceptable(problem, idx, dev, candidates, rejected, "relaxation", 1)
    if not candidates:
        rejected += [(name, r.assignment, seen) for name, r in baselines.items()
                     if (seen := evaluation_of(problem, r)) is not None]
        fixed = repaired(problem, idx, rejected, stages, seed)
        if fixed is None:
            raise explain_no_plan(problem, baselines,
                                  min((ev.latency_s for _, _, ev in rejected), default=None),
                                  attempts=[(source, ev) for source, _, ev in rejected])
        candidates.append(fixed)
    candidates.sort(key=lambda c: c.key)
    bound = lower_bound(problem)
    # Tick rounding along a path: at most one tick per node and edge.
    path_ticks = tick * (len(idx.names) + len(problem.edges))
    rounding_s = 0.0
    if relaxed is not None and relaxed.bound_s is not None:
        bound = max(bound, relaxed.bound_s)  # floored durations: valid as it is
        rounding_s = path_ticks
        if problem.objective == "cost":  # ticks (and price weights) to price per 1k
            top = max(d.price_per_hour for d in problem.cluster.devices)
            rounding_s = path_ticks * top / 3600.0 * 1000.0 + bound / PRICE_SCALE
    for result in results:
        if coarse is None and result.bound_s is not None and result.bound_is_relaxation:
            # Durations were rounded to nearest: remove the worst-case rounding along a path.
            bound = max(bound, result.bound_s - 0.5 * path_ticks)
            rounding_s = path_ticks
    chosen = refine_best(problem, candidates, max(0.05, stages.refine_s), seed,
                          bound + rounding_s, stages.end)
    value, assignment, ev, source = (chosen.value, chosen.assignment, chosen.evaluation,
                                     chosen.source)
    if min_gain > 0:
        single = _single_within(problem, baselines, value, min_gain)
        if single is not None and len(set(assignment.values())) > 1:
            value, assignment, ev, source = single
    solve_time = time.perf_counter() - t_start
    stopped = tuple(stage for stage, cut in (
        ("search", any(r.clock_stopped for r in results)),
        ("relaxation", relaxed is not None and relaxed.clock_stopped),
        ("refinement", time.perf_counter() >= stages.end),
    ) if cut)
    if stopped:
        log.info("the clock, not a deterministic budget, ended the %s stage(s): a rerun on a "
                 "less loaded machine may find another plan", ", ".join(stopped))

    if source == "single":
        status = "SINGLE_DEVICE"
    elif source == "hint":
        status = "HINT"
    elif cp_status == "OPTIMAL" and coarse is None:
        status = "OPTIMAL"
    else:
        status = "FEASIBLE"
    bound = min(bound, value)
    gap = (value - bound) / value if value > 0 else 0.0
    if status not in ("HINT", "SINGLE_DEVICE"):
        # Optimal when the bound meets the objective up to tick rounding.
        rounding = rounding_s / value if value else 0.0
        status = "OPTIMAL" if gap <= rounding + 1e-6 else "FEASIBLE"
    return SolveReport(
        assignment=assignment,
        evaluation=ev,
        status=status,
        objective=value,
        bound=bound,
        gap=gap,
        solve_time_s=solve_time,
        seed=seed,
        workers=workers,
        time_limit_s=time_limit_s,
        baselines=baselines,
        groups=dict(coarse.groups) if coarse is not None else {},
        clock_stopped=bool(stopped),
        clock_stopped_stages=stopped,
    )


def _single_within(problem: Problem, baselines: dict[str, BaselineResult], value: float,
                   min_gain: float) -> tuple[float, dict[str, str], Evaluation, str] | None:
    """The best single-device plan when it is within ``min_gain`` of ``value``, else None."""
    single = baselines.get("best_single")
    if single is None or single.evaluation is None or not is_acceptable(problem,
                                                                          single.evaluation):
        return None
    single_value = round(objective_value(problem, single.evaluation), 15)
    if single_value > value * (1 + min_gain):
        return None
    return single_value, dict(single.assignment), single.evaluation, "single"


def _model_kinds(problem: Problem, idx: ProblemIndex) -> list[str]:
    """CP-SAT models to run, in order (they share the time limit)."""
    if problem.objective == "throughput":
        return ["throughput"]
    if problem.objective == "latency" and len(set(idx.group)) <= SERIAL_PROCESSORS:
        return ["serial", "schedule"]
    return ["schedule"]


def _run_model(problem: Problem, kind: str, tick: float, memory: str, hint: list[int] | None,
               time_limit_s: float, seed: int, workers: int,
               progress: Callable[[float, float], None] | None, keep: int,
               deadline: float) -> ModelResult:
    model: AssignmentModel
    if kind in ("throughput", "serial"):
        model = (ThroughputModel if kind == "throughput" else SerialModel)(problem, tick, memory)
        if hint is not None:
            model.hint_assignment(hint)
        result = run(model, time_limit_s=time_limit_s, seed=seed, workers=workers,
                     unit_s=tick, progress=progress, keep=keep, deadline=deadline)
        # Neither relaxes the evaluator: a tensor sent to two consumers counts twice, and
        # the serial sum ignores overlapping transfers.
        result.bound_is_relaxation = False
        return result
    idx = index_of(problem)
    smodel = ScheduleModel(problem, tick, memory)
    unit = tick
    if problem.objective == "cost":
        assert problem.latency_target_s is not None
        unit = smodel.minimise_cost(problem.latency_target_s) or tick
    else:
        smodel.minimise_latency()
    if hint is not None:
        ev = evaluate(problem, {n: smodel.idx.devices[hint[i]]
                                for i, n in enumerate(smodel.idx.names)})
        order = sorted(range(len(hint)), key=lambda i: (ev.schedule[smodel.idx.names[i]][1], i))
        smodel.hint_schedule(hint, order)
    result = run(smodel, time_limit_s=time_limit_s, seed=seed, workers=workers, unit_s=unit,
                 progress=progress, keep=keep, deadline=deadline)
    # Entry overheads may be counted more often than calls: only overhead-free models relax
    # the evaluator.
    result.bound_is_relaxation = problem.objective == "latency" and not any(idx.overhead)
    return result


