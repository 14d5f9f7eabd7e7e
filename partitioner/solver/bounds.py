"""Cheap valid lower bounds on the evaluator's objective (used when CP-SAT saw a coarse model).

Every bound relaxes the evaluator: each node takes its cheapest allowed device, transfers are
free, and at least one call overhead (the smallest) is paid.

* latency: the larger of total min work / number of processors + min overhead, and a
  device-aware critical path: ``L[n][d] = cost(n, d) + max over producers p of
  min over d' (L[p][d'] + (transfer(d', d) + overhead(d) if d' != d))`` (sources start with
  their device's overhead). For the real assignment, ``L[n][A(n)]`` never exceeds the
  finish time of ``n`` (induction over producers), so ``max over sinks of min_d L`` is a
  bound; on chains it is the exact optimum up to call boundaries. And a serial work bound
  where calls cannot overlap: every device on one processor, so the cheapest work within the
  set of devices used plus one call overhead per device used, minimised over device sets.
  (With two processors ``split_into_partitions`` cuts so that branches on both overlap, so no
  serial bound holds there.)
* throughput: max(total min work / number of processors, largest single min cost) + min overhead
  / processors.
* latency and throughput: a load-balancing LP. Nodes may be split fractionally between their
  allowed devices; every processor's work is at most T and every device's weights fit in its
  memory; the real busiest processor also pays at least one call overhead, so ``T* + min
  overhead`` bounds both the makespan and the stage time. Unlike work / processors, it sees
  that a fast device cannot shed its work onto a slow one for free, nor hold weights it has
  no room for.
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
    balanced = _load_balance(problem)
    if problem.objective == "throughput":
        return max(max(work / processors, max(mins)) + oh / processors, balanced)
    return max(_critical_path(problem), work / processors + oh, _serial(problem, mins), balanced)


#: Above this many (node, device) pairs the LP is skipped (it would cost seconds).
LP_PAIR_LIMIT = 60_000


def _load_balance(problem: Problem) -> float:
    """The load-balancing LP bound (see the module docstring); 0 when skipped or unsolved."""
    from ortools.linear_solver import pywraplp

    idx = index_of(problem)
    if sum(len(a) for a in idx.allowed) > LP_PAIR_LIMIT or any(not a for a in idx.allowed):
        return 0.0
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return 0.0
    inf = solver.infinity()
    t = solver.NumVar(0.0, inf, "T")
    load = {g: solver.Constraint(-inf, 0.0) for g in set(idx.group)}
    for c in load.values():
        c.SetCoefficient(t, -1.0)
    # Microseconds and MiB keep coefficients near 1, where GLOP's absolute tolerances are small.
    memory = [solver.Constraint(-inf, d.memory_bytes / 2**20) for d in problem.cluster.devices]
    for i in range(len(idx.names)):
        one = solver.Constraint(1.0, 1.0)
        for k in idx.allowed[i]:
            x = solver.NumVar(0.0, 1.0, "")
            one.SetCoefficient(x, 1.0)
            load[idx.group[k]].SetCoefficient(x, (idx.cost[i][k] or 0.0) * 1e6)
            if idx.weights[i]:
                memory[k].SetCoefficient(x, idx.weights[i] / 2**20)
    solver.Minimize(t)
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return 0.0
    # GLOP's tolerances may put T* a hair above the true LP optimum: shave a little.
    return max(0.0, (t.solution_value() * (1 - 1e-6) - 1e-6) / 1e6 + min(idx.overhead))


def _serial(problem: Problem, mins: list[float]) -> float:
    """Work bound when no two calls can overlap: all devices share one processor.

    Whatever set S of devices an assignment uses, each of them is called at least once and
    every node runs on one of them, one call after another; so the latency is at least
    ``sum over nodes of the cheapest cost within S + sum over S of call overheads``, and the
    bound is the minimum of that over the device sets (enumerated for up to 4 devices, else
    every node at its cheapest plus the smallest overhead).
    """
    idx = index_of(problem)
    if len(set(idx.group)) != 1:
        return 0.0
    ndev = len(idx.devices)
    if ndev > 4:
        return sum(mins) + min(idx.overhead)
    best = float("inf")
    for mask in range(1, 1 << ndev):
        used = [k for k in range(ndev) if mask >> k & 1]
        total = sum(idx.overhead[k] for k in used)
        for i in range(len(idx.names)):
            costs = [idx.cost[i][k] or 0.0 for k in used if k in idx.allowed[i]]
            if not costs:
                break
            total += min(costs)
        else:
            best = min(best, total)
    return best if best < float("inf") else sum(mins) + min(idx.overhead)


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
