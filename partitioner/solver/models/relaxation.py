"""CP-SAT relaxation of the evaluator's latency: its proven bound is a valid lower bound.

The schedule model in ``cpsat`` approximates the evaluator (it charges a call overhead per
entry node, possibly more often than there are calls), so its bound proves nothing about
plans. This model keeps only what every evaluator schedule satisfies, with integer device
choices:

* one allowed device per node; weights, the largest workspace and the largest activations
  live while a node runs fit in each device's memory;
* a node starts after its device's call overhead; a consumer starts after its producer ends,
  and on another device also after the copy and its own call's overhead
  (``start[v] >= end[u] + transfer(a, b) + overhead(b)`` when ``u`` is on ``a``, ``v`` on ``b``);
* nodes on one processor never overlap, and each device a processor uses spends at least one
  call overhead on it (a floating interval);
* the makespan covers every node's end, and every processor's work, the copies that occupy
  it (devices without a copy engine) and one overhead per call its devices must make: a
  node's outputs leave only when its call returns, so a path that leaves device ``k`` and
  comes back ends one call on ``k`` and needs another (call levels, ``call_levels``, on up to
  ``CALL_LEVEL_NODE_LIMIT`` nodes).
  Without them a node sent to another device and back looked free while the first device
  went on with a parallel branch. Each such return also costs a device alone on its
  processor one more call or the idle time of the round trip (``_return_idle``).

Durations are rounded down to ticks, so the rounded optimum never exceeds the real one and
``best_objective_bound * tick`` is a bound. On branchy graphs it is far stronger than the LP
bounds in ``bounds`` because a branch moved to another device pays its copies in and out in
full.

Where the graph has cut nodes (``segments``), the spans between them are solved first, each
for every pair of devices of the cut nodes around it, and joined by a cheapest path within
the memory of a device that binds (``segmented``); that bound is valid too and is usually
proven in a fraction of the time the whole graph needs.

Then the segments on the cheapest path are solved again with call slots
(``RelaxationModel._call_slots``): a device's first calls are told apart, so a node's
outputs leave when its call ends and a call opens only once all its inputs are there. The
model above lets each node send its outputs at its own end and take its inputs as they
come; on inception's blocks that let a CPU feed two accelerator branches at different times
while the accelerator ran one call (cpu+l4 proved 1,386 µs against a 1,441 µs plan; with
slots 1,431 µs). The slot model is slower to prove (about 1 s a block against 0.1 s), so it
only sharpens the path that sets the bound, with the time the first solves leave, in passes
of more slots (``CALL_SLOTS``).
"""

from __future__ import annotations

import time

from ortools.sat.python import cp_model

from partitioner.solver.bounds.segmented import SpanSharpener, segmented_bound
from partitioner.solver.bounds.segments import segments
from partitioner.solver.index import index_of
from partitioner.solver.models.cpsat import AssignmentModel, ModelResult
from partitioner.solver.models.cpsat import run as cpsat_run
from partitioner.solver.problem import Problem

#: Largest problem (nodes) the relaxation is solved for; beyond it the model is too big to
#: prove anything within a share of the time limit.
RELAXATION_NODE_LIMIT = 1_000

#: Segments (``segments``) hold at least this many nodes: fewer, larger segments keep more
#: edges (a stronger bound), more, smaller ones are closed faster.
SEGMENT_MIN_NODES = 8

#: Call levels (``call_levels``) are added up to this many nodes (segments
#: and small graphs). On larger graphs their variables slow the proof more than they tighten
#: it: gpt (128 nodes) on cpu+l4 is proven optimal without them and left at a 2.0% gap with.
CALL_LEVEL_NODE_LIMIT = 64

#: Share of the relaxation's time the segments get (split evenly between their distinct
#: solves; what they leave goes to sharpening); the whole graph gets the rest.
SEGMENT_SHARE = 0.5

#: Share of the relaxation's time for sharpening the segments' bounds with call slots, on
#: top of what the segments' first solves leave. Taken from the whole graph's share: where
#: a graph has segments, the whole-graph model proved no more than they did on the zoo
#: (inception: nothing at all), while one inception block takes ~1 s to sharpen.
SHARPEN_SHARE = 0.4

#: Calls per device the sharpening models tell apart (``RelaxationModel._call_slots``), one
#: pass each along the cheapest path. Inception's blocks on cpu+npu need three (with two the
#: bound stays 3% under the plan); on smallgpu+cpu five (1,127 µs for the first block against
#: 1,086 µs with three), but five is slower to prove, 1-15 s a block against 0.3-3 s.
CALL_SLOTS = (3, 5)


class RelaxationModel(AssignmentModel):
    """Makespan of the relaxed schedule described in the module docstring."""

    deterministic_per_s = 0.07

    def __init__(self, problem: Problem, tick_s: float, *, source: int | None = None,
                 call_slots: int = 0) -> None:
        """``source``: position of a segment's cut node (``segments``), pinned, free and done
        at time 0. Its device may be mid-call then; every other device starts with no call
        open. None: the schedule starts with no call open anywhere. ``call_slots``: calls per
        device told apart (``_call_slots``); 0 for none."""
        # ``weights`` memory keeps only what the evaluator's peak surely holds (``cpsat``).
        super().__init__(problem, tick_s, memory="weights")
        idx, m = self.idx, self.model
        n = len(idx.names)
        cost = [{k: self.floor(idx.cost[i][k] or 0.0) for k in self.x[i]} for i in range(n)]
        overhead = [self.floor(o) for o in idx.overhead]
        open_device = idx.allowed[source][0] if source is not None else None
        # Each device's first call, unless it is the source's (open before time 0).
        first = [0 if k == open_device else o for k, o in enumerate(overhead)]
        delay = {(u, v): {(a, b): self.floor(idx.transfer(a, b, nbytes)) + overhead[b]
                          for a in self.x[u] for b in self.x[v] if a != b}
                 for (u, v), nbytes in self.pairs.items()}
        horizon = 1 + sum(max(c.values()) + max(overhead[k] for k in c) for c in cost)
        horizon += sum(max(d.values(), default=0) for d in delay.values())
        start = [m.new_int_var(0, horizon, f"s[{i}]") for i in range(n)]
        end = [m.new_int_var(0, horizon, f"e[{i}]") for i in range(n)]
        used = [m.new_bool_var(f"used[{k}]") for k in range(len(idx.devices))]
        per_group: dict[int, list] = {}
        for k, flag in enumerate(used):
            if first[k]:
                at = m.new_int_var(0, horizon, f"oh[{k}]")
                per_group.setdefault(idx.group[k], []).append(
                    m.new_optional_fixed_size_interval_var(at, first[k], flag, f"ohv[{k}]"))
        for i in range(n):
            for k, xv in self.x[i].items():
                m.add_implication(xv, used[k])
                m.add(start[i] >= first[k]).only_enforce_if(xv)
                per_group.setdefault(idx.group[k], []).append(
                    m.new_optional_interval_var(start[i], cost[i][k], end[i], xv, f"iv{i},{k}"))
        for ivs in per_group.values():
            m.add_no_overlap(ivs)
        # When each node's outputs leave; its end unless the call slots say later.
        leave: list[cp_model.IntVar] = end
        slots: dict[int, list[cp_model.IntVar]] = {}
        if call_slots:
            leave, slots = self._call_slots(call_slots, start, end, overhead, horizon,
                                            open_device, source)
        for (u, v), pairs in delay.items():
            m.add(start[v] >= end[u])
            for (a, b), ticks in pairs.items():
                if ticks > 0:
                    m.add(start[v] >= leave[u] + ticks).only_enforce_if(self.x[u][a],
                                                                       self.x[v][b])
        makespan = self.makespan = m.new_int_var(0, horizon, "makespan")
        for i in range(n):
            if not idx.succs[i]:
                m.add(makespan >= end[i])
        # Redundant energetic rows: a processor's work and call overheads fit before the
        # makespan (they give CP-SAT's linear relaxation the load-balancing bound from the
        # start). A device's calls are at least its call levels (``call_levels``).
        calls = call_levels(self, overhead) if n <= CALL_LEVEL_NODE_LIMIT else {}
        idle = self._return_idle(cost, overhead) if calls else {}

        def overheads(k: int) -> cp_model.LinearExprT:
            # The source's call was opened, and its overhead paid, before time 0.
            opened = 1 if k == open_device else 0
            if k not in calls:
                if k in slots and overhead[k]:
                    return overhead[k] * (sum(slots[k]) - opened)
                return first[k] * used[k]
            total = calls[k]
            if k in slots:
                total = m.new_int_var(0, n, f"total[{k}]")
                m.add(total >= calls[k])
                m.add(total >= sum(slots[k]))
            paid = overhead[k] * (total - opened)
            if not idle.get(k):
                return paid
            # ``calls[k] - 1`` returns among ``total`` calls: see ``_return_idle``.
            returns = m.new_int_var(0, n, f"returns[{k}]")
            m.add(returns >= 2 * calls[k] - 1 - total)
            return paid + idle[k] * returns

        # Copies that occupy a device without a copy engine keep its processor busy too
        # (counted as the evaluator pushes them, rounded down: ``occupying_copies``).
        copying: dict[int, list[cp_model.LinearExprT]] = {}
        for a, b, ticks, sent in self.occupying_copies():
            for k in idx.occupied(a, b):
                copying.setdefault(k, []).append(ticks * sent)
        for g in set(idx.group):
            ks = [k for k in range(len(idx.devices)) if idx.group[k] == g]
            m.add(makespan >= cp_model.LinearExpr.sum([overheads(k) for k in ks])
                  + sum(cost[i][k] * self.x[i][k] for i in range(n) for k in ks if k in self.x[i])
                  + cp_model.LinearExpr.sum([t for k in ks for t in copying.get(k, [])]))
        m.minimize(makespan)

    def _call_slots(self, count: int, start: list[cp_model.IntVar], end: list[cp_model.IntVar],
                    overhead: list[int], horizon: int, open_device: int | None,
                    source: int | None
                    ) -> tuple[list[cp_model.IntVar], dict[int, list[cp_model.IntVar]]]:
        """Each device's first ``count - 1`` calls as slots; the last slot holds the rest.

        A node on device ``k`` takes one of ``k``'s slots, in an order that follows the
        edges. Slot ``c`` opens at ``S[c]`` and closes at ``E[c] <= S[c + 1]``; its nodes run
        after its overhead (none for the source's call, open since before time 0) and end by
        ``E[c]``. In every slot but the last, which stands for all later calls together:
        the slot opens only once every input from another device has arrived (the
        evaluator's call waits for all of them), and its nodes' outputs leave at ``E[c]``.
        Calls in the evaluator's order map onto the slots, so every row holds for its
        schedules. Without slots a node's outputs left at its own end, and a device's call
        took in inputs as they came.

        Returns:
            (when each node's outputs leave, each device's slot-used flags).
        """
        idx, m = self.idx, self.model
        n = len(idx.names)
        leave = [m.new_int_var(0, horizon, f"leave[{i}]") for i in range(n)]
        for i in range(n):
            m.add(leave[i] >= end[i])
        slot: list[dict[int, list[cp_model.IntVar]]] = [{} for _ in range(n)]
        opens: dict[int, list[cp_model.IntVar]] = {}
        used: dict[int, list[cp_model.IntVar]] = {}
        last = count - 1
        for k in range(len(idx.devices)):
            on_k = [i for i in range(n) if k in self.x[i]]
            if len(on_k) < 2:
                continue
            opens[k] = [m.new_int_var(0, horizon, f"S[{k},{c}]") for c in range(count)]
            closes = [m.new_int_var(0, horizon, f"E[{k},{c}]") for c in range(count)]
            used[k] = [m.new_bool_var(f"slot[{k},{c}]") for c in range(count)]
            if k == open_device:
                m.add(opens[k][0] == 0)
            for c in range(count):
                m.add(closes[c] >= opens[k][c])
                if c < last:
                    m.add(opens[k][c + 1] >= closes[c])
                    m.add_implication(used[k][c + 1], used[k][c])  # calls fill slots in order
            for i in on_k:
                slot[i][k] = [m.new_bool_var(f"in[{i},{k},{c}]") for c in range(count)]
                m.add(sum(slot[i][k]) == self.x[i][k])
                if i == source:
                    m.add(slot[i][k][0] == 1)
                for c, inside in enumerate(slot[i][k]):
                    m.add_implication(inside, used[k][c])
                    oh = 0 if k == open_device and c == 0 else overhead[k]
                    m.add(start[i] >= opens[k][c] + oh).only_enforce_if(inside)
                    m.add(end[i] <= closes[c]).only_enforce_if(inside)
                    if c < last:
                        m.add(leave[i] >= closes[c]).only_enforce_if(inside)
            for c in range(count):
                m.add(sum(slot[i][k][c] for i in on_k) >= 1).only_enforce_if(used[k][c])
        for (u, v), nbytes in self.pairs.items():
            for k, slots_v in slot[v].items():
                if k in slot[u]:
                    for c in range(count):  # a producer on the same device: same or earlier call
                        for later in slot[u][k][c + 1:]:
                            m.add_bool_or([slots_v[c].Not(), later.Not()])
                for a, xa in self.x[u].items():
                    if a == k:
                        continue
                    ticks = self.floor(idx.transfer(a, k, nbytes))
                    for c in range(last):
                        m.add(opens[k][c] >= leave[u] + ticks).only_enforce_if(slots_v[c], xa)
        return leave, used

    def _return_idle(self, cost: list[dict[int, int]], overhead: list[int]) -> dict[int, int]:
        """Ticks each return to a device costs its processor beyond the return's call overhead.

        A path that leaves device ``k`` and comes back (``_call_levels`` counts these returns)
        either jumps over a whole call of ``k`` (one more overhead) or returns to the very next
        call, and then ``k``'s processor idles from the call the path left until the call it
        returns to: at least a copy out, the other device's call overhead and one node there,
        and a copy back. A path with ``R`` returns among ``c`` calls has at least ``2R + 1 - c``
        returns of the second kind, so ``k``'s processor spends at least
        ``R * min(overhead, round trip)`` on top of the ``c`` overheads. Only for a device alone
        on its processor: a round trip through another device on it keeps the processor busy.
        """
        idx = self.idx
        n_devices = len(idx.devices)
        shared = {g for g in idx.group if idx.group.count(g) > 1}
        idle: dict[int, int] = {}
        for k in range(n_devices):
            if not overhead[k] or idx.group[k] in shared:
                continue
            out = [self.floor(idx.transfer(k, b, nbytes)) + overhead[b] + cost[v][b]
                   for (u, v), nbytes in self.pairs.items() if k in self.x[u]
                   for b in self.x[v] if b != k]
            back = [self.floor(idx.transfer(a, k, nbytes))
                    for (w, r), nbytes in self.pairs.items() if k in self.x[r]
                    for a in self.x[w] if a != k]
            if out and back:
                idle[k] = min(overhead[k], min(out) + min(back))
        return idle

    def at_least(self, bound_s: float) -> None:
        """Adds a makespan floor: a bound proven for a weaker form of the same model."""
        self.model.add(self.makespan >= self.floor(bound_s))

    def _max_partitions(self) -> None:
        # The entry count over-counts calls, so a partition limit would cut real plans off.
        return


def call_levels(model: AssignmentModel, overhead: list[int]) -> dict[int, cp_model.IntVar]:
    """A lower bound on each device's number of calls, for devices with an overhead.

    ``level[k][v]`` counts the calls on ``k`` that must end before ``v`` starts: along an
    edge ``u -> v`` it grows by one when ``u`` is on ``k`` and ``v`` is not (``u``'s outputs
    leave only when its call returns, so any node on ``k`` after ``v`` is in a later call).
    A device's calls are at least one more than the level of any of its nodes; for a device
    whose nodes are all in one call this is exactly 1. This holds for every cut the
    evaluator makes, whatever the objective.
    """
    idx, m, x = model.idx, model.model, model.x
    n = len(idx.names)
    calls: dict[int, cp_model.IntVar] = {}
    for k in range(len(idx.devices)):
        if not overhead[k] or sum(k in x[i] for i in range(n)) < 2:
            continue
        level = [m.new_int_var(0, n, f"lvl[{k},{i}]") for i in range(n)]
        for (u, v) in model.pairs:
            m.add(level[v] >= level[u])
            xu, xv = x[u].get(k, 0), x[v].get(k, 0)
            if not isinstance(xu, int):
                m.add(level[v] >= level[u] + xu - xv)
        count = calls[k] = m.new_int_var(0, n, f"calls[{k}]")
        for v in range(n):
            m.add(count >= level[v] + x[v].get(k, 0))
    return calls


def run_relaxation(problem: Problem, tick_s: float, hint: list[int] | None,
                   time_limit_s: float, seed: int, workers: int,
                   segment_min_nodes: int = SEGMENT_MIN_NODES,
                   deadline: float | None = None) -> ModelResult:
    """Bound ``problem``'s latency from below; ``bound_s`` is valid for the evaluator.

    Where the graph has cut nodes (``segments``) the segments are solved first
    (``segmented``), then the whole graph with the time left; the better bound is kept and
    every optimum found is returned as a solution (the segments' joined along their paths).
    No solve runs on past ``deadline`` (``time.perf_counter()``); the whole graph's share
    is kept from the segments' sharpening. Every budget, sharpening's too, is deterministic
    time, so the bound is the same on every run unless the clock stopped a solve
    (``clock_stopped`` of the result then says so).
    """
    started = time.perf_counter()
    idx = index_of(problem)
    parts = segments(idx, segment_min_nodes)
    solutions: list[list[int]] = []
    bound = 0.0
    rest = time_limit_s
    stopped: list[bool] = []  # whether the clock ended each segment solve

    def run(model: AssignmentModel, **kwargs: object) -> ModelResult:
        result = cpsat_run(model, **kwargs)  # type: ignore[arg-type]
        stopped.append(result.clock_stopped)
        return result

    if len(parts) > 1:
        def solve_span(sub: Problem, has_source: bool, local_hint: list[int] | None,
                       limit_s: float) -> ModelResult:
            # ``segment_problem`` puts the source first.
            model = RelaxationModel(sub, tick_s, source=0 if has_source else None)
            if local_hint is not None:
                model.hint_assignment(local_hint)
            # One worker: the interleaved search of two ran on after proving the optimum
            # (inception's blocks: ~1 s each against ~0.1 s), and bounded no better.
            return run(model, time_limit_s=limit_s, seed=seed, workers=1, unit_s=tick_s,
                       keep=1, deadline=deadline)

        def sharpener(slots: int) -> SpanSharpener:
            def sharpen_span(sub: Problem, has_source: bool, best: ModelResult,
                             limit_s: float) -> ModelResult:
                model = RelaxationModel(sub, tick_s, source=0 if has_source else None,
                                        call_slots=slots)
                if best.solutions:
                    model.hint_assignment(best.solutions[-1])
                if best.bound_s:
                    model.at_least(best.bound_s)
                return run(model, time_limit_s=limit_s, seed=seed, workers=1, unit_s=tick_s,
                           keep=1, deadline=deadline)
            return sharpen_span

        rest -= (SEGMENT_SHARE + SHARPEN_SHARE) * time_limit_s
        bound, solutions = segmented_bound(
            problem, idx, parts, solve_span, SEGMENT_SHARE * time_limit_s, hint,
            [sharpener(slots) for slots in CALL_SLOTS], SHARPEN_SHARE * time_limit_s)
    model = RelaxationModel(problem, tick_s)
    if hint is not None:
        model.hint_assignment(hint)
    # Fixed budgets, not the wall time left: CP-SAT's limits stay deterministic, and so do
    # the plans this relaxation's solutions may become.
    whole = run(model, time_limit_s=max(0.05, rest), seed=seed, workers=workers,
                unit_s=tick_s, keep=1, deadline=deadline)
    whole.clock_stopped = any(stopped)
    whole.bound_s = max(bound, whole.bound_s or 0.0)
    whole.solutions = solutions + whole.solutions
    whole.wall_s = time.perf_counter() - started
    return whole
