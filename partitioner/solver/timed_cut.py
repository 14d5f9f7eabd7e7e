"""A cut into runner calls that watches the clock: each call takes what has arrived.

``split_into_partitions`` cuts a topological order without times, so a call may hold a node
whose input comes late from another device, and the whole call waits for it (inception on
cpu+l4: one accelerator call took a branch ready at 0.90 ms and a relu whose input arrived
at 1.01 ms). This cut simulates the executor instead: whenever a processor can start a call,
the call is formed from the nodes of its device whose inputs are there by then, and the
nodes they enable on the same device; the rest wait for a later call.

Inside a call the ready nodes run in the same order as the exits-first cut: nodes feeding a
concurrent device (directly or through their own device's nodes) first, then the critical
path, then position. The call ends after a node that releases parallel work, unless the
next one is such an exit too, so that other devices are not kept waiting for work that can.

The calls come out in order of start time, which is a topological order of the partitions;
the evaluator costs them like any other cut.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

from partitioner.solver.index import ProblemIndex
from partitioner.solver.partitioning import Partition, exit_nodes


def timed_partitions(idx: ProblemIndex, dev: list[int], priority: Mapping[str, float],
                     concurrent: Callable[[str, str], bool],
                     exits_first: bool = True) -> list[Partition]:
    """Runner calls for the assignment ``dev`` (device index per node), formed in time.

    Args:
        idx: The problem's index (costs, transfers, overheads, processor groups).
        dev: Device index of every node.
        priority: Higher runs first among ready nodes (``bottom_levels``).
        concurrent: Whether two device ids can work at the same time.
        exits_first: Run nodes that feed a concurrent device first, and end a call that
            releases parallel work only once none of them is left (as in
            ``split_into_partitions``); False ends it right after such a release.
    """
    n = len(idx.names)
    exits = dict.fromkeys(idx.names, False)
    if exits_first:
        assignment = {name: idx.devices[dev[i]] for i, name in enumerate(idx.names)}
        successors = {name: [idx.names[s] for s, _, _ in idx.succs[i]]
                      for i, name in enumerate(idx.names)}
        exits = exit_nodes(idx.names, successors, assignment, concurrent)
    waiting = [len(idx.preds[i]) for i in range(n)]  # preds not yet in a formed call
    done_at = [0.0] * n  # end of the call a node ran in
    call_of = [-1] * n
    free = [0.0] * (max(idx.group) + 1)
    # Per device: released nodes by arrival time, and arrived nodes by run order.
    arriving: list[list[tuple[float, int]]] = [[] for _ in idx.devices]
    eligible: list[list[tuple[bool, float, int]]] = [[] for _ in idx.devices]

    def run_key(i: int) -> tuple[bool, float, int]:
        return (not exits[idx.names[i]], -priority[idx.names[i]], i)

    for i in range(n):
        if not idx.preds[i]:
            heapq.heappush(arriving[dev[i]], (0.0, i))

    partitions: list[Partition] = []
    while True:
        start, k = _next_call(idx, free, arriving, eligible)
        if k is None:
            break
        while arriving[k] and arriving[k][0][0] <= start:
            heapq.heappush(eligible[k], run_key(heapq.heappop(arriving[k])[1]))
        index = len(partitions)
        members: list[int] = []
        later: list[int] = []  # released by this call, their inputs come after it starts
        while eligible[k]:
            i = heapq.heappop(eligible[k])[2]
            members.append(i)
            call_of[i] = index
            releases_parallel_work = False
            for succ, _, _ in idx.succs[i]:
                waiting[succ] -= 1
                if waiting[succ]:
                    continue
                if dev[succ] != k:
                    releases_parallel_work |= concurrent(idx.devices[k], idx.devices[dev[succ]])
                    later.append(succ)
                    continue
                outside = _arrival(idx, dev, succ, done_at, call_of, index)
                if outside <= start:
                    heapq.heappush(eligible[k], run_key(succ))
                else:
                    later.append(succ)
            pending = eligible[k]
            if releases_parallel_work and pending and pending[0][0]:
                break  # the next node is no exit: let the other device start
        end = start + idx.overhead[k] + sum(idx.cost[i][k] or 0.0 for i in members)
        for i in members:
            done_at[i] = end
        free[idx.group[k]] = end
        for succ in later:
            heapq.heappush(arriving[dev[succ]],
                           (_arrival(idx, dev, succ, done_at, call_of, None), succ))
        partitions.append(Partition(index, idx.devices[k],
                                    tuple(idx.names[i] for i in members)))
    if sum(len(p.nodes) for p in partitions) != n:
        raise ValueError("dependency graph has a cycle; cannot partition it")
    return partitions


def _next_call(idx: ProblemIndex, free: list[float], arriving: list[list[tuple[float, int]]],
               eligible: list[list[tuple[bool, float, int]]]) -> tuple[float, int | None]:
    """The earliest call any device can start: (start time, device), None when all ran."""
    best: tuple[float, int | None] = (float("inf"), None)
    for k in range(len(idx.devices)):
        if eligible[k]:
            start = free[idx.group[k]]
        elif arriving[k]:
            start = max(free[idx.group[k]], arriving[k][0][0])
        else:
            continue
        if start < best[0]:
            best = (start, k)
    return best


def _arrival(idx: ProblemIndex, dev: list[int], i: int, done_at: list[float],
             call_of: list[int], current: int | None) -> float:
    """When node ``i``'s inputs from calls other than ``current`` are all on its device."""
    latest = 0.0
    for s, nbytes, _ in idx.preds[i]:
        if call_of[s] == current:
            continue
        latest = max(latest, done_at[s] + idx.transfer(dev[s], dev[i], nbytes))
    return latest
