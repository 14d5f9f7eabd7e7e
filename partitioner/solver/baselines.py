"""Baseline placements that today's runtimes would pick, all costed by the common evaluator.

* ``single:<device>``: everything on one device (only where it can run every node).
* ``best_single``: the fastest feasible ``single:<device>`` under the problem's objective.
* ``priority_greedy``: each node to the first device in cluster order that may run it, the
  fallback device last (ONNX Runtime execution-provider priority / OpenVINO HETERO).
* ``heft``: HEFT list scheduling (upward rank with mean costs, earliest finish time per node,
  respecting support and weight memory).
* ``memory_greedy``: fill devices in cluster order along the topological order until their
  weight memory (less a reserve for workspace and activations) is full, moving on for good
  (Accelerate ``infer_auto_device_map`` / ``device_map="auto"``).
* ``contiguous_split``: pipeline stages along the topological order, each device one
  contiguous run of nodes, chosen by a dynamic program (the contiguous partitioning of
  PipeDream and GPipe, and of the device-placement benchmarks' reference solvers).

A baseline that is not feasible (unsupported nodes, memory, latency target) is reported with
``evaluation=None`` and a note saying why.
"""

from __future__ import annotations

import itertools

import numpy as np

from partitioner.errors import SolverError
from partitioner.solver.evaluate import (
    evaluate,
    is_acceptable,
    memory_violations,
    ranking,
)
from partitioner.solver.index import ProblemIndex, index_of
from partitioner.solver.problem import BaselineResult, Evaluation, Problem


def run_baselines(problem: Problem) -> dict[str, BaselineResult]:
    """Run every baseline on ``problem``.

    Returns:
        Baseline name -> result; ``single:<device>`` for every device, then ``best_single``,
        ``priority_greedy``, ``heft``, ``memory_greedy`` and ``contiguous_split``.
    """
    idx = index_of(problem)
    results: dict[str, BaselineResult] = {}
    singles = []
    for k, d in enumerate(idx.devices):
        res = _single(problem, idx, k)
        results[f"single:{d}"] = res
        if res.evaluation is not None:
            singles.append(res)
    if singles:
        best = min(singles, key=lambda r: _rank(problem, r))
        results["best_single"] = BaselineResult("best_single", best.assignment, best.evaluation,
                                                f"= {best.name}")
    else:
        results["best_single"] = BaselineResult(
            "best_single", {}, None, "no single device gives a feasible plan (see single:*)")
    results["priority_greedy"] = _finish(problem, "priority_greedy", _priority(problem, idx))
    results["heft"] = _finish(problem, "heft", _heft(problem, idx))
    results["memory_greedy"] = _finish(problem, "memory_greedy", _memory_fill(problem, idx))
    results["contiguous_split"] = _contiguous_split(problem, idx)
    return results


def best_baseline(problem: Problem, results: dict[str, BaselineResult]) -> BaselineResult | None:
    """The feasible baseline with the lowest objective (ties: the lower latency, then the
    first in ``results``): under cost, free devices make many baselines cost the same."""
    feasible = [r for r in results.values() if r.evaluation is not None]
    if not feasible:
        return None
    return min(feasible, key=lambda r: _rank(problem, r))


def evaluation_of(problem: Problem, result: BaselineResult) -> Evaluation | None:
    """A baseline's evaluation, also when it is not acceptable (a result keeps only an
    acceptable one's, so a rejected placement is evaluated again: the evaluator caches it);
    None when it built no complete placement."""
    if result.evaluation is not None or not result.assignment:
        return result.evaluation
    try:
        return evaluate(problem, result.assignment)
    except SolverError:  # an incomplete or unrunnable placement has no numbers
        return None


def _rank(problem: Problem, result: BaselineResult) -> tuple[float, float]:
    assert result.evaluation is not None
    return ranking(problem, result.evaluation)


def _finish(problem: Problem, name: str, built: dict[str, str] | str) -> BaselineResult:
    if isinstance(built, str):
        return BaselineResult(name, {}, None, built)
    try:
        ev = evaluate(problem, built)
    except SolverError as exc:
        return BaselineResult(name, built, None, str(exc))
    return _judge(problem, name, built, ev)


def _judge(problem: Problem, name: str, assignment: dict[str, str],
           ev: Evaluation) -> BaselineResult:
    if is_acceptable(problem, ev):
        return BaselineResult(name, assignment, ev)
    over = memory_violations(problem, ev)
    if over:
        note = "; ".join(f"needs {need} bytes on {d}, capacity {cap}"
                         for d, (need, cap) in over.items())
    elif problem.objective == "cost" and problem.latency_target_s is not None \
            and ev.latency_s > problem.latency_target_s:
        note = (f"latency {ev.latency_s * 1e3:.6g} ms misses the target "
                f"{problem.latency_target_s * 1e3:.6g} ms")
    else:
        note = f"{ev.num_partitions} partitions exceed max_partitions {problem.max_partitions}"
    return BaselineResult(name, assignment, None, note)


def _single(problem: Problem, idx: ProblemIndex, k: int) -> BaselineResult:
    name = f"single:{idx.devices[k]}"
    bad = [i for i in range(len(idx.names)) if k not in idx.allowed[i]]
    if bad:
        first = idx.names[bad[0]]
        why = problem.costs.get(first, idx.devices[k])
        reason = getattr(why, "reason", "pinned or forbidden")
        if problem.pins.get(first, idx.devices[k]) != idx.devices[k] or \
                idx.devices[k] in problem.forbidden.get(first, ()):
            reason = "pinned elsewhere or forbidden"
        return BaselineResult(name, {}, None,
                              f"cannot run {len(bad)} node(s), e.g. {first}: {reason}")
    assignment = dict.fromkeys(idx.names, idx.devices[k])
    return _finish(problem, name, assignment)


def _unplaceable(idx: ProblemIndex) -> str | None:
    bad = [idx.names[i] for i in range(len(idx.names)) if not idx.allowed[i]]
    if bad:
        return f"no device may run {len(bad)} node(s), e.g. {', '.join(bad[:5])}"
    return None


def _priority(problem: Problem, idx: ProblemIndex) -> dict[str, str] | str:
    why = _unplaceable(idx)
    if why:
        return why
    order = list(range(len(idx.devices)))
    fb = problem.cluster.fallback_device
    if fb in idx.dev_pos:
        order.remove(idx.dev_pos[fb])
        order.append(idx.dev_pos[fb])
    rank = {k: r for r, k in enumerate(order)}
    return {n: idx.devices[min(idx.allowed[i], key=rank.__getitem__)]
            for i, n in enumerate(idx.names)}


def _heft(problem: Problem, idx: ProblemIndex) -> dict[str, str] | str:
    why = _unplaceable(idx)
    if why:
        return why
    n = len(idx.names)
    ndev = len(idx.devices)
    mean_bw = _mean_link(idx)
    mean_cost = [sum(idx.cost[i][k] or 0.0 for k in idx.allowed[i]) / len(idx.allowed[i])
                 for i in range(n)]
    rank = [0.0] * n
    for i in range(n - 1, -1, -1):
        tail = 0.0
        for t, nbytes, _ in idx.succs[i]:
            tail = max(tail, rank[t] + (nbytes / mean_bw if ndev > 1 else 0.0))
        rank[i] = mean_cost[i] + tail
    order = sorted(range(n), key=lambda i: (-rank[i], i))
    capacity = [d.memory_bytes for d in problem.cluster.devices]
    used = [0] * ndev
    free = [0.0] * (max(idx.group) + 1)
    last = [-1] * ndev
    end = [0.0] * n
    dev = [-1] * n
    for i in order:
        best: tuple[float, int] | None = None
        candidates = [k for k in idx.allowed[i] if used[k] + idx.weights[i] <= capacity[k]]
        for k in candidates or idx.allowed[i]:
            ready = 0.0
            joins = False
            for s, nbytes, _ in idx.preds[i]:
                ready = max(ready, end[s] + idx.transfer(dev[s], k, nbytes))
                joins = joins or last[k] == s
            cost = idx.cost[i][k] or 0.0
            new_call = not joins
            eft = max(free[idx.group[k]], ready) + cost + (idx.overhead[k] if new_call else 0.0)
            if best is None or eft < best[0] - 1e-15:
                best = (eft, k)
        assert best is not None
        eft, k = best
        dev[i], end[i], last[k] = k, eft, i
        free[idx.group[k]] = eft
        used[k] += idx.weights[i]
    return {name: idx.devices[dev[i]] for i, name in enumerate(idx.names)}


def _memory_fill(problem: Problem, idx: ProblemIndex) -> dict[str, str] | str:
    """Accelerate's ``infer_auto_device_map`` at node level (``device_map="auto"``).

    Accelerate walks the modules in order and puts each on the current device while the
    device's parameter bytes stay within its memory less a reserve (the largest layer, on
    the main devices); the first module that does not fit moves the walk on to the next
    device for good. Activations are not counted per module. Here the modules are the nodes
    in topological order, the devices come in cluster order, only weights fill a device, and
    each device reserves what the evaluator counts besides weights when the whole model runs
    there (``_reserve``), so a device that can hold the model alone keeps all of it.

    A node the current device may not run (unsupported, forbidden, pinned) goes to the first
    device after it that may and has room, else to any that has room, else to the fallback
    device (or its last allowed one); the walk stays on the current device. The last device
    takes whatever is left, room or not: the evaluator then reports the overflow.
    """
    why = _unplaceable(idx)
    if why:
        return why
    ndev = len(idx.devices)
    # May be negative: a device that cannot even hold the reserve takes no node.
    room = [d.memory_bytes - _reserve(idx, k) for k, d in enumerate(problem.cluster.devices)]
    used = [0] * ndev
    fb = idx.dev_pos.get(problem.cluster.fallback_device or "")
    current = 0
    out = {}
    for i, name in enumerate(idx.names):
        w = idx.weights[i]
        allowed = idx.allowed[i]
        while current < ndev - 1 and current in allowed and used[current] + w > room[current]:
            current += 1
        if current in allowed and (used[current] + w <= room[current] or current == ndev - 1):
            k = current
        else:
            later = [c for c in allowed if c > current] + [c for c in allowed if c < current]
            k = next((c for c in later if used[c] + w <= room[c]),
                     fb if fb in allowed else allowed[-1])
        used[k] += w
        out[name] = idx.devices[k]
    return out


#: Up to this many devices the contiguous split tries every order of them; beyond, the
#: devices by total work, fastest first and slowest first.
CONTIGUOUS_ALL_ORDERS = 3
#: Nodes beyond which the contiguous split (O(devices x nodes^2) per order) is not run.
CONTIGUOUS_NODE_LIMIT = 1_000


def _contiguous_split(problem: Problem, idx: ProblemIndex) -> BaselineResult:
    """The best contiguous split over the device orders tried, as the evaluator costs it.

    For one order of the devices, a dynamic program cuts the topological order into one run
    per device (a run may be empty), in that order. A stage costs its nodes' time, one call
    overhead and, where the copy occupies the device (no copy engine), the bytes that enter
    it from earlier runs and leave it for later ones over the links to its neighbours in the
    order. Throughput minimises the busiest stage; latency and cost the sum of the stages. A
    run's weights must fit its device. Each order's split is then evaluated, and the best
    acceptable one kept.
    """
    name = "contiguous_split"
    why = _unplaceable(idx)
    n, ndev = len(idx.names), len(idx.devices)
    if why is None and ndev < 2:
        why = "one device: nothing to split"
    if why is None and n > CONTIGUOUS_NODE_LIMIT:
        why = f"not run beyond {CONTIGUOUS_NODE_LIMIT} nodes"
    if why is not None:
        return BaselineResult(name, {}, None, why)
    tables = _ContiguousTables(problem, idx)
    if ndev <= CONTIGUOUS_ALL_ORDERS:
        orders: list[tuple[int, ...]] = list(itertools.permutations(range(ndev)))
    else:
        by_work = tuple(sorted(range(ndev), key=lambda k: tables.work[k, n]))
        orders = [by_work, by_work[::-1]]
    results = [_finish(problem, name, split) for order in orders
               if (split := tables.split(order)) is not None]
    feasible = [r for r in results if r.evaluation is not None]
    if feasible:
        return min(feasible, key=lambda r: _rank(problem, r))
    return results[0] if results else BaselineResult(
        name, {}, None, "no contiguous split fits every device's memory and support")


class _ContiguousTables:
    """Prefix sums for the contiguous split: work, unsupported nodes and weights per device
    over the first ``i`` nodes, and the bytes of edges between any two cut points."""

    def __init__(self, problem: Problem, idx: ProblemIndex) -> None:
        n, ndev = len(idx.names), len(idx.devices)
        self.problem, self.idx, self.n = problem, idx, n
        work = np.zeros((ndev, n + 1))
        barred = np.zeros((ndev, n + 1), dtype=np.int64)
        for i in range(n):
            for k in range(ndev):
                allowed = k in idx.allowed[i]
                work[k, i + 1] = work[k, i] + ((idx.cost[i][k] or 0.0) if allowed else 0.0)
                barred[k, i + 1] = barred[k, i] + (not allowed)
        self.work, self.barred = work, barred
        self.weights = np.concatenate([[0], np.cumsum(idx.weights, dtype=np.float64)])
        edges = np.zeros((n, n))
        for v, preds in enumerate(idx.preds):
            for u, nbytes, _ in preds:
                edges[u, v] += nbytes
        #: crossing[a, c]: bytes of the edges u -> v with u < a and v < c.
        self.crossing = np.zeros((n + 1, n + 1))
        self.crossing[1:, 1:] = edges.cumsum(axis=0).cumsum(axis=1)

    def _copy_s(self, src: int, dst: int, on: int, nbytes: np.ndarray) -> np.ndarray | float:
        """Seconds device ``on`` spends on copies of ``nbytes`` from ``src`` to ``dst``."""
        if on not in self.idx.occupied(src, dst):
            return 0.0
        bandwidth = self.idx.link_bandwidth[src][dst]
        return (nbytes > 0) * self.idx.link_latency[src][dst] + nbytes / bandwidth

    def split(self, order: tuple[int, ...]) -> dict[str, str] | None:
        """The dynamic program for one device order; None when no split is feasible."""
        n, idx, crossing = self.n, self.idx, self.crossing
        throughput = self.problem.objective == "throughput"
        best = np.full(n + 1, np.inf)
        best[0] = 0.0
        cuts: list[np.ndarray] = []
        for m, k in enumerate(order):
            before = order[m - 1] if m else None
            after = order[m + 1] if m + 1 < len(order) else None
            memory = self.problem.cluster.devices[k].memory_bytes
            nxt, cut = best.copy(), np.arange(n + 1)  # an empty run keeps the prefix
            for j in range(1, n + 1):
                i = np.arange(j)
                stage = self.work[k, j] - self.work[k, i] + idx.overhead[k]
                if before is not None:
                    entering = crossing[i, j] - crossing[i, i]
                    stage = stage + self._copy_s(before, k, k, entering)
                if after is not None:
                    leaving = (crossing[j, n] - crossing[j, j]) - (crossing[i, n] - crossing[i, j])
                    stage = stage + self._copy_s(k, after, k, leaving)
                value = np.maximum(best[i], stage) if throughput else best[i] + stage
                bad = (self.barred[k, j] - self.barred[k, i] > 0) | (
                    self.weights[j] - self.weights[i] > memory)
                value = np.where(bad, np.inf, value)
                at = int(np.argmin(value))
                if value[at] < nxt[j]:
                    nxt[j], cut[j] = value[at], at
            best = nxt
            cuts.append(cut)
        if not np.isfinite(best[n]):
            return None
        assignment: dict[str, str] = {}
        end = n
        for m in range(len(order) - 1, -1, -1):
            begin = int(cuts[m][end])
            assignment.update({idx.names[t]: idx.devices[order[m]] for t in range(begin, end)})
            end = begin
        return assignment


def _reserve(idx: ProblemIndex, k: int) -> int:
    """Bytes device ``k`` keeps free of weights in ``_memory_fill``: the largest workspace of
    a node it may run plus the peak of live activations when the whole model runs on one
    device in topological order (the evaluator's ``peak_memory`` less weights), the way
    Accelerate keeps room for its largest layer."""
    workspace = max((idx.workspace[i][k] for i in range(len(idx.names)) if k in idx.allowed[i]),
                    default=0)
    return workspace + _activation_peak(idx)


def _activation_peak(idx: ProblemIndex) -> int:
    """Peak live activations of a one-device run in topological order: a node's output
    lives from its start until its last consumer ends (graph outputs until the end)."""
    n = len(idx.names)
    delta = [0] * (n + 1)
    for i in range(n):
        last = max((t for t, _, _ in idx.succs[i]), default=n - 1)
        delta[i] += idx.out_bytes[i]
        delta[last + 1] -= idx.out_bytes[i]
    live = peak = 0
    for i in range(n):
        live += delta[i]
        peak = max(peak, live)
    return peak


def _mean_link(idx: ProblemIndex) -> float:
    bws = [idx.link_bandwidth[a][b] for a in range(len(idx.devices))
           for b in range(len(idx.devices)) if a != b]
    return sum(bws) / len(bws) if bws else 1.0
