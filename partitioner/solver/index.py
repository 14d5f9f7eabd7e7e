"""Array view of a Problem (positions, adjacency, per-device costs) shared by the solver modules.

Building it is O(nodes x devices + edges); it is cached on the (frozen) Problem so the
evaluator, the baselines, the coarsener and the CP-SAT models index the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from partitioner.costing.types import Supported
from partitioner.errors import SolverError
from partitioner.solver.problem import Problem


@dataclass
class ProblemIndex:
    """Integer-indexed view of a problem.

    Attributes:
        names: Node names in topological order.
        pos: Node name -> position.
        devices: Device ids in priority order.
        dev_pos: Device id -> index.
        cost: ``cost[i][k]`` latency of node i on device k, None when unsupported.
        workspace: ``workspace[i][k]`` runner workspace bytes (0 when unsupported).
        allowed: Devices node i may use (supported, not forbidden, pinned device only).
        preds: ``preds[i]`` = list of (producer position, bytes, tensor key).
        succs: ``succs[i]`` = list of (consumer position, bytes, tensor key).
        group: Processor group of each device (devices sharing a processor share a group).
        overhead: Per-call overhead of each device in seconds.
        weights: Weight bytes of each node.
        out_bytes: Output bytes of each node.
        edge_names: ``(src, dst)`` name pairs of every edge (for ``split_into_partitions``).
        occupies: ``occupies[a][b]`` the devices a transfer from device ``a`` to ``b`` keeps
            busy for its duration (``Cluster.transfer_occupies``): ``(a,)``, ``(b,)``,
            ``(a, b)`` or ``()`` (copy engines); one device when both share a processor.
        live: ``live_while_running`` of each node (the memory floors of the bounds).
        cache: Evaluations by device-index tuple (filled by the evaluator).
    """

    names: list[str]
    pos: dict[str, int]
    devices: tuple[str, ...]
    dev_pos: dict[str, int]
    cost: list[list[float | None]]
    workspace: list[list[int]]
    allowed: list[list[int]]
    preds: list[list[tuple[int, int, str]]]
    succs: list[list[tuple[int, int, str]]]
    group: list[int]
    overhead: list[float]
    weights: list[int]
    out_bytes: list[int]
    link_latency: list[list[float]]
    link_bandwidth: list[list[float]]
    edge_names: list[tuple[str, str]] = field(default_factory=list)
    occupies: list[list[tuple[int, ...]]] = field(default_factory=list)
    live: list[int] = field(default_factory=list)
    cache: dict[tuple[int, ...], Any] = field(default_factory=dict)

    def occupied(self, a: int, b: int) -> tuple[int, ...]:
        """The devices a transfer from device ``a`` to ``b`` keeps busy (``occupies``)."""
        return self.occupies[a][b] if self.occupies else ()

    def transfer(self, a: int, b: int, nbytes: int) -> float:
        """Seconds to move ``nbytes`` from device index ``a`` to ``b`` (0 when equal)."""
        if a == b:
            return 0.0
        return self.link_latency[a][b] + nbytes / self.link_bandwidth[a][b]


def index_of(problem: Problem) -> ProblemIndex:
    """Return the (cached) index of ``problem``; SolverError on dangling edges."""
    cached = problem.__dict__.get("_solver_index")
    if cached is None:
        cached = _build(problem)
        object.__setattr__(problem, "_solver_index", cached)
    return cached


def _build(problem: Problem) -> ProblemIndex:
    cluster = problem.cluster
    names = [n.name for n in problem.nodes]
    pos = {name: i for i, name in enumerate(names)}
    if len(pos) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise SolverError(f"duplicate node names in problem: {', '.join(dupes[:10])}")
    devices = cluster.device_ids
    dev_pos = {d: k for k, d in enumerate(devices)}
    cost: list[list[float | None]] = []
    workspace: list[list[int]] = []
    allowed: list[list[int]] = []
    for name in names:
        row: list[float | None] = []
        ws: list[int] = []
        for d in devices:
            c = problem.costs.get(name, d)
            if isinstance(c, Supported):
                row.append(max(0.0, float(c.latency_s)))
                ws.append(int(c.memory_bytes))
            else:
                row.append(None)
                ws.append(0)
        cost.append(row)
        workspace.append(ws)
        banned = set(problem.forbidden.get(name, ()))
        pinned = problem.pins.get(name)
        allowed.append([
            k for k, d in enumerate(devices)
            if row[k] is not None and d not in banned and (pinned is None or pinned == d)
        ])
    preds: list[list[tuple[int, int, str]]] = [[] for _ in names]
    succs: list[list[tuple[int, int, str]]] = [[] for _ in names]
    bad = []
    for e in problem.edges:
        s, t = pos.get(e.src), pos.get(e.dst)
        if s is None or t is None:
            bad.append(f"{e.src}->{e.dst}")
            continue
        key = e.tensor or f"{e.src}->{e.dst}"
        preds[t].append((s, int(e.nbytes), key))
        succs[s].append((t, int(e.nbytes), key))
    if bad:
        raise SolverError(f"edges name unknown nodes: {', '.join(bad[:10])}")
    groups: dict[str, int] = {}
    group = []
    for dev in cluster.devices:
        key = dev.processor if dev.processor is not None else f"\0{dev.id}"
        group.append(groups.setdefault(key, len(groups)))
    link_latency = [[0.0] * len(devices) for _ in devices]
    link_bandwidth = [[1.0] * len(devices) for _ in devices]
    occupies: list[list[tuple[int, ...]]] = [[() for _ in devices] for _ in devices]
    for a, da in enumerate(devices):
        for b, db in enumerate(devices):
            if a != b:
                link = cluster.link(da, db)
                link_latency[a][b] = link.latency_s
                link_bandwidth[a][b] = link.bandwidth
                src, dst = cluster.transfer_occupies(da, db)
                if src and dst and group[a] == group[b]:
                    dst = False  # one processor does the copy once
                occupies[a][b] = (a,) * src + (b,) * dst
    index = ProblemIndex(
        names=names,
        pos=pos,
        devices=devices,
        dev_pos=dev_pos,
        cost=cost,
        workspace=workspace,
        allowed=allowed,
        preds=preds,
        succs=succs,
        group=group,
        overhead=[d.call_overhead_s for d in cluster.devices],
        weights=[n.weight_bytes for n in problem.nodes],
        out_bytes=[n.output_bytes for n in problem.nodes],
        link_latency=link_latency,
        link_bandwidth=link_bandwidth,
        edge_names=[(e.src, e.dst) for e in problem.edges],
        occupies=occupies,
    )
    index.live = [live_while_running(index, i) for i in range(len(names))]
    return index


def edge_pairs(idx: ProblemIndex) -> dict[tuple[int, int], int]:
    """(producer, consumer) -> largest tensor bytes between them (one entry per node pair)."""
    pairs: dict[tuple[int, int], int] = {}
    for v, ps in enumerate(idx.preds):
        for u, nbytes, _ in ps:
            pairs[(u, v)] = max(pairs.get((u, v), 0), nbytes)
    return pairs


def live_while_running(idx: ProblemIndex, i: int) -> int:
    """Activation bytes the evaluator holds on node ``i``'s device when ``i`` starts.

    Its output (live from its start) and each input tensor another node produced (local
    outputs live until their last local consumer ends, received copies likewise), each
    tensor once. When ``i`` runs for a positive time all of them overlap at its start, so
    ``weights + largest workspace + this`` is a floor of the device's peak memory
    (``evaluate._peak_memory``).
    """
    inputs: dict[str, int] = {}
    for s, nbytes, key in idx.preds[i]:
        inputs[key] = max(inputs.get(key, 0), min(nbytes, idx.out_bytes[s]))
    return idx.out_bytes[i] + sum(inputs.values())
