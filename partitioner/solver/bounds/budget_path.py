"""Cheapest path through stages under an additive whole-unit budget (joins segment bounds).

Each stage offers options ``src -> dst`` that add a value and use whole units of one budget.
A path takes one option per stage, each starting in the state the last one ended in (the
first starts in state None), and uses at most ``capacity`` units in all. A dynamic program
over (state, units used), vectorised over units: O(stages x options x capacity).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Option:
    """One way through a stage: from state ``src`` to ``dst``, adding ``value``."""

    src: Hashable
    dst: Hashable
    units: int
    value: float


def cheapest_path(stages: Sequence[Sequence[Option]], capacity: int
                  ) -> tuple[float, list[int]] | None:
    """The least total value of a path within ``capacity`` units.

    Returns:
        (total value, index of the chosen option in each stage), or None when no path fits.
    """
    width = capacity + 1
    # reach[state][u]: least value reaching ``state`` with exactly u units used.
    reach: dict[Hashable, np.ndarray] = {None: np.where(np.arange(width) == 0, 0.0, np.inf)}
    picks: list[dict[Hashable, np.ndarray]] = []
    for options in stages:
        best: dict[Hashable, np.ndarray] = {}
        pick: dict[Hashable, np.ndarray] = {}
        for j, opt in enumerate(options):
            before = reach.get(opt.src)
            if before is None or opt.units > capacity:
                continue
            value = np.full(width, np.inf)
            value[opt.units:] = before[:width - opt.units] + opt.value
            if opt.dst not in best:
                best[opt.dst], pick[opt.dst] = value, np.full(width, j)
                continue
            better = value < best[opt.dst]
            best[opt.dst][better] = value[better]
            pick[opt.dst][better] = j
        reach = best
        picks.append(pick)
    if not reach:
        return None
    state = min(reach, key=lambda s: reach[s].min())
    used = int(reach[state].argmin())
    total = float(reach[state][used])
    if total == np.inf:
        return None
    chosen = []
    for options, pick in zip(reversed(stages), reversed(picks), strict=True):
        j = int(pick[state][used])
        chosen.append(j)
        used -= options[j].units
        state = options[j].src
    return total, chosen[::-1]
