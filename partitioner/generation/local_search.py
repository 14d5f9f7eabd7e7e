"""Local search on the evaluator: polish a feasible placement by single-group moves and swaps.

CP-SAT proves the bound; on large fleets with many interchangeable devices its search may stop
before the optimum, so every start (each baseline, the solver's solutions) is improved here by
first-improvement descent: move one group's prefill, decode or (co-located) both to another
device, keeping memory and SLOs, until no move helps (at most ``MAX_MOVES`` moves).
"""

from __future__ import annotations

from collections.abc import Iterator

from partitioner.generation.problem import GenerationEval, GenerationProblem, evaluate

#: Improving moves taken at most.
MAX_MOVES = 40


def _better(a: GenerationEval, b: GenerationEval, objective: str) -> bool:
    return a.feasible and a.key(objective) < b.key(objective) * (1 - 1e-9)


def _moves(p: tuple[int, ...], q: tuple[int, ...], devices: int,
           colocated: bool) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    G = len(p)
    for g in range(G):
        for d in range(devices):
            if colocated:
                if d != p[g]:
                    moved = p[:g] + (d,) + p[g + 1:]
                    yield moved, moved
                continue
            if d != p[g]:
                yield p[:g] + (d,) + p[g + 1:], q
            if d != q[g]:
                yield p, q[:g] + (d,) + q[g + 1:]


def improve(problem: GenerationProblem, start: GenerationEval, objective: str,
            colocated: bool = False) -> GenerationEval:
    """The best placement first-improvement descent reaches from feasible ``start``
    (``start`` itself when it is infeasible or no move helps)."""
    if not start.feasible:
        return start
    current = start
    for _ in range(MAX_MOVES):
        for p, q in _moves(current.prefill, current.decode, len(problem.devices), colocated):
            trial = evaluate(problem, p, q)
            if _better(trial, current, objective):
                current = trial
                break
        else:
            return current
    return current
