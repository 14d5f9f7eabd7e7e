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

A baseline that is not feasible (unsupported nodes, memory, latency target) is reported with
``evaluation=None`` and a note saying why.
"""

from __future__ import annotations

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
        ``priority_greedy``, ``heft`` and ``memory_greedy``.
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
