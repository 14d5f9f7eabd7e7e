"""Candidate plans: ranking, local refinement of the best, and repair when none is acceptable.

Every plan the solver considers (the best baseline, CP-SAT solutions expanded to nodes, the
relaxation's) is scored by the common evaluator; an acceptable one becomes a ``Candidate``,
ranked by objective then latency, an unacceptable one an ``Attempt`` kept for repair and for
the diagnosis.
"""

from __future__ import annotations

from typing import NamedTuple

from partitioner.solver.evaluate import evaluate, is_acceptable, ranking
from partitioner.solver.index import ProblemIndex
from partitioner.solver.problem import Evaluation, Problem
from partitioner.solver.refine import (
    NODE_EVALUATIONS_PER_S,
    SMALL,
    consolidated,
    kick_and_refine,
    refine,
    repair,
    violation,
)
from partitioner.solver.stages import Stages


class Candidate(NamedTuple):
    """A plan that is acceptable, ranked by ``key``."""

    value: float  # the objective
    latency_s: float  # breaks ties in the objective (free devices under cost, equal stages)
    rank: int  # the source's rank: solver solutions before the baselines' hint
    tiebreak: int
    assignment: dict[str, str]
    evaluation: Evaluation
    source: str

    @property
    def key(self) -> tuple[float, float, int, int]:
        return self.value, self.latency_s, self.rank, self.tiebreak

#: A plan that is not acceptable: (source name, assignment, evaluation).
Attempt = tuple[str, dict[str, str], Evaluation]

#: Distinct candidates (CP-SAT solutions, best baseline) refined locally.
REFINE_STARTS = 3

#: Evaluations the greedy refinement of one candidate may spend at most.
GREEDY_TRIES = 200


def refine_best(problem: Problem, candidates: list[Candidate], budget_s: float,
                 seed: int, proven: float, deadline: float) -> Candidate:
    """Refine the best few distinct candidates locally, then kick the best out of its local
    optimum when the problem is small (``kick_and_refine``) and above the ``proven`` bound;
    return the best result. Nothing runs on past ``deadline``."""
    distinct: list[Candidate] = []
    for cand in candidates:
        if all(cand.assignment != other.assignment for other in distinct):
            distinct.append(cand)
        if len(distinct) == REFINE_STARTS:
            break
    best = distinct[0]
    n = len(best.assignment)
    evaluations = int(budget_s * NODE_EVALUATIONS_PER_S / n)
    spent = 0
    for j, start in enumerate(distinct):
        per_start = max(1, min(GREEDY_TRIES, evaluations // len(distinct)))
        assignment, ev, moves, tries = refine(problem, start.assignment, start.evaluation,
                                              per_start, deadline)
        spent += tries
        cand = candidate(problem, assignment, ev, start.rank,
                          "refined" if moves else start.source, start.tiebreak)
        if cand.key < best.key or j == 0:
            best = cand
    if n <= SMALL:
        # The rest of the budget kicks the best out of its optimum until it meets the
        # proven bound.
        assignment, ev, kept = kick_and_refine(problem, best.assignment, best.evaluation,
                                               evaluations - spent, seed, proven * (1 + 1e-9),
                                               deadline)
        if kept:
            best = candidate(problem, assignment, ev, best.rank, "refined", best.tiebreak)
    return best


def repaired(problem: Problem, idx: ProblemIndex, rejected: list[Attempt], stages: Stages,
              seed: int) -> Candidate | None:
    """An acceptable plan when every candidate was rejected: a consolidated plan (``refine.
    consolidated``: few devices, few partitions) when one is acceptable, else one repaired
    (``refine.repair``) from the plans nearest to acceptable, within the refinement budget;
    None when none is found."""
    tried = list(rejected)
    for k, device in enumerate(idx.devices):
        plan = consolidated(problem, k)
        ev = evaluate(problem, plan)
        if is_acceptable(problem, ev):
            return candidate(problem, plan, ev, 0, f"consolidated on {device}")
        tried.append((f"consolidated on {device}", plan, ev))
    starts = sorted(tried, key=lambda a: violation(problem, a[2]))[:REFINE_STARTS]
    evaluations = int(stages.refine_s * NODE_EVALUATIONS_PER_S / len(problem.nodes))
    for source, assignment, ev in starts:
        assignment, ev = repair(problem, assignment, ev, evaluations // len(starts), seed,
                                stages.end)
        if is_acceptable(problem, ev):
            return candidate(problem, assignment, ev, 0, f"repaired {source}")
    return None


def add_if_acceptable(problem: Problem, idx: ProblemIndex, dev: list[int],
                       candidates: list[Candidate], rejected: list[Attempt], source: str,
                       tiebreak: int) -> None:
    """Evaluate a model's device vector; keep it as a candidate when it is acceptable, else
    among the rejected plans."""
    assignment = {n: idx.devices[dev[i]] for i, n in enumerate(idx.names)}
    ev = evaluate(problem, assignment)
    if is_acceptable(problem, ev):
        candidates.append(candidate(problem, assignment, ev, 0, source, tiebreak))
    else:
        rejected.append((source, assignment, ev))


def candidate(problem: Problem, assignment: dict[str, str], ev: Evaluation, rank: int,
               source: str, tiebreak: int = 0) -> Candidate:
    return Candidate(*ranking(problem, ev), rank, tiebreak, assignment, ev, source)
