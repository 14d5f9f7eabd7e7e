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
  allowed devices; every processor's work plus one call overhead per device it uses is at
  most T and every device's weights, plus the largest workspace and the largest activations
  live while one of its nodes runs (``index.live_while_running``), fit in its memory. Unlike
  work / processors, it sees that a fast device cannot shed its work onto a slow one for
  free, nor hold weights it has no room for. For latency (up to ``PRECEDENCE_PAIR_LIMIT``
  pairs) the LP also schedules: precedence rows where a fractional device change costs the
  cheapest copy plus overhead (``_load_balance``), which sees that a memory-forced split of
  a chain runs in series.
* cost: sum over nodes of the cheapest price-weighted time.
"""

from __future__ import annotations

from typing import Any

from partitioner.solver.index import ProblemIndex, edge_pairs, index_of
from partitioner.solver.problem import Problem


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
        return max(max(work / processors, max(mins)) + oh / processors, _load_balance(problem))
    return max(_critical_path(problem), work / processors + oh, _serial(problem, mins),
               _load_balance(problem, precedence=True))


#: Above this many (node, device) pairs the LPs are skipped (they would cost seconds).
LP_PAIR_LIMIT = 60_000
#: The latency LP's precedence rows grow its solve time superlinearly (2,000 pairs 1.1 s,
#: 4,000 2.8 s, 10,000 16.5 s here): above this many pairs only the load rows are kept.
PRECEDENCE_PAIR_LIMIT = 4_000


def _load_balance(problem: Problem, precedence: bool = False) -> float:
    """An LP relaxation bound (see the module docstring); 0 when skipped or unsolved.

    Always: nodes split fractionally between their allowed devices, every processor's work
    plus one call overhead per device it uses (``used[k] >= x[i,k]``; above
    ``PRECEDENCE_PAIR_LIMIT`` pairs the smallest overhead once) is at most T, every device's
    weights plus its largest workspace and live activations fit in its memory. With
    ``precedence`` (latency) also a schedule:
    ``start[v] >= start[u] + dur[u] + cut[u,v] * (cheapest transfer + overhead)`` on every
    edge, where ``cut[u,v] >= x[u,k] - x[v,k]``; every node starts after its device's call
    overhead and ends by T. For the real assignment and the evaluator's schedule every row
    holds (a consumer on another device waits for the copy and its own call's overhead), so
    the optimum bounds the makespan.
    """
    from ortools.linear_solver import pywraplp

    idx = index_of(problem)
    pairs = sum(len(a) for a in idx.allowed)
    if pairs > LP_PAIR_LIMIT or any(not a for a in idx.allowed):
        return 0.0
    # Small LPs get the precise rows; on large ones the ``used`` rows alone made GLOP take
    # 85 s (20k nodes), so those charge the smallest overhead once instead.
    small = pairs <= PRECEDENCE_PAIR_LIMIT
    precedence = precedence and small
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return 0.0
    inf = solver.infinity()
    # Microseconds and MiB keep coefficients near 1, where GLOP's absolute tolerances are small.
    us = 1e6
    t = solver.NumVar(0.0, inf, "T")
    load = {g: solver.Constraint(-inf, 0.0) for g in set(idx.group)}
    for c in load.values():
        c.SetCoefficient(t, -1.0)
    used = [solver.NumVar(0.0, 1.0, "") for _ in idx.devices] if small else []
    for k, y in enumerate(used):
        load[idx.group[k]].SetCoefficient(y, idx.overhead[k] * us)
    memory = [solver.Constraint(-inf, d.memory_bytes / 2**20) for d in problem.cluster.devices]
    # Besides weights, a device holds its largest workspace and the largest activations live
    # while one of its nodes runs (MiB); rows only where memory can bind at all.
    floors: dict[int, tuple[Any, Any]] = {}
    for k, d in enumerate(problem.cluster.devices):
        on_k = [i for i in range(len(idx.names)) if k in idx.allowed[i]]
        most = sum(idx.weights[i] for i in on_k) + max(
            (idx.workspace[i][k] for i in on_k), default=0) + max(
            (idx.live[i] for i in on_k), default=0)
        if most > d.memory_bytes:
            floors[k] = (solver.NumVar(0.0, inf, ""), solver.NumVar(0.0, inf, ""))
            for var in floors[k]:
                memory[k].SetCoefficient(var, 1.0)
    x: list[dict[int, Any]] = []
    for i in range(len(idx.names)):
        one = solver.Constraint(1.0, 1.0)
        row = {}
        for k in idx.allowed[i]:
            row[k] = xv = solver.NumVar(0.0, 1.0, "")
            one.SetCoefficient(xv, 1.0)
            load[idx.group[k]].SetCoefficient(xv, (idx.cost[i][k] or 0.0) * us)
            if used:
                solver.Add(used[k] >= xv)
            if idx.weights[i]:
                memory[k].SetCoefficient(xv, idx.weights[i] / 2**20)
            if k in floors and idx.cost[i][k]:
                workspace, activations = floors[k]
                solver.Add(workspace >= idx.workspace[i][k] / 2**20 * xv)
                solver.Add(activations >= idx.live[i] / 2**20 * xv)
        x.append(row)
    if precedence:
        _add_schedule(solver, idx, x, t, us)
    solver.Minimize(t)
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return 0.0
    # GLOP's tolerances may put T* a hair above the true LP optimum: shave a little.
    extra = 0.0 if small else min(idx.overhead)
    return max(0.0, (t.solution_value() * (1 - 1e-6) - 1e-6) / us + extra)


def _add_schedule(solver: Any, idx: ProblemIndex, x: list[dict[int, Any]], t: Any,
                  us: float) -> None:
    """Precedence rows of the latency LP (see ``_load_balance``)."""
    inf = solver.infinity()
    start = []
    for i, row in enumerate(x):
        s = solver.NumVar(0.0, inf, "")
        start.append(s)
        solver.Add(s >= sum(idx.overhead[k] * us * xv for k, xv in row.items()))
        solver.Add(t >= s + _duration(idx, i, row, us))
    for (u, v), nbytes in edge_pairs(idx).items():
        switch = min((idx.transfer(a, b, nbytes) + idx.overhead[b]
                      for a in x[u] for b in x[v] if a != b), default=None)
        delay = 0
        if switch:
            cut = solver.NumVar(0.0, 1.0, "")
            for k, xu in x[u].items():
                solver.Add(cut >= xu - x[v][k] if k in x[v] else cut >= xu)
            delay = switch * us * cut
        solver.Add(start[v] >= start[u] + _duration(idx, u, x[u], us) + delay)


def _duration(idx: ProblemIndex, i: int, row: dict[int, Any], us: float) -> Any:
    return sum((idx.cost[i][k] or 0.0) * us * xv for k, xv in row.items())


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
