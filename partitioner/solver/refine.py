"""Local refinement: move single nodes at device boundaries while the evaluator improves.

Nodes with a neighbour on another device are tried on that neighbour's device (on small
problems, every node on every allowed device); a move is kept when the evaluated objective
drops and the result stays acceptable (memory, target, max_partitions). Each try is one full
evaluation, so the number of tries is bounded: by ``max_tries`` alone on small problems
(so the result is reproducible) and also by a deadline on large ones.
"""

from __future__ import annotations

import time

from partitioner.problem import Evaluation, Problem
from partitioner.solver.evaluate import evaluate, is_acceptable, objective_value
from partitioner.solver.index import index_of

#: Up to this many nodes every allowed device is tried for every node, not only neighbours'.
SMALL = 300


def refine(problem: Problem, assignment: dict[str, str], evaluation: Evaluation,
           deadline: float, max_tries: int = 200) -> tuple[dict[str, str], Evaluation, int]:
    """Greedy boundary moves until ``deadline`` (``time.perf_counter()``) or no improvement.

    Returns:
        (assignment, evaluation, number of accepted moves).
    """
    idx = index_of(problem)
    best = objective_value(problem, evaluation)
    current = dict(assignment)
    accepted = tries = 0
    small = len(idx.names) <= SMALL
    improved = True
    if small:
        deadline = float("inf")  # bounded by max_tries alone: reproducible
    while improved and time.perf_counter() < deadline and tries < max_tries:
        improved = False
        for i, name in enumerate(idx.names):
            here = current[name]
            if small:
                options = {idx.devices[k] for k in idx.allowed[i]}
            else:
                options = {current[idx.names[t]] for t, _, _ in idx.succs[i]}
                options |= {current[idx.names[s]] for s, _, _ in idx.preds[i]}
            options.discard(here)
            for dev in sorted(options):
                if idx.dev_pos[dev] not in idx.allowed[i]:
                    continue
                if time.perf_counter() >= deadline or tries >= max_tries:
                    return current, evaluation, accepted
                tries += 1
                current[name] = dev
                ev = evaluate(problem, current)
                value = objective_value(problem, ev)
                if value < best * (1 - 1e-9) and is_acceptable(problem, ev):
                    best, evaluation, here = value, ev, dev
                    accepted += 1
                    improved = True
                else:
                    current[name] = here
    return current, evaluation, accepted
