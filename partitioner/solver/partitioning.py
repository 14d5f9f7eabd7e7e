"""Turn a node -> device assignment into partitions: runner calls whose quotient graph is acyclic.

The solver's evaluator (per-call overhead per partition) and the plan builder (one extracted
ONNX model per partition) both use this, so predicted and executed partitions are the same.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

#: ``concurrent(a, b)``: True when devices ``a`` and ``b`` can work at the same time.
Concurrency = Callable[[str, str], bool]


@dataclass(frozen=True)
class Partition:
    """A maximal run of nodes on one device, executed as one runner call.

    Attributes:
        index: Position in execution order (a topological order of partitions).
        device: Device id.
        nodes: Node names in a topological order.
    """

    index: int
    device: str
    nodes: tuple[str, ...]


def split_into_partitions(
    order: Sequence[str],
    edges: Iterable[tuple[str, str]],
    assignment: Mapping[str, str],
    concurrent: Concurrency | None = None,
    priority: Mapping[str, float] | None = None,
    exits_first: bool = False,
) -> list[Partition]:
    """Group an assignment into few partitions whose dependency graph is acyclic.

    Kahn's algorithm that keeps running ready nodes of the current device before switching
    devices, then cuts the resulting order wherever the device changes. Cutting a topological
    order into contiguous segments can never create a cycle between segments, and preferring
    the current device keeps parallel branches on other devices out of the way.

    One more cut lets branches overlap: a node that releases work on another device able to
    run at the same time ends its partition, so that the other device's call depends on it
    alone and not on everything the current device goes on to do. (Without it, a fork whose
    branches sit on two devices would run one branch after the other.) Devices sharing a
    processor gain nothing from it, so ``concurrent`` decides.

    Args:
        order: Node names in a topological order (ties are broken by this order).
        edges: Dependencies ``(src, dst)`` between node names.
        assignment: Device id of every node in ``order``.
        concurrent: Whether two devices can work at once; None means never (no extra cuts).
        priority: Among ready nodes, higher runs first (ties by ``order``); None means
            ``order`` alone. ``bottom_levels`` gives the usual choice: the critical path first,
            so a node that feeds another device's branch is not queued behind work that can
            wait.
        exits_first: Among ready nodes, those feeding a concurrent device (directly or through
            nodes of their own device) run first, and a partition that releases parallel work
            ends only once none of them is left: one call returns the inputs of every branch
            the other devices take, where cutting at each would pay one more call per branch
            (inception's four-way forks).

    Returns:
        Partitions in execution order.
    """
    position = {name: i for i, name in enumerate(order)}
    successors: dict[str, list[str]] = {name: [] for name in order}
    indegree = dict.fromkeys(order, 0)
    # Each dependency once, in the given order (a set's order of string pairs changes with
    # PYTHONHASHSEED).
    for src, dst in dict.fromkeys(edges):
        successors[src].append(dst)
        indegree[dst] += 1

    exit_node = (exit_nodes(order, successors, assignment, concurrent)
                 if exits_first and concurrent is not None else dict.fromkeys(order, False))

    # One ready-heap per device: exits first when asked, then priority, then original
    # position for determinism.
    ready: dict[str, list[tuple[bool, float, int]]] = {}

    def push(name: str) -> None:
        first = -priority[name] if priority is not None else 0.0
        heapq.heappush(ready.setdefault(assignment[name], []),
                       (not exit_node[name], first, position[name]))

    for name in order:
        if indegree[name] == 0:
            push(name)

    partitions: list[Partition] = []
    current: list[str] = []
    device: str | None = None
    while any(ready.values()):
        if device is None or not ready.get(device):
            # Switch to the device whose first ready node comes first (priority, then order).
            device = min((d for d, heap in ready.items() if heap), key=lambda d: ready[d][0])
            if current:
                partitions.append(_make(len(partitions), assignment[current[0]], current))
                current = []
        name = order[heapq.heappop(ready[device])[2]]
        current.append(name)
        releases_parallel_work = False
        for succ in successors[name]:
            indegree[succ] -= 1
            if indegree[succ] == 0:
                other = assignment[succ]
                push(succ)
                if other != device and concurrent is not None and concurrent(device, other):
                    releases_parallel_work = True
        pending = ready.get(device, [])
        next_is_exit = bool(pending) and not pending[0][0]  # never without exits_first
        if releases_parallel_work and pending and not next_is_exit:
            partitions.append(_make(len(partitions), device, current))
            current = []
    if current:
        partitions.append(_make(len(partitions), assignment[current[0]], current))
    placed = sum(len(p.nodes) for p in partitions)
    if placed != len(order):
        raise ValueError("dependency graph has a cycle; cannot partition it")
    return partitions


def exit_nodes(order: Sequence[str], successors: Mapping[str, Iterable[str]],
               assignment: Mapping[str, str], concurrent: Concurrency) -> dict[str, bool]:
    """Which nodes feed a concurrent device, directly or through nodes of their own device.

    Args:
        order: Node names in a topological order.
        successors: Consumers of each node.
        assignment: Device id of every node.
        concurrent: Whether two devices can work at the same time.
    """
    exit_node: dict[str, bool] = {}
    for name in reversed(order):
        here = assignment[name]
        exit_node[name] = any(
            exit_node[succ] if assignment[succ] == here else concurrent(here, assignment[succ])
            for succ in successors[name])
    return exit_node


def _make(index: int, device: str, nodes: list[str]) -> Partition:
    return Partition(index=index, device=device, nodes=tuple(nodes))


def bottom_levels(
    order: Sequence[str],
    edges: Iterable[tuple[str, str, int]],
    assignment: Mapping[str, str],
    node_time: Callable[[str], float],
    hop_time: Callable[[str, str, int], float],
) -> dict[str, float]:
    """Longest time from each node's start to the end of the graph under ``assignment``.

    The classic list-scheduling priority (HEFT's upward rank): a node's own time plus the
    costliest path after it, where an edge between two devices adds ``hop_time``.

    Args:
        order: Node names in a topological order.
        edges: ``(src, dst, bytes)`` dependencies.
        assignment: Device id of every node.
        node_time: Seconds a node runs on its assigned device.
        hop_time: ``hop_time(src_device, dst_device, bytes)``: seconds an edge between two
            different devices adds (copy plus the consumer's call overhead).
    """
    successors: dict[str, list[tuple[str, int]]] = {name: [] for name in order}
    for src, dst, nbytes in edges:
        successors[src].append((dst, nbytes))
    level: dict[str, float] = {}
    for name in reversed(order):
        here = assignment[name]
        after = 0.0
        for succ, nbytes in successors[name]:
            there = assignment[succ]
            hop = hop_time(here, there, nbytes) if there != here else 0.0
            after = max(after, hop + level[succ])
        level[name] = node_time(name) + after
    return level
