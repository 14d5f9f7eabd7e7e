"""Cheap valid lower bounds on the evaluator's objective (used when CP-SAT saw a coarse model).

Every bound relaxes the evaluator: each node takes its cheapest allowed device, transfers are
free, and at least one call overhead (the smallest) is paid.

* latency: the larger of total min work / number of processors + min overhead, and a
  device-aware critical path: ``L[n][d] = cost(n, d) + max over producers p of
  min over d' (L[p][d'] + (transfer(d', d) + overhead(d) if d' != d))`` (sources start with
  their device's overhead). For the real assignment, ``L[n][A(n)]`` never exceeds the
  finish time of ``n`` (induction over producers), so ``max over sinks of min_d L`` is a
  bound; on chains it is the exact optimum up to call boundaries. And a serial work bound
  where calls cannot overlap: on one processor, or on two devices, where
  ``split_into_partitions`` only switches device when the current one has no ready node, so
  every call but the second reads from the call before it; the second may overlap the
  first only with nodes that do not descend from node 0, whose largest costs are subtracted.
  The bound is then the smaller of each single device's total and, for mixed placements,
  every node's cheapest cost plus one overhead per device (plus one link latency when no
  overlap is possible).
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
    return max(_critical_path(problem), work / processors + oh, _serial(problem, mins))


def _serial(problem: Problem, mins: list[float]) -> float:
    """Work bound for clusters whose calls cannot overlap (see the module docstring)."""
    idx = index_of(problem)
    processors = len(set(idx.group))
    if processors > 2 or (processors == 2 and len(idx.devices) != 2):
        return 0.0
    oh = min(idx.overhead)
    total = sum(mins) + oh
    if processors == 1:
        return total
    # Two devices. All on one device: that device's total. Mixed: every node at its cheapest,
    # one call on each device, and (single-source graphs) one transfer between them, less
    # what the second call may overlap with the first: only nodes that do not descend from
    # node 0 (which the first call holds).
    n = len(idx.names)
    options = [sum(idx.cost[i][k] or 0.0 for i in range(n)) + idx.overhead[k]
               for k in (0, 1) if all(k in idx.allowed[i] for i in range(n))]
    reach = [False] * n
    reach[0] = True
    for i in range(1, n):
        reach[i] = any(reach[s] for s, _, _ in idx.preds[i])
    loose = [i for i in range(n) if not reach[i]]
    mixed = sum(mins) + idx.overhead[0] + idx.overhead[1]
    if loose:
        mixed -= sum(max(idx.cost[i][k] or 0.0 for k in idx.allowed[i]) for i in loose
                     if idx.allowed[i]) + max(idx.overhead)
    else:
        mixed += min(idx.link_latency[0][1], idx.link_latency[1][0])
    options.append(mixed)
    return max(0.0, min(options))


def _critical_path(problem: Problem) -> float:
    idx = index_of(problem)
    ndev = len(idx.devices)
    inf = float("inf")
    finish: list[list[float]] = []
    result = 0.0
    for i in range(len(idx.names)):
        row = [inf] * ndev
        for k in idx.allowed[i]:
            if not idx.preds[i]:
                head = idx.overhead[k]
            else:
                head = 0.0
                for s, nbytes, _ in idx.preds[i]:
                    best = inf
                    for j in idx.allowed[s]:
                        via = finish[s][j]
                        if j != k:
                            via += idx.transfer(j, k, nbytes) + idx.overhead[k]
                        best = min(best, via)
                    head = max(head, best)
            row[k] = head + (idx.cost[i][k] or 0.0)
        finish.append(row)
        if not idx.succs[i]:
            result = max(result, min(row))
    return result if result < inf else 0.0
