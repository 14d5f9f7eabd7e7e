"""Cheap valid lower bounds on the evaluator's objective (used when CP-SAT saw a coarse model).

Every bound relaxes the evaluator: each node takes its cheapest allowed device, transfers are
free, and at least one call overhead (the smallest) is paid.

* latency: max(longest path of min costs, total min work / number of processors) + min overhead.
* throughput: max(total min work / number of processors, largest single min cost) + min overhead
  / processors.
* cost: sum over nodes of the cheapest price-weighted time.
"""

from __future__ import annotations

from partitioner.problem import Problem
from partitioner.solver.index import index_of


def lower_bound(problem: Problem) -> float:
    """A proven lower bound on ``objective_value`` of any feasible assignment."""
    idx = index_of(problem)
    n = len(idx.names)
    if n == 0:
        return 0.0
    mins = [min((idx.cost[i][k] or 0.0) for k in idx.allowed[i]) if idx.allowed[i] else 0.0
            for i in range(n)]
    processors = len(set(idx.group))
    oh = min(idx.overhead) if idx.overhead else 0.0
    work = sum(mins)
    if problem.objective == "cost":
        price = [d.price_per_hour / 3600.0 * 1000.0 for d in problem.cluster.devices]
        return sum(min((price[k] * (idx.cost[i][k] or 0.0) for k in idx.allowed[i]), default=0.0)
                   for i in range(n))
    if problem.objective == "throughput":
        return max(work / processors, max(mins)) + oh / processors
    longest = [0.0] * n
    for i in range(n):
        head = max((longest[s] for s, _, _ in idx.preds[i]), default=0.0)
        longest[i] = head + mins[i]
    return max(max(longest), work / processors) + oh
