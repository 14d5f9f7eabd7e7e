"""The common evaluator: one list schedule that costs every assignment (plans and baselines).

Semantics (the source of truth; the CP-SAT models approximate it):

* The assignment is cut into runner calls with
  ``partitioner.solver.partitioning.split_into_partitions``
  three times: ready nodes taken in the model's order; critical path first (``bottom_levels``,
  which lets a node feeding another device's branch run before work that can wait); and
  critical path first with exits batched (``exits_first``: one call returns the inputs of
  every branch the other device takes). Two more cuts watch the clock
  (``timed_cut.timed_partitions``, with and without exits first): a call takes only the
  nodes whose inputs have arrived when it starts. The cut with the best objective (for
  cost and throughput, an acceptable one first) is kept in ``Evaluation.partitions``; plans
  execute exactly it.
  Calls are scheduled the way the executor runs them (``partitioner.runtime.executor``): a call is
  one task whose inputs must all be there before it starts and whose outputs all appear
  when it returns.
* A partition on device ``d`` starts when ``d`` and every device sharing its processor is free
  and every partition it reads from has finished (plus ``Cluster.transfer_time`` for tensors
  coming from another device). It pays ``d.call_overhead_s`` once, then runs its nodes back to
  back; ``schedule`` gives each node's start and end inside the call. Partitions claim their
  device in execution order. Links are not modelled as contended resources for latency.
* Transfer semantics (``Cluster.transfer_occupies``, ``ProblemIndex.occupies``): a copy on a
  copy engine overlaps compute; it arrives ``transfer_time`` after its producer's call
  returns. A copy that **occupies** its endpoints (a device without a copy engine: CPU
  ``memcpy``, synchronous copies, host hand-offs) is pushed when its producer's call returns,
  once per (tensor, destination device), one after another in the order of the producer's
  consumers; it starts when every occupied endpoint's processor is free, keeps them busy
  until it arrives (the source's next call and the destination's next call wait), and its
  time counts in their ``busy_s``.
* ``latency_s`` is the makespan. ``busy_s[d]`` is node time plus overheads on ``d`` plus the
  occupying copies it takes part in. ``stage_s`` (pipelined throughput) is the maximum over
  processors of their devices' busy time and over directed links of the time spent moving
  the (deduplicated) tensors that cross it.
* ``cost_per_1k = sum_d price_per_hour/3600 * busy_s[d] * 1000``; ``energy_j = sum_d power_w *
  busy_s[d]``.
* ``peak_memory[d]`` = weights of nodes on ``d`` + the largest workspace of a node on ``d`` +
  the peak of live activations on ``d`` (a sweep over the schedule): a node's output lives
  from its start until its last local consumer ends, and at least until its partition returns
  (graph outputs until the makespan; with remote consumers until its copies have arrived); a
  copy received from another device lives from its arrival until its last consumer on ``d``
  ends.

Cost: O((nodes + edges) log nodes), five times when the assignment spans several devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from partitioner.errors import SolverError
from partitioner.solver.index import ProblemIndex, index_of
from partitioner.solver.partitioning import Partition, bottom_levels, split_into_partitions
from partitioner.solver.problem import Evaluation, Problem
from partitioner.solver.timed_cut import timed_partitions


def evaluate(problem: Problem, assignment: Mapping[str, str]) -> Evaluation:
    """Cost ``assignment`` (node name -> device id) under the common list schedule.

    Args:
        problem: The placement problem.
        assignment: Device of every node of ``problem``.

    Returns:
        The evaluation (latency, stage time, price, energy, busy time, peak memory, schedule).

    Raises:
        SolverError: A node is unassigned, a device is unknown or a node sits on a device
            that cannot run it.
    """
    idx = index_of(problem)
    dev = _device_vector(idx, assignment)
    key = tuple(dev)
    cached = idx.cache.get(key)
    if cached is not None:
        return cached
    if len(idx.cache) >= CACHE_SIZE:
        idx.cache.pop(next(iter(idx.cache)))
    if len(set(dev)) == 1:
        # One device: Kahn's order with position ties is the given (topological) order.
        result = _evaluate(problem, idx, dev,
                           [Partition(0, idx.devices[dev[0]], tuple(idx.names))] if dev else [])
    else:
        # Three orders of the ready nodes and two timed cuts give up to five cuts; the best
        # one is the plan's. Cuts often coincide, and each distinct one is scheduled once.
        levels = _bottom_levels(idx, dev, assignment)
        cuts: list[list[Partition]] = []
        for priority, exits_first in ((None, False), (levels, False), (levels, True)):
            cut = split_into_partitions(idx.names, idx.edge_names, assignment,
                                        problem.cluster.concurrent, priority=priority,
                                        exits_first=exits_first)
            if cut not in cuts:
                cuts.append(cut)
        for exits_first in (False, True):
            timed = timed_partitions(idx, dev, levels, problem.cluster.concurrent, exits_first)
            if timed not in cuts:
                cuts.append(timed)
        if problem.objective == "latency":
            # The makespan alone picks the cut; only the winner is costed in full.
            timings = [_timing(idx, dev, cut) for cut in cuts]
            j = min(range(len(cuts)), key=lambda c: timings[c].makespan)
            result = _evaluate(problem, idx, dev, cuts[j], timings[j])
        else:
            # An acceptable cut first: under cost the cheapest cut may miss the latency
            # target that a faster cut of the same assignment meets.
            tried = [_evaluate(problem, idx, dev, cut) for cut in cuts]
            result = min(tried, key=lambda ev: (not is_acceptable(problem, ev),
                                                objective_value(problem, ev), ev.latency_s))
    idx.cache[key] = result
    return result


@dataclass
class _Timing:
    """A cut's schedule: node start and end, when each node's outputs leave its call, busy
    time per device and the makespan."""

    start: list[float]
    end: list[float]
    avail: list[float]
    busy: list[float]
    makespan: float
    #: (producer, tensor, device) -> when an occupying copy arrives there.
    arrival: dict[tuple[int, str, int], float]


def _timing(idx: ProblemIndex, dev: list[int], partitions: list[Partition]) -> _Timing:
    ndev = len(idx.devices)
    start = [0.0] * len(idx.names)
    end = [0.0] * len(idx.names)
    busy = [0.0] * ndev
    free = [0.0] * (max(idx.group) + 1 if idx.group else 1)

    part_of = [0] * len(idx.names)
    for part in partitions:
        for name in part.nodes:
            part_of[idx.pos[name]] = part.index
    avail = [0.0] * len(idx.names)  # when a node's outputs leave its call
    arrival: dict[tuple[int, str, int], float] = {}
    for part in partitions:
        k = idx.dev_pos[part.device]
        g = idx.group[k]
        members = [idx.pos[n] for n in part.nodes]
        ready = 0.0
        for i in members:
            for s, nbytes, key in idx.preds[i]:
                if part_of[s] != part.index:
                    pushed = arrival.get((s, key, k))
                    ready = max(ready, pushed if pushed is not None
                                else avail[s] + idx.transfer(dev[s], k, nbytes))
        t = max(free[g], ready) + idx.overhead[k]
        busy[k] += idx.overhead[k]
        for i in members:
            c = idx.cost[i][k]
            assert c is not None
            start[i] = t
            t = end[i] = t + c
            busy[k] += c
        for i in members:
            avail[i] = t
        free[g] = t
        if idx.occupies:
            _push_copies(idx, dev, k, members, t, free, busy, arrival)
    return _Timing(start, end, avail, busy, max(end, default=0.0), arrival)


def _push_copies(idx: ProblemIndex, dev: list[int], k: int, members: list[int], t: float,
                 free: list[float], busy: list[float],
                 arrival: dict[tuple[int, str, int], float]) -> None:
    """Schedule the occupying copies of a call on device ``k`` that returned at ``t``: one
    per (tensor, destination device), one after another, each starting when its occupied
    endpoints are free and keeping them busy until it arrives (module docstring)."""
    for i in members:
        copies: dict[tuple[str, int], int] = {}
        for v, nbytes, key in idx.succs[i]:
            b = dev[v]
            if b != k and idx.occupies[k][b]:
                copies[(key, b)] = max(copies.get((key, b), 0), nbytes)
        for (key, b), nbytes in copies.items():
            occupied = idx.occupies[k][b]
            begin = max([t, *(free[idx.group[d]] for d in occupied)])
            duration = idx.transfer(k, b, nbytes)
            for d in occupied:
                busy[d] += duration
                free[idx.group[d]] = begin + duration
            arrival[(i, key, b)] = begin + duration


def _evaluate(problem: Problem, idx: ProblemIndex, dev: list[int],
              partitions: list[Partition], timing: _Timing | None = None) -> Evaluation:
    """The full evaluation of one cut (``timing``: its ``_timing``, when already known)."""
    ndev = len(idx.devices)
    timing = timing or _timing(idx, dev, partitions)
    start, end, busy, makespan = timing.start, timing.end, timing.busy, timing.makespan
    link_time: dict[tuple[int, int], float] = {}
    seen: set[tuple[int, str, int]] = set()
    for t_i, ps in enumerate(idx.preds):
        for s, nbytes, key in ps:
            a, b = dev[s], dev[t_i]
            if a != b and (s, key, b) not in seen:
                seen.add((s, key, b))
                link_time[(a, b)] = link_time.get((a, b), 0.0) + idx.transfer(a, b, nbytes)
    group_busy: dict[int, float] = {}
    for k in range(ndev):
        group_busy[idx.group[k]] = group_busy.get(idx.group[k], 0.0) + busy[k]
    stage = max([*group_busy.values(), *link_time.values(), 0.0])

    cluster = problem.cluster
    cost_per_1k = sum(d.price_per_hour / 3600.0 * busy[k] * 1000.0
                      for k, d in enumerate(cluster.devices))
    energy = sum(d.power_w * busy[k] for k, d in enumerate(cluster.devices))
    peak = _peak_memory(idx, dev, start, end, timing.avail, makespan, timing.arrival)
    return Evaluation(
        latency_s=makespan,
        stage_s=stage,
        cost_per_1k=cost_per_1k,
        energy_j=energy,
        busy_s={d: busy[k] for k, d in enumerate(idx.devices)},
        peak_memory={d: peak[k] for k, d in enumerate(idx.devices)},
        schedule={n: (idx.devices[dev[i]], start[i], end[i]) for i, n in enumerate(idx.names)},
        num_partitions=len(partitions),
        partitions=tuple(partitions),
    )


#: Evaluations remembered per problem (baselines often coincide; candidates repeat).
CACHE_SIZE = 8


def memory_violations(problem: Problem, evaluation: Evaluation) -> dict[str, tuple[int, int]]:
    """Devices whose peak memory exceeds capacity: device id -> (peak bytes, capacity)."""
    out = {}
    for d in problem.cluster.devices:
        need = evaluation.peak_memory.get(d.id, 0)
        if need > d.memory_bytes:
            out[d.id] = (need, d.memory_bytes)
    return out


def objective_value(problem: Problem, evaluation: Evaluation) -> float:
    """The quantity ``problem.objective`` minimises, read from an evaluation."""
    if problem.objective == "throughput":
        return evaluation.stage_s
    if problem.objective == "cost":
        return evaluation.cost_per_1k
    return evaluation.latency_s


def ranking(problem: Problem, evaluation: Evaluation) -> tuple[float, float]:
    """How plans rank: by objective, then by latency (ties under cost with free devices, or
    equal stages); rounded so that float noise does not decide."""
    return round(objective_value(problem, evaluation), 15), round(evaluation.latency_s, 15)


def improves(problem: Problem, evaluation: Evaluation, than: Evaluation) -> bool:
    """Whether ``evaluation`` beats ``than``: a lower objective, or an equal one (within
    rounding) and a lower latency, so that ties under cost (free devices) or throughput
    (equal stages) go to the faster plan."""
    value, other = objective_value(problem, evaluation), objective_value(problem, than)
    if value < other * (1 - 1e-9):
        return True
    return value <= other * (1 + 1e-9) and evaluation.latency_s < than.latency_s * (1 - 1e-9)


def is_acceptable(problem: Problem, evaluation: Evaluation) -> bool:
    """True when the evaluation fits in memory, meets the latency target (cost objective) and
    keeps within the partition limit."""
    if memory_violations(problem, evaluation):
        return False
    target = problem.latency_target_s
    if (problem.objective == "cost" and target is not None
            and evaluation.latency_s > target * (1 + 1e-9)):
        return False
    return (problem.max_partitions is None
            or evaluation.num_partitions <= problem.max_partitions)


def _bottom_levels(idx: ProblemIndex, dev: list[int], assignment: Mapping[str, str]
                   ) -> dict[str, float]:
    """``bottom_levels`` of the assignment, a cross-device edge costing copy plus overhead."""
    pos, dev_pos = idx.pos, idx.dev_pos
    return bottom_levels(
        idx.names, ((idx.names[s], idx.names[t], nbytes)
                    for t, ps in enumerate(idx.preds) for s, nbytes, _ in ps),
        assignment,
        node_time=lambda name: idx.cost[pos[name]][dev[pos[name]]] or 0.0,
        hop_time=lambda a, b, nbytes: (idx.transfer(dev_pos[a], dev_pos[b], nbytes)
                                       + idx.overhead[dev_pos[b]]),
    )


def _device_vector(idx: ProblemIndex, assignment: Mapping[str, str]) -> list[int]:
    missing = [n for n in idx.names if n not in assignment]
    if missing:
        raise SolverError(f"assignment leaves {len(missing)} node(s) unplaced: "
                          f"{', '.join(missing[:10])}")
    dev = []
    bad = []
    for i, name in enumerate(idx.names):
        k = idx.dev_pos.get(assignment[name])
        if k is None or idx.cost[i][k] is None:
            bad.append(f"{name}={assignment[name]}")
            k = 0
        dev.append(k)
    if bad:
        raise SolverError(f"assignment puts nodes on unknown or unsupporting devices: "
                          f"{', '.join(bad[:10])}")
    return dev


def _peak_memory(idx: ProblemIndex, dev: list[int], start: list[float], end: list[float],
                 avail: list[float], makespan: float,
                 pushed: Mapping[tuple[int, str, int], float]) -> list[int]:
    ndev = len(idx.devices)
    weights = [0] * ndev
    workspace = [0] * ndev
    events: list[list[tuple[float, int]]] = [[] for _ in range(ndev)]
    for i in range(len(idx.names)):
        k = dev[i]
        weights[k] += idx.weights[i]
        workspace[k] = max(workspace[k], idx.workspace[i][k])
        out = idx.out_bytes[i]
        local_end = end[i] if idx.succs[i] else makespan
        copies: dict[tuple[str, int], tuple[float, float, int]] = {}
        for t, nbytes, key in idx.succs[i]:
            kt = dev[t]
            if kt == k:
                local_end = max(local_end, end[t])
            else:
                arrive = pushed.get((i, key, kt), avail[i] + idx.transfer(k, kt, nbytes))
                local_end = max(local_end, arrive)
                prev = copies.get((key, kt))
                if prev is not None:  # one copy per tensor and device: its latest consumer
                    arrive, nbytes = max(arrive, prev[0]), max(nbytes, prev[2])
                last = end[t] if prev is None else max(prev[1], end[t])
                copies[(key, kt)] = (arrive, last, nbytes)
        if out > 0:
            events[k].append((start[i], out))
            events[k].append((max(local_end, end[i]), -out))
        for (_, kt), (arrive, last, nbytes) in copies.items():
            if nbytes > 0:
                events[kt].append((arrive, nbytes))
                events[kt].append((max(last, arrive), -nbytes))
    peak = []
    for k in range(ndev):
        live = best = 0
        for _, delta in sorted(events[k]):
            live += delta
            best = max(best, live)
        peak.append(weights[k] + workspace[k] + best)
    return peak
