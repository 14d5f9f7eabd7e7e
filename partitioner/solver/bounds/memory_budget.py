"""The device whose memory limits placement, in whole units (for the segmented bound).

A device *binds* when the weights of every node that may run on it, plus the largest
footprint one of them holds besides weights, exceed its memory. Its memory is then a budget
that couples the whole graph: a small GPU cannot keep every layer at once.

The evaluator's peak on a device is at least its weights plus the largest workspace plus the
largest activations live while one of its nodes runs (``index.live_while_running``), so at
least weights plus ``T``, the largest of those footprints over its nodes. Counted in units of
``memory / BUDGET_UNITS`` bytes, rounded down, a plan that fits also fits in units:
``sum(floor(w / u)) <= floor((memory - T) / u) <= BUDGET_UNITS - floor(T / u)``.

``T`` depends on the plan, so the budget is split into footprint ``levels``: plans whose
largest footprint on the device lies in ``[low, high]`` units keep every node whose footprint
exceeds ``high`` off the device and have ``BUDGET_UNITS - low`` units for weights. Every plan
lies in one level, so the least bound over the levels is a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from partitioner.solver.index import ProblemIndex
from partitioner.solver.problem import Problem

#: Units a binding device's memory is counted in (the budget path's width).
BUDGET_UNITS = 2048

#: Footprint levels at most (by default); beyond it the lowest footprints share one level.
MAX_LEVELS = 8


@dataclass(frozen=True)
class MemoryBudget:
    """A binding device's memory in units.

    Attributes:
        device: Device index.
        weights: Weight units of each node on the device (0 where it cannot run there).
        footprints: Units of workspace and live activations each node holds there.
    """

    device: int
    weights: tuple[int, ...]
    footprints: tuple[int, ...]


@dataclass(frozen=True)
class Level:
    """Plans whose largest footprint on the budget's device is ``low`` to ``high`` units.

    Attributes:
        banned: Nodes whose footprint exceeds ``high``: they stay off the device.
        capacity: Units left for weights (``BUDGET_UNITS - low``).
    """

    banned: frozenset[int]
    capacity: int


def binding_budget(problem: Problem, idx: ProblemIndex) -> MemoryBudget | None:
    """The most oversubscribed binding device's budget, or None when no device binds."""
    best: tuple[float, MemoryBudget] | None = None
    for k, device in enumerate(problem.cluster.devices):
        memory = device.memory_bytes
        on = [i for i in range(len(idx.names)) if k in idx.allowed[i]]
        if memory <= 0 or not on:
            continue
        footprint = {i: idx.workspace[i][k] + (idx.live[i] if idx.cost[i][k] else 0)
                     for i in on}
        demand = sum(idx.weights[i] for i in on) + max(footprint.values())
        if demand <= memory or (best is not None and demand / memory <= best[0]):
            continue
        weights = [0] * len(idx.names)
        footprints = [0] * len(idx.names)
        for i in on:  # integer floors: no float rounding can over-count a node
            weights[i] = idx.weights[i] * BUDGET_UNITS // memory
            footprints[i] = footprint[i] * BUDGET_UNITS // memory
        best = (demand / memory, MemoryBudget(k, tuple(weights), tuple(footprints)))
    return best[1] if best is not None else None


def levels(budget: MemoryBudget, idx: ProblemIndex, most: int = MAX_LEVELS) -> list[Level]:
    """At most ``most`` footprint levels (one at least), lowest first; none below what a
    node pinned to the device holds."""
    k = budget.device
    on = [i for i in range(len(idx.names)) if k in idx.allowed[i]]
    forced = max((budget.footprints[i] for i in on if idx.allowed[i] == [k]), default=0)
    values = sorted({budget.footprints[i] for i in on if budget.footprints[i] >= forced})
    # Too many levels: the lowest values share the first one (it bans the most nodes, so
    # its bound is the highest and merging loses the least).
    first = max(1, len(values) - max(1, most) + 1)
    groups = [values[:first]] + [[v] for v in values[first:]]
    return [Level(frozenset(i for i in on if budget.footprints[i] > group[-1]),
                  BUDGET_UNITS - group[0]) for group in groups]
