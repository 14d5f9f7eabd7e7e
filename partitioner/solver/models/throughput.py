"""CP-SAT throughput model: minimise the pipelined stage time (busiest processor or link).

Uses the assignment core of ``partitioner.solver.models.cpsat`` (exactly one device per node,
memory, pins, max_partitions, entry markers for per-call overhead). No precedence: with a stream of
inputs every device and link works on a different input at once, so the stage time is

    max( max_processor sum_{d on it} (node costs + overhead * entries on d
                                      + transfers of cut edges that occupy d),
         max_link   sum_{edges cut from a to b} transfer(a, b, bytes) )

which matches the evaluator's ``stage_s`` up to the entry/partition approximation and the
per-edge (rather than per-tensor) transfer count. A cut edge whose transfer occupies its
endpoints (``ProblemIndex.occupies``: devices without copy engines) adds its time to their
processors' loads as well as to the link's.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from partitioner.solver.models.cpsat import AssignmentModel
from partitioner.solver.problem import Problem


class ThroughputModel(AssignmentModel):
    """Load-balancing model minimising the stage time."""

    #: Measured on this 2-core machine shared with other jobs: 0.12 deterministic seconds
    #: per second on inception (cpu+l4), 0.3-0.7 on a random 418-node problem; at the
    #: assignment core's 0.2 the clock ended inception's search stage.
    deterministic_per_s = 0.1

    def __init__(self, problem: Problem, tick_s: float, memory: str = "safe") -> None:
        super().__init__(problem, tick_s, memory)
        idx, m = self.idx, self.model
        loads: dict[int, list[cp_model.LinearExprT]] = {}
        upper = 0
        for i in range(len(idx.names)):
            worst = 0
            for k, xv in self.x[i].items():
                d = self.ticks(idx.cost[i][k] or 0.0)
                oh = self.ticks(idx.overhead[k])
                g = idx.group[k]
                loads.setdefault(g, []).append(d * xv)
                if oh:
                    loads[g].append(self.entry_overhead(i, k, oh))
                worst = max(worst, d + oh)
            upper += worst
        links: dict[tuple[int, int], list[cp_model.LinearExprT]] = {}
        for a, b, t, cut in self.cut_transfers():
            links.setdefault((a, b), []).append(t * cut)
            for d in idx.occupied(a, b):
                loads.setdefault(idx.group[d], []).append(t * cut)
            upper += t * (1 + len(idx.occupied(a, b)))
        self.stage = m.new_int_var(0, upper + 1, "stage")
        for terms in [*loads.values(), *links.values()]:
            m.add(self.stage >= sum(terms))
        m.minimize(self.stage)
