"""Placement solver facade: ``solve(problem) -> SolveReport`` (baselines, coarsen, CP-SAT, refine).

Pipeline (each stage a function in ``pipeline``): cheap infeasibility checks (``diagnose``)
-> baselines (``baselines``) -> coarsening to a few hundred groups (``coarsen``) -> CP-SAT
model for the objective, hinted with the best baseline (``cpsat`` / ``serial`` /
``throughput``) -> every improving CP-SAT solution expanded to nodes and re-scored by the
common evaluator (``evaluate``) together with the baselines -> a relaxation that proves the
bound (its solutions are candidates too) -> the best few acceptable candidates refined
locally (``refine``; when none is acceptable, the least overflowing repaired first). The
returned assignment is therefore never worse than the best baseline under the evaluator.
The time limit is split into stages (``stages.Stages``) that end at fixed points of the
clock.

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

import time
from collections.abc import Callable

from partitioner.solver import pipeline
from partitioner.solver.pipeline import SolveOptions
from partitioner.solver.problem import Problem, SolveReport

__all__ = ["DEFAULT_GROUP_TARGET", "solve"]

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
    started = time.perf_counter()
    options = SolveOptions(time_limit_s, seed, workers, progress, group_target, min_gain)
    state = pipeline.start(problem, options, started)
    trivial = pipeline.shortcut(state)
    if trivial is not None:
        return trivial
    coarsened = pipeline.coarsen_stage(state)
    searched = pipeline.search(state, coarsened)
    relaxed = pipeline.relaxation(state, coarsened.tick)
    pipeline.repair(state)
    proven = pipeline.bound(state, coarsened, searched, relaxed)
    chosen = pipeline.refine(state, proven)
    return pipeline.report(state, coarsened, searched, relaxed, proven, chosen)
