"""CP-SAT serial-latency model: the latency objective for clusters with at most two processors.

Under the executor's semantics (a runner call starts when every call it reads from has
finished), calls on one processor never overlap, and on two processors they overlap only
where the graph forks into branches placed on both devices (``split_into_partitions`` cuts
there). For chain-like graphs latency is then close to the sum of

    node costs on their devices + call overhead per entry (see ``cpsat``) +
    transfer time of every cut edge (device pair aware)

which is linear, so CP-SAT proves it quickly with a tight LP bound. It is still an
approximation (sources may overlap; a call waits for its slowest input, not the sum), so
candidates are re-scored by the evaluator, and the reported bound stays the relaxation bound.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from partitioner.solver.models.cpsat import AssignmentModel
from partitioner.solver.problem import Problem


class SerialModel(AssignmentModel):
    """Minimise total work + overheads + transfers (calls run one after another)."""

    def __init__(self, problem: Problem, tick_s: float, memory: str = "safe") -> None:
        super().__init__(problem, tick_s, memory)
        idx, m = self.idx, self.model
        terms: list[cp_model.LinearExprT] = []
        for i in range(len(idx.names)):
            for k, xv in self.x[i].items():
                d = self.ticks(idx.cost[i][k] or 0.0)
                oh = self.ticks(idx.overhead[k])
                if d:
                    terms.append(d * xv)
                if oh:
                    terms.append(self.entry_overhead(i, k, oh))
        terms += [t * cut for _, _, t, cut in self.cut_transfers()]
        m.minimize(sum(terms))
