"""CP-SAT relaxation of the evaluator's latency: its proven bound is a valid lower bound.

The schedule model in ``cpsat`` approximates the evaluator (it charges a call overhead per
entry node, possibly more often than there are calls), so its bound proves nothing about
plans. This model keeps only what every evaluator schedule satisfies, with integer device
choices:

* one allowed device per node; weights fit in each device's memory;
* a node starts after its device's call overhead; a consumer starts after its producer ends,
  and on another device also after the copy and its own call's overhead
  (``start[v] >= end[u] + transfer(a, b) + overhead(b)`` when ``u`` is on ``a``, ``v`` on ``b``);
* nodes on one processor never overlap, and each device a processor uses spends at least one
  call overhead on it (a floating interval);
* the makespan covers every node's end.

Durations are rounded down to ticks, so the rounded optimum never exceeds the real one and
``best_objective_bound * tick`` is a bound. On the small zoo models CP-SAT closes this model
in well under a second; on branchy graphs it is far stronger than the LP bounds in ``bounds``
because a branch moved to another device pays its copies in and out in full.
"""

from __future__ import annotations

import math

from partitioner.problem import Problem
from partitioner.solver.cpsat import AssignmentModel, ModelResult, run

#: Largest problem (nodes) the relaxation is solved for; beyond it the model is too big to
#: prove anything within a share of the time limit.
RELAXATION_NODE_LIMIT = 1_000


class RelaxationModel(AssignmentModel):
    """Makespan of the relaxed schedule described in the module docstring."""

    def __init__(self, problem: Problem, tick_s: float) -> None:
        # Weights-only memory is implied by the evaluator's peak (weights + workspace + live).
        super().__init__(problem, tick_s, memory="weights")
        idx, m = self.idx, self.model
        n = len(idx.names)
        cost = [{k: self.floor(idx.cost[i][k] or 0.0) for k in self.x[i]} for i in range(n)]
        overhead = [self.floor(o) for o in idx.overhead]
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
            if overhead[k]:
                at = m.new_int_var(0, horizon, f"oh[{k}]")
                per_group.setdefault(idx.group[k], []).append(
                    m.new_optional_fixed_size_interval_var(at, overhead[k], flag, f"ohv[{k}]"))
        for i in range(n):
            for k, xv in self.x[i].items():
                m.add_implication(xv, used[k])
                m.add(start[i] >= overhead[k]).only_enforce_if(xv)
                per_group.setdefault(idx.group[k], []).append(
                    m.new_optional_interval_var(start[i], cost[i][k], end[i], xv, f"iv{i},{k}"))
        for ivs in per_group.values():
            m.add_no_overlap(ivs)
        for (u, v), pairs in delay.items():
            m.add(start[v] >= end[u])
            for (a, b), ticks in pairs.items():
                if ticks > 0:
                    m.add(start[v] >= end[u] + ticks).only_enforce_if(self.x[u][a],
                                                                     self.x[v][b])
        makespan = m.new_int_var(0, horizon, "makespan")
        for i in range(n):
            if not idx.succs[i]:
                m.add(makespan >= end[i])
        # Redundant energetic rows: a processor's work and overheads fit before the makespan
        # (they give CP-SAT's linear relaxation the load-balancing bound from the start).
        for g in set(idx.group):
            ks = [k for k in range(len(idx.devices)) if idx.group[k] == g]
            m.add(makespan >= sum(overhead[k] * used[k] for k in ks)
                  + sum(cost[i][k] * self.x[i][k] for i in range(n) for k in ks if k in self.x[i]))
        m.minimize(makespan)

    def floor(self, seconds: float) -> int:
        """Seconds to ticks, rounded down (keeps the model a relaxation)."""
        return int(math.floor(seconds / self.tick_s))

    def _max_partitions(self) -> None:
        # The entry count over-counts calls, so a partition limit would cut real plans off.
        return


def run_relaxation(problem: Problem, tick_s: float, hint: list[int] | None,
                   time_limit_s: float, seed: int, workers: int) -> ModelResult:
    """Solve the relaxation on the uncoarsened ``problem``; ``bound_s`` is a valid bound."""
    model = RelaxationModel(problem, tick_s)
    if hint is not None:
        model.hint_assignment(hint)
    return run(model, time_limit_s=time_limit_s, seed=seed, workers=workers, unit_s=tick_s,
               keep=1)
