"""Why a node sits where it does: what moving it would cost and which constraints bind it.

The move estimate is deliberately simple and serial (it ignores overlap with other work),
for a node ``n`` moved from its device ``d`` to ``d2``:

* own time: ``cost(n, d2) - cost(n, d)``;
* transfers: every input now arriving from another device pays ``Cluster.transfer_time`` from
  its producer's device to ``d2`` instead of to ``d``; every output pays one copy per distinct
  consumer device other than ``d2`` instead of other than ``d``;
* calls: ``+ overhead(d2)`` when no neighbour of ``n`` runs on ``d2`` (a new runner call),
  ``- overhead(d)`` when ``n`` was alone in its partition, ``+ overhead(d)`` when it sits
  between a producer and a consumer of its own partition (the call is cut in two);
* memory: the move is blocked when ``d2``'s free memory (capacity minus the report's memory
  estimate) is below the node's weights plus its workspace on ``d2``.

A positive total means the move would make the plan slower by about that much.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from partitioner.plan.types import Plan
from partitioner.report.fmt import fmt_bytes, fmt_delta_time, fmt_ratio, fmt_time
from partitioner.report.inputs import GraphDetail, NodeEdge

#: Relative tolerance under which two latencies count as equal.
_TIE = 1e-9


@dataclass(frozen=True)
class MoveEstimate:
    """The estimated effect of moving one node to ``device`` (see the module docstring)."""

    device: str
    own_delta_s: float | None
    transfer_delta_s: float = 0.0
    call_delta_s: float = 0.0
    unsupported: str | None = None
    memory_blocked: str | None = None

    @property
    def total_s(self) -> float | None:
        """Own + transfer + call deltas; None when the device cannot run the node."""
        if self.own_delta_s is None:
            return None
        return self.own_delta_s + self.transfer_delta_s + self.call_delta_s

    @property
    def possible(self) -> bool:
        """True when the device supports the node and has room for it."""
        return self.unsupported is None and self.memory_blocked is None


@dataclass(frozen=True)
class NodeAnalysis:
    """Moves to every other device, the binding constraints, and a one-line reason."""

    moves: tuple[MoveEstimate, ...]
    constraints: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class NodeContext:
    """Precomputed neighbourhoods shared by every node's analysis."""

    plan: Plan
    preds: dict[str, list[NodeEdge]] = field(hash=False)
    succs: dict[str, list[NodeEdge]] = field(hash=False)
    free_bytes: dict[str, int] = field(hash=False)
    partition_sizes: dict[int, int] = field(hash=False)
    device_of: dict[str, str] = field(hash=False)
    partition_of: dict[str, int] = field(hash=False)

    @classmethod
    def build(cls, plan: Plan, detail: GraphDetail, free_bytes: dict[str, int]) -> NodeContext:
        """Index ``detail``'s edges by node."""
        preds: dict[str, list[NodeEdge]] = defaultdict(list)
        succs: dict[str, list[NodeEdge]] = defaultdict(list)
        for e in detail.edges:
            preds[e.dst].append(e)
            succs[e.src].append(e)
        return cls(
            plan,
            dict(preds),
            dict(succs),
            dict(free_bytes),
            {p.index: len(p.nodes) for p in plan.partitions},
            {n: p.device for n, p in plan.placement.items()},
            {n: p.partition for n, p in plan.placement.items()},
        )


def _move(ctx: NodeContext, name: str, target: str) -> MoveEstimate:
    plan = ctx.plan
    placed = plan.placement[name]
    here = placed.device
    if target in plan.forbidden.get(name, ()):
        return MoveEstimate(target, None, unsupported="forbidden by the user (--forbid)")
    cost_there = placed.costs.get(target)
    if cost_there is None or cost_there.unsupported is not None or cost_there.latency_s is None:
        reason = cost_there.unsupported if cost_there is not None else "no cost recorded"
        return MoveEstimate(target, None, unsupported=reason or "unsupported")
    cost_here = placed.costs.get(here)
    own = cost_there.latency_s - (cost_here.latency_s or 0.0 if cost_here else 0.0)
    cluster = plan.cluster
    dev = ctx.device_of
    transfer = 0.0
    seen_in: set[tuple[str, str]] = set()
    for e in ctx.preds.get(name, ()):
        if (e.src, e.tensor) in seen_in or e.src not in dev:
            continue
        seen_in.add((e.src, e.tensor))
        transfer += cluster.transfer_time(dev[e.src], target, e.nbytes)
        transfer -= cluster.transfer_time(dev[e.src], here, e.nbytes)
    by_tensor: dict[str, tuple[int, set[str]]] = {}
    for e in ctx.succs.get(name, ()):
        if e.dst in dev:
            size, devices = by_tensor.get(e.tensor, (e.nbytes, set()))
            devices.add(dev[e.dst])
            by_tensor[e.tensor] = (size, devices)
    for size, devices in by_tensor.values():
        transfer += sum(cluster.transfer_time(target, d, size) for d in devices if d != target)
        transfer -= sum(cluster.transfer_time(here, d, size) for d in devices if d != here)
    calls = _call_delta(ctx, name, here, target)
    need = placed.weight_bytes + cost_there.memory_bytes
    free = ctx.free_bytes.get(target)
    blocked = None
    if free is not None and need > free:
        blocked = f"{target} has {fmt_bytes(max(free, 0))} free, the node needs {fmt_bytes(need)}"
    return MoveEstimate(target, own, transfer, calls, memory_blocked=blocked)


def _call_delta(ctx: NodeContext, name: str, here: str, target: str) -> float:
    """Runner-call overhead the move adds (new call on ``target``, cut call on ``here``)."""
    cluster = ctx.plan.cluster
    dev, part_of = ctx.device_of, ctx.partition_of
    preds = [e.src for e in ctx.preds.get(name, ()) if e.src in dev]
    succs = [e.dst for e in ctx.succs.get(name, ()) if e.dst in dev]
    calls = 0.0
    if not any(dev[n] == target for n in (*preds, *succs)):
        calls += cluster.device(target).call_overhead_s
    mine = part_of[name]
    if ctx.partition_sizes.get(mine, 1) == 1:
        calls -= cluster.device(here).call_overhead_s
    elif any(part_of[n] == mine for n in preds) and any(part_of[n] == mine for n in succs):
        calls += cluster.device(here).call_overhead_s
    return calls


def analyse_node(ctx: NodeContext, name: str) -> NodeAnalysis:
    """Moves, constraints and the one-line reason for node ``name``."""
    placed = ctx.plan.placement[name]
    here = placed.device
    moves = tuple(_move(ctx, name, d) for d in ctx.plan.cluster.device_ids if d != here)
    constraints: list[str] = []
    pin = ctx.plan.pins.get(name)
    if pin:
        constraints.append(f"pinned to {pin}")
    supported = [m for m in moves if m.unsupported is None]
    for m in moves:
        if m.unsupported is not None:
            constraints.append(f"cannot run on {m.device}: {m.unsupported}")
    for m in supported:
        if m.memory_blocked:
            constraints.append(f"would not fit on {m.device}: {m.memory_blocked}")
    here_cost = placed.costs.get(here)
    here_latency = here_cost.latency_s if here_cost and here_cost.latency_s is not None else 0.0
    threshold = -_TIE * max(here_latency, 1e-12)
    faster = [m for m in supported if (m.own_delta_s or 0.0) < threshold]
    best = min(faster, key=lambda m: m.own_delta_s or 0.0) if faster else None
    why = _why(placed.op_type, here, here_latency, pin, supported, best)
    if best is not None and not best.memory_blocked and (best.total_s or 0.0) >= 0:
        constraints.append(
            f"transfers: moving to {best.device} costs {fmt_delta_time(best.total_s)} net"
        )
    return NodeAnalysis(moves, tuple(constraints), why)


def _why(
    op_type: str,
    here: str,
    here_latency: float,
    pin: str | None,
    supported: list[MoveEstimate],
    best: MoveEstimate | None,
) -> str:
    """The one-line reason (see ``analyse_node``)."""
    if pin:
        return f"pinned to {pin} by the user"
    if not supported:
        return f"{here} is the only device that can run {op_type}"
    if best is None:
        slowest = here_latency + max((m.own_delta_s or 0.0) for m in supported)
        if here_latency > 0 and slowest / here_latency > 1.0005:
            ratio = fmt_ratio(slowest / here_latency)
            return f"fastest device for it ({ratio} faster than the slowest)"
        return "no other device is faster for it"
    there = here_latency + (best.own_delta_s or 0.0)
    speed = fmt_ratio(here_latency / there) if there > 0 else "much"
    if best.memory_blocked:
        return f"{best.device} is {speed} faster but full ({best.memory_blocked})"
    if (best.total_s or 0.0) >= 0:
        extra = fmt_delta_time(best.transfer_delta_s + best.call_delta_s)
        return (
            f"{best.device} is {speed} faster for the op, but moving it pays {extra} "
            "in transfers and calls"
        )
    return (
        f"kept with its neighbours: moving it to {best.device} looks "
        f"{fmt_time(-(best.total_s or 0.0))} cheaper by the serial estimate, but the solver "
        "kept it here for the schedule as a whole (overlap, other transfers)"
    )
