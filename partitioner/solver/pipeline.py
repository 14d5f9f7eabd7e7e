"""The stages of ``solve``: baselines -> coarsen -> search -> relaxation -> repair -> bound ->
refine -> report.

Each stage is a function that takes the ``SolveState`` the earlier stages filled in (and,
where it needs them, their products) and returns its own product; ``partitioner.solver.solve``
calls them in order and reads like the pipeline. The candidate list and the rejected plans
live on the state: the search, the relaxation and the repair append to them, refinement
chooses among them. The stages run in exactly this order because the later ones share the
clock (``stages.Stages``): the relaxation starts from the best candidate found so far, the
repair runs only when no candidate is acceptable, and refinement starts from the candidates
with the proven bound in hand.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from partitioner.errors import SolverError
from partitioner.solver.baselines import best_baseline, evaluation_of, run_baselines
from partitioner.solver.bounds.cheap import lower_bound
from partitioner.solver.candidates import (
    Attempt,
    Candidate,
    add_if_acceptable,
    candidate,
    refine_best,
    repaired,
)
from partitioner.solver.coarsen import Coarsening, coarsen
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

log = logging.getLogger(__name__)

#: Clusters with at most this many processors also run the serial latency model (``serial``)
#: before the schedule model; the evaluator picks among both models' solutions.
SERIAL_PROCESSORS = int(os.environ.get("HETPART_SERIAL_PROCESSORS", "2"))


@dataclass(frozen=True)
class SolveOptions:
    """``solve``'s keyword arguments, as given (see ``partitioner.solver.solve``)."""

    time_limit_s: float
    seed: int
    workers: int
    progress: Callable[[float, float], None] | None
    group_target: int
    min_gain: float


@dataclass
class SolveState:
    """What the stages share: the problem, the options, the clock and the plans found.

    Attributes:
        problem: The placement problem, uncoarsened.
        options: ``solve``'s arguments.
        started: ``time.perf_counter()`` when ``solve`` was called; the stages' clock.
        idx: The problem's index.
        baselines: Every baseline's result, by name.
        best: The best baseline (the CP-SAT hint), or None.
        stages: The time limit split into stages (``stages.Stages``).
        candidates: Acceptable plans so far (the best baseline, CP-SAT and relaxation
            solutions, a repaired plan); refinement starts from the best few.
        rejected: Plans found but not acceptable; the repair starts from them and the
            diagnosis names them.
    """

    problem: Problem
    options: SolveOptions
    started: float
    idx: ProblemIndex
    baselines: dict[str, BaselineResult]
    best: BaselineResult | None
    stages: Stages
    candidates: list[Candidate] = field(default_factory=list)
    rejected: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class Coarsened:
    """What the coarsen stage hands to the search.

    Attributes:
        coarse: The coarsening, or None when the problem is small enough as it is.
        problem: The problem the CP-SAT models see (``coarse.problem``, or the problem).
        tick: Seconds per CP-SAT time unit (the best baseline's objective, or the cheap
            bound, over ``TICKS_PER_REFERENCE``).
        hint: The best baseline as a device index per (coarse) node, or None.
    """

    coarse: Coarsening | None
    problem: Problem
    tick: float
    hint: list[int] | None


@dataclass(frozen=True)
class Searched:
    """What the CP-SAT search stage found: every model run, and whether any proved its
    (coarse) optimum (``cp_status``: ``OPTIMAL`` or ``FEASIBLE``)."""

    results: list[ModelResult]
    cp_status: str


@dataclass(frozen=True)
class Bound:
    """The proven lower bound on the objective (before clamping to it) and the tick
    rounding (``rounding_s``) within which a gap still counts as optimal."""

    value: float
    rounding_s: float


@dataclass(frozen=True)
class Chosen:
    """The plan refinement chose (or the single-device plan ``min_gain`` preferred)."""

    value: float
    assignment: dict[str, str]
    evaluation: Evaluation
    source: str


def start(problem: Problem, options: SolveOptions, started: float) -> SolveState:
    """Baselines stage: check the problem, run the baselines, seed the candidates.

    Takes the problem and ``solve``'s options; returns the state every later stage works
    on, its candidates holding the best baseline (``"hint"``) when it is acceptable. It
    exists so that every solve has a plan to beat, and CP-SAT a hint, before any model
    is built.

    Raises:
        SolverError: objective ``cost`` without a latency target.
        InfeasibleError: ``check_feasible``'s cheap checks find no placement can exist.
    """
    if problem.objective == "cost" and problem.latency_target_s is None:
        raise SolverError("objective 'cost' needs a latency target (--latency-target MS)")
    check_feasible(problem)
    idx = index_of(problem)
    baselines = run_baselines(problem)
    best = best_baseline(problem, baselines)
    relax = len(idx.names) <= RELAXATION_NODE_LIMIT
    state = SolveState(problem, options, started, idx, baselines, best,
                       Stages(started, options.time_limit_s, relax))
    if best is not None and best.evaluation is not None:
        state.candidates.append(candidate(problem, best.assignment, best.evaluation, 1, "hint"))
    return state


def shortcut(state: SolveState) -> SolveReport | None:
    """The report without a search, when the problem leaves no choice; else None.

    Takes the state after the baselines. Returns a ``SINGLE_DEVICE`` report when every
    node is allowed on one device only, an ``OPTIMAL`` one (the best single device) when
    ``max_partitions`` is 1, and None otherwise. It exists because neither case needs
    CP-SAT: the only placement, or the best one-partition placement, is the answer.

    Raises:
        InfeasibleError: the only placement is not acceptable, or no single device fits.
    """
    problem, idx, baselines, opts = state.problem, state.idx, state.baselines, state.options
    if all(len(a) == 1 for a in idx.allowed):
        assignment = {n: idx.devices[idx.allowed[i][0]] for i, n in enumerate(idx.names)}
        ev = evaluate(problem, assignment)
        if not is_acceptable(problem, ev):
            raise explain_no_plan(problem, baselines, ev.latency_s,
                                  attempts=[("the only placement", ev)])
        value = objective_value(problem, ev)
        return SolveReport(assignment, ev, "SINGLE_DEVICE", value, value, 0.0, 0.0, opts.seed,
                           opts.workers, opts.time_limit_s, baselines, {})
    if problem.max_partitions == 1:
        # One partition runs on one device: the best single-device plan is the optimum.
        alone = baselines["best_single"]
        if alone.evaluation is None:
            raise explain_no_plan(problem, baselines, None)
        value = objective_value(problem, alone.evaluation)
        return SolveReport(dict(alone.assignment), alone.evaluation, "OPTIMAL", value, value,
                           0.0, time.perf_counter() - state.started, opts.seed, opts.workers,
                           opts.time_limit_s, baselines, {})
    return None


def coarsen_stage(state: SolveState) -> Coarsened:
    """Coarsen stage: group the nodes for CP-SAT and fix its time unit and hint.

    Takes the state after the baselines; returns the coarsening (None when the problem has
    at most ``options.group_target`` nodes), the problem the models see, the tick (the
    best baseline's objective, for cost its latency, else the cheap bound, over
    ``TICKS_PER_REFERENCE``) and the best baseline as a hint on the coarse nodes. It
    exists because CP-SAT scales to a few hundred groups, not to whole models, and its
    integer durations need one unit for all models.
    """
    problem, idx, best = state.problem, state.idx, state.best
    coarse = coarsen(problem, state.options.group_target)
    model_problem = coarse.problem if coarse is not None else problem
    ref = objective_value(problem, best.evaluation) if best and best.evaluation else 0.0
    if problem.objective == "cost":
        ref = best.evaluation.latency_s if best and best.evaluation else 0.0
    ref = ref or lower_bound(problem) or 1e-3
    tick = ref / TICKS_PER_REFERENCE
    hint = [idx.dev_pos[best.assignment[n]] for n in idx.names] if best else None
    if hint is not None and coarse is not None:
        hint = coarse.restrict(hint)
    return Coarsened(coarse, model_problem, tick, hint)


def search(state: SolveState, coarsened: Coarsened) -> Searched:
    """Search stage: run the CP-SAT models for the objective on the coarse problem.

    Takes the state and the coarsen stage's product. The models (``model_kinds``) share the
    search stage's budget in turn, each taking an equal share of what the earlier ones left;
    a model that finds nothing with ``safe`` memory accounting is rerun with ``weights``
    (weights only). Every solution is expanded to nodes, re-scored by the evaluator and added
    to ``state.candidates`` (or ``state.rejected``). Returns every run and whether any proved
    its optimum. It exists to find placements the baselines cannot: the optimum of the
    (coarse) model, within the time limit.
    """
    problem, idx, opts, stages = state.problem, state.idx, state.options, state.stages
    kinds = model_kinds(problem, idx)
    results: list[ModelResult] = []
    keep = 5 if len(idx.names) <= 20_000 else 2
    spent = 0.0
    for j, kind in enumerate(kinds):
        share = (stages.search_s - spent) / (len(kinds) - j)
        for memory in ("safe", "weights"):
            result = run_model(coarsened.problem, kind, coarsened.tick, memory, coarsened.hint,
                               max(0.05, share), opts.seed, opts.workers, opts.progress, keep,
                               stages.search_end)
            spent += result.used_s
            share -= result.used_s
            results.append(result)
            if result.solutions:
                break
            log.info("CP-SAT %s on the %s model with %s memory", result.status, kind, memory)
    cp_status = "OPTIMAL" if any(r.status == "OPTIMAL" for r in results) else "FEASIBLE"
    solutions = [dev for r in results for dev in r.solutions]
    coarse = coarsened.coarse
    for k, dev in enumerate(solutions):
        full = coarse.expand(dev) if coarse is not None else dev
        add_if_acceptable(problem, idx, full, state.candidates, state.rejected, f"cpsat{k}", -k)
    return Searched(results, cp_status)


def relaxation(state: SolveState, tick: float) -> ModelResult | None:
    """Relaxation stage (the first half of the bound): prove a bound on the uncoarsened
    problem with a CP-SAT relaxation (``relaxation`` for latency, ``load_relaxation`` for
    throughput and cost), hinted with the best candidate so far.

    Takes the state and the search's tick; returns the relaxation's run, or None when the
    problem has more than ``RELAXATION_NODE_LIMIT`` nodes (``stages.relax`` is off). Its
    solutions are added to the candidates (the evaluator's call semantics may still make
    them worse). It exists because the closed-form bounds are weak on most models and the
    coarse models' bounds do not bound the evaluator.
    """
    if not state.stages.relax:
        return None
    problem, idx, opts, stages = state.problem, state.idx, state.options, state.stages
    candidates = state.candidates
    incumbent = min(candidates, key=lambda c: c.key).assignment if candidates else None
    relax_run = run_relaxation if problem.objective == "latency" else run_load_relaxation
    relaxed = relax_run(problem, tick, [idx.dev_pos[incumbent[n]] for n in idx.names]
                        if incumbent else None, max(0.05, stages.relaxation_s), opts.seed,
                        opts.workers, deadline=stages.relaxation_end)
    for dev in relaxed.solutions:
        add_if_acceptable(problem, idx, dev, candidates, state.rejected, "relaxation", 1)
    return relaxed


def repair(state: SolveState) -> None:
    """Repair stage: make sure there is an acceptable candidate, then rank the candidates.

    Takes the state after the search and the relaxation. When no candidate is acceptable,
    the rejected plans (and the baselines) are handed to ``candidates.repaired`` and its
    plan becomes the only candidate. Returns nothing: ``state.candidates`` ends sorted,
    best first. It exists because refinement needs a feasible start, and a memory-tight
    problem can leave every model's solution a little over a device's memory.

    Raises:
        InfeasibleError: nothing acceptable was found or repaired, naming the attempts.
    """
    problem, baselines, rejected = state.problem, state.baselines, state.rejected
    if not state.candidates:
        rejected += [(name, r.assignment, seen) for name, r in baselines.items()
                     if (seen := evaluation_of(problem, r)) is not None]
        fixed = repaired(problem, state.idx, rejected, state.stages, state.options.seed)
        if fixed is None:
            raise explain_no_plan(problem, baselines,
                                  min((ev.latency_s for _, _, ev in rejected), default=None),
                                  attempts=[(source, ev) for source, _, ev in rejected])
        state.candidates.append(fixed)
    state.candidates.sort(key=lambda c: c.key)


def bound(state: SolveState, coarsened: Coarsened, searched: Searched,
          relaxed: ModelResult | None) -> Bound:
    """Bound stage (the second half): the best proven lower bound on the objective.

    Takes the state, the tick and coarsening (``coarsened``), the search's runs and the
    relaxation's run. Returns the best of the closed-form and LP bounds
    (``bounds.cheap.lower_bound``), the relaxation's bound and, when the latency schedule
    model was solved uncoarsened without call overheads, that model's bound less the
    rounding of its durations; with the tick rounding that can separate a proven bound
    from the evaluator's objective. It exists to report the gap and to tell refinement
    when it cannot improve any more.
    """
    problem = state.problem
    tick = coarsened.tick
    value = lower_bound(problem)
    # Tick rounding along a path: at most one tick per node and edge.
    path_ticks = tick * (len(state.idx.names) + len(problem.edges))
    rounding_s = 0.0
    if relaxed is not None and relaxed.bound_s is not None:
        value = max(value, relaxed.bound_s)  # floored durations: valid as it is
        rounding_s = path_ticks
        if problem.objective == "cost":  # ticks (and price weights) to price per 1k
            top = max(d.price_per_hour for d in problem.cluster.devices)
            rounding_s = path_ticks * top / 3600.0 * 1000.0 + value / PRICE_SCALE
    for result in searched.results:
        if coarsened.coarse is None and result.bound_s is not None and result.bound_is_relaxation:
            # Durations were rounded to nearest: remove the worst-case rounding along a path.
            value = max(value, result.bound_s - 0.5 * path_ticks)
            rounding_s = path_ticks
    return Bound(value, rounding_s)


def refine(state: SolveState, proven: Bound) -> Chosen:
    """Refine stage: improve the best few candidates locally and choose the plan.

    Takes the state (candidates ranked best first) and the bound; returns the best refined
    plan, or the best single-device plan instead when ``options.min_gain`` is set and the
    several-device plan does not beat it by that fraction. It exists because CP-SAT solved
    a coarse or approximate model: moving single nodes under the evaluator still gains.
    """
    problem, opts, stages = state.problem, state.options, state.stages
    chosen = refine_best(problem, state.candidates, max(0.05, stages.refine_s), opts.seed,
                         proven.value + proven.rounding_s, stages.end)
    result = Chosen(chosen.value, chosen.assignment, chosen.evaluation, chosen.source)
    if opts.min_gain > 0:
        single = single_within(problem, state.baselines, result.value, opts.min_gain)
        if single is not None and len(set(result.assignment.values())) > 1:
            result = Chosen(*single)
    return result


def report(state: SolveState, coarsened: Coarsened, searched: Searched,
           relaxed: ModelResult | None, proven: Bound, chosen: Chosen) -> SolveReport:
    """Report stage: stop the clock, name the stages it cut, and rate the chosen plan.

    Takes every stage's product; returns the ``SolveReport``. The status is
    ``SINGLE_DEVICE`` or ``HINT`` when the plan came from there, else ``OPTIMAL`` when the
    bound (clamped to the objective) meets the objective up to the tick rounding, else
    ``FEASIBLE``. It exists so that the status, gap and clock flags are decided in one
    place from what the stages did.
    """
    opts, stages = state.options, state.stages
    solve_time = time.perf_counter() - state.started
    stopped = tuple(stage for stage, cut in (
        ("search", any(r.clock_stopped for r in searched.results)),
        ("relaxation", relaxed is not None and relaxed.clock_stopped),
        ("refinement", time.perf_counter() >= stages.end),
    ) if cut)
    if stopped:
        log.info("the clock, not a deterministic budget, ended the %s stage(s): a rerun on a "
                 "less loaded machine may find another plan", ", ".join(stopped))
    value = chosen.value
    status = _status(chosen.source, searched.cp_status, coarsened.coarse is None)
    bound_value = min(proven.value, value)
    gap = (value - bound_value) / value if value > 0 else 0.0
    if status not in ("HINT", "SINGLE_DEVICE"):
        # Optimal when the bound meets the objective up to tick rounding.
        rounding = proven.rounding_s / value if value else 0.0
        status = "OPTIMAL" if gap <= rounding + 1e-6 else "FEASIBLE"
    coarse = coarsened.coarse
    return SolveReport(
        assignment=chosen.assignment,
        evaluation=chosen.evaluation,
        status=status,
        objective=value,
        bound=bound_value,
        gap=gap,
        solve_time_s=solve_time,
        seed=opts.seed,
        workers=opts.workers,
        time_limit_s=opts.time_limit_s,
        baselines=state.baselines,
        groups=dict(coarse.groups) if coarse is not None else {},
        clock_stopped=bool(stopped),
        clock_stopped_stages=stopped,
    )


def _status(source: str, cp_status: str, uncoarsened: bool) -> str:
    """The status before the bound is compared: where the plan came from, or what CP-SAT
    proved (an optimum of a coarse model is not one of the problem)."""
    if source == "single":
        return "SINGLE_DEVICE"
    if source == "hint":
        return "HINT"
    if cp_status == "OPTIMAL" and uncoarsened:
        return "OPTIMAL"
    return "FEASIBLE"


def single_within(problem: Problem, baselines: dict[str, BaselineResult], value: float,
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


def model_kinds(problem: Problem, idx: ProblemIndex) -> list[str]:
    """CP-SAT models to run, in order (they share the time limit)."""
    if problem.objective == "throughput":
        return ["throughput"]
    if problem.objective == "latency" and len(set(idx.group)) <= SERIAL_PROCESSORS:
        return ["serial", "schedule"]
    return ["schedule"]


def run_model(problem: Problem, kind: str, tick: float, memory: str, hint: list[int] | None,
              time_limit_s: float, seed: int, workers: int,
              progress: Callable[[float, float], None] | None, keep: int,
              deadline: float) -> ModelResult:
    """Build and run one CP-SAT model (``kind``: throughput, serial or schedule) with
    ``memory`` accounting, hinted with ``hint``; the result says whether its bound also
    bounds the evaluator (``bound_is_relaxation``)."""
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
