"""Coarsening: merge nodes into at most a few hundred groups before CP-SAT, and expand back.

Groups are contiguous segments of one depth-first topological order (Kahn's algorithm that
continues with the successors just released, so chains, constant/shape side computations and
repeated blocks stay together). Contracting contiguous segments of a single topological order
can never create a cycle. A segment is cut when the allowed device set changes (a group is
supported on a device only if every member is, and pins/forbidden devices are part of the
allowed set), when it would exceed the cost budget (total min-cost / target), and at a jump
to an unrelated branch once the segment holds a quarter of the budget (keeping parallel
branches apart so they may still run on different devices). The budget grows until the
count is at most ``target``.

When support alternates too often for that (e.g. an NPU lacking every fifth op), a second
pass cuts on budget and jumps only and builds *mixed* groups: a group may sit on any device
that one of its members may use; members that cannot run there escape to their own fastest
allowed device (pinned members to their pin), and the group's cost on that device adds their
escape cost plus a round-trip transfer of their output. Expansion applies the same rule, and
the evaluator re-scores the expanded assignment.

A group costs the sum of its members on each device; its workspace is the largest member
workspace plus that member's output; its output bytes are those of tensors leaving it; edges
between groups carry the summed bytes of the distinct tensors crossing.
"""

from __future__ import annotations

from dataclasses import dataclass

from partitioner.costing.types import CostTable, Supported, Unsupported
from partitioner.solver.index import ProblemIndex, index_of
from partitioner.solver.problem import Problem, ProblemEdge, ProblemNode


@dataclass(frozen=True)
class Coarsening:
    """A coarse problem and how it maps back.

    Attributes:
        problem: The problem over groups (pins/forbidden folded into its costs).
        group_of: Group index of each original node position.
        groups: Group name -> member node names.
    """

    problem: Problem
    group_of: list[int]
    groups: dict[str, tuple[str, ...]]
    allowed: list[list[int]]
    escape: list[int]

    def expand(self, dev: list[int]) -> list[int]:
        """Device index per original node from a device index per group."""
        return [dev[g] if dev[g] in self.allowed[i] else self.escape[i]
                for i, g in enumerate(self.group_of)]

    def restrict(self, dev: list[int]) -> list[int]:
        """Device index per group from a per-node one (the device holding most members)."""
        cidx = index_of(self.problem)
        votes: list[dict[int, int]] = [{} for _ in cidx.names]
        for i, g in enumerate(self.group_of):
            votes[g][dev[i]] = votes[g].get(dev[i], 0) + 1
        out = []
        for g, v in enumerate(votes):
            ranked = sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))
            choice = next((k for k, _ in ranked if k in cidx.allowed[g]), cidx.allowed[g][0])
            out.append(choice)
        return out


def coarsen(problem: Problem, target: int = 200) -> Coarsening | None:
    """Group ``problem``'s nodes into at most about ``target`` groups.

    Returns:
        The coarsening, or None when the problem is already small enough.
    """
    idx = index_of(problem)
    n = len(idx.names)
    if n <= target:
        return None
    order = _dfs_topological(idx)
    weight = [min(idx.cost[i][k] or 0.0 for k in idx.allowed[i]) if idx.allowed[i] else 0.0
              for i in range(n)]
    total = sum(weight) or 1.0
    for mixed in (False, True):
        budget = total / target
        while True:
            segments = _segment(idx, order, weight, budget, mixed)
            if len(segments) <= target or budget > total:
                break
            budget *= 1.5
        if len(segments) <= 2 * target:
            break
    return _build(problem, idx, segments)


def _dfs_topological(idx: ProblemIndex) -> list[int]:
    n = len(idx.names)
    indeg = [len({s for s, _, _ in ps}) for ps in idx.preds]
    succ = [sorted({t for t, _, _ in ss}, reverse=True) for ss in idx.succs]
    stack = [i for i in range(n - 1, -1, -1) if indeg[i] == 0]
    order = []
    while stack:
        i = stack.pop()
        order.append(i)
        for t in succ[i]:
            indeg[t] -= 1
            if indeg[t] == 0:
                stack.append(t)
    assert len(order) == n, "problem graph has a cycle"
    return order


def _segment(idx: ProblemIndex, order: list[int], weight: list[float],
             budget: float, mixed: bool) -> list[list[int]]:
    segments: list[list[int]] = []
    current: list[int] = []
    members: set[int] = set()
    acc = 0.0
    for i in order:
        if current:
            same_support = mixed or idx.allowed[i] == idx.allowed[current[0]]
            related = any(s in members for s, _, _ in idx.preds[i])
            full = acc + weight[i] > budget and acc > 0
            jump = not related and acc >= 0.25 * budget
            if not same_support or full or jump:
                segments.append(current)
                current, members, acc = [], set(), 0.0
        current.append(i)
        members.add(i)
        acc += weight[i]
    if current:
        segments.append(current)
    return segments


def _fastest(idx: ProblemIndex, i: int) -> int:
    """Node i's fastest allowed device (lowest index on ties; 0 when none is allowed)."""
    allowed = idx.allowed[i]
    if not allowed:
        return 0
    return min(allowed, key=lambda k: (idx.cost[i][k] or 0.0, k))


def _build(problem: Problem, idx: ProblemIndex, segments: list[list[int]]) -> Coarsening:
    n = len(idx.names)
    group_of = [0] * n
    for g, seg in enumerate(segments):
        for i in seg:
            group_of[i] = g
    names = [f"group{g}" for g in range(len(segments))]
    escape = [_fastest(idx, i) for i in range(n)]
    costs = CostTable()
    nodes = []
    edge_bytes: dict[tuple[int, int], dict[tuple[int, str], int]] = {}
    for g, seg in enumerate(segments):
        out_bytes = 0
        for i in seg:
            leaving = False
            for t, nbytes, key in idx.succs[i]:
                h = group_of[t]
                if h != g:
                    leaving = True
                    edge_bytes.setdefault((g, h), {})[(i, key)] = nbytes
            if leaving or not idx.succs[i]:
                out_bytes += idx.out_bytes[i]
        nodes.append(ProblemNode(
            name=names[g],
            op_type=problem.nodes[seg[0]].op_type if len(seg) == 1 else "group",
            weight_bytes=sum(idx.weights[i] for i in seg),
            output_bytes=out_bytes,
            members=tuple(idx.names[i] for i in seg),
        ))
        usable = sorted({k for i in seg for k in idx.allowed[i]})
        for k, dev in enumerate(idx.devices):
            if k not in usable:
                costs.set(names[g], dev, Unsupported(f"no member of {names[g]} may run here"))
                continue
            lat = 0.0
            ws = 0
            for i in seg:
                if k in idx.allowed[i]:
                    lat += idx.cost[i][k] or 0.0
                    ws = max(ws, idx.workspace[i][k] + idx.out_bytes[i])
                else:
                    e = escape[i]
                    lat += (idx.cost[i][e] or 0.0) + idx.overhead[e] + idx.transfer(
                        k, e, idx.out_bytes[i]) + idx.transfer(e, k, idx.out_bytes[i])
            costs.set(names[g], dev, Supported(lat, ws, "coarsened"))
    edges = tuple(
        ProblemEdge(names[g], names[h], sum(tensors.values()), f"{names[g]}->{names[h]}")
        for (g, h), tensors in sorted(edge_bytes.items())
    )
    # Segments are contiguous in a topological order, so ``nodes`` is topological too.
    coarse = Problem(
        nodes=tuple(nodes),
        edges=edges,
        cluster=problem.cluster,
        costs=costs,
        objective=problem.objective,
        latency_target_s=problem.latency_target_s,
        max_partitions=problem.max_partitions,
    )
    groups = {names[g]: nodes[g].members for g in range(len(segments))}
    return Coarsening(coarse, group_of, groups, idx.allowed, escape)
