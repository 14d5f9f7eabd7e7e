"""CP-SAT relaxation of the throughput and cost objectives: it proves their bounds.

The throughput model (``throughput``) and the cost schedule (``cpsat.ScheduleModel``) count
some things more often than the evaluator does: a tensor sent to two consumers, one overhead
per entry. So their bounds do not bound the evaluator. This model counts only what every plan
pays:

* Busy time of device k is at least its nodes' costs plus its call overhead times its
  calls: at least one as soon as k runs any node, and at least its call levels
  (``relaxation.call_levels``: a path that leaves k and comes back needs another call) on
  up to ``CALL_LEVEL_NODE_LIMIT`` nodes.
* Time on link (a, b) is at least the transfer of each tensor that a producer on a sends to
  some consumer on b, counted once per tensor (the evaluator deduplicates tensors per link).
  Where that transfer occupies an endpoint (``ProblemIndex.occupies``: no copy engine), the
  same time counts in the endpoint's busy time, as the evaluator counts it.
* Memory (``weights`` mode) is weights + the largest workspace + the largest live set, a
  floor of the evaluator's peak.

Throughput minimises the busiest processor or link (the evaluator's ``stage_s``). Cost
minimises price-weighted busy time, with every processor's busy time within the latency
target: a processor's calls run one after another inside the makespan.

Durations and prices are rounded down to integers, so the optimum is a lower bound on the
evaluator's objective. There is no partition limit (it would need exact call counts).
"""

from __future__ import annotations

import math

from ortools.sat.python import cp_model

from partitioner.solver.models.cpsat import AssignmentModel, ModelResult, run
from partitioner.solver.models.relaxation import call_levels
from partitioner.solver.problem import Problem

#: Call levels are added up to this many nodes (their variables grow with nodes x devices).
CALL_LEVEL_NODE_LIMIT = 300

#: Integer scale of the price weights: rounding them down costs at most one part in this.
PRICE_SCALE = 1_000_000


class LoadRelaxation(AssignmentModel):
    """Busy time per processor and link, counted from below (module docstring)."""

    #: Measured on this 2-core machine shared with other jobs: 0.06-0.23 deterministic
    #: seconds per second (a random 235-node problem), 0.1 (inception on cpu+l4); at 0.2
    #: the clock ended most of these solves (``clock_stopped``).
    deterministic_per_s = 0.07

    def __init__(self, problem: Problem, tick_s: float) -> None:
        super().__init__(problem, tick_s, memory="weights")
        idx, m = self.idx, self.model
        self.busy: dict[int, list[cp_model.LinearExprT]] = {}
        overheads = [self.floor(o) for o in idx.overhead]
        levels = (call_levels(self, overheads) if len(idx.names) <= CALL_LEVEL_NODE_LIMIT
                  else {})
        for k, dev in enumerate(idx.devices):
            on_k = [row[k] for row in self.x if k in row]
            if not on_k:
                continue
            terms: list[cp_model.LinearExprT] = [
                self.floor(idx.cost[i][k] or 0.0) * row[k]
                for i, row in enumerate(self.x) if k in row]
            overhead = overheads[k]
            if overhead:
                used = m.new_bool_var(f"used[{dev}]")
                m.add_max_equality(used, on_k)
                calls = levels.get(k)
                if calls is not None:
                    m.add(calls >= used)
                terms.append(overhead * (calls if calls is not None else used))
            self.busy[k] = terms
        self.links: dict[tuple[int, int], list[cp_model.LinearExprT]] = {}
        self.link_ticks = 0  # all link terms' coefficients: an upper end for the stage
        for (u, key), (nbytes, consumers) in self._tensors().items():
            for a, xa in self.x[u].items():
                for b in {b for v in consumers for b in self.x[v] if b != a}:
                    t = self.floor(idx.transfer(a, b, nbytes))
                    if t <= 0:
                        continue
                    sent = m.new_bool_var(f"sent[{u},{key},{a},{b}]")
                    for v in consumers:
                        if b in self.x[v]:
                            m.add(sent >= xa + self.x[v][b] - 1)
                    self.links.setdefault((a, b), []).append(t * sent)
                    self.link_ticks += t
                    for d in idx.occupied(a, b):  # a copy without a copy engine
                        self.busy.setdefault(d, []).append(t * sent)

    def minimise_stage(self) -> None:
        """Throughput: the busiest processor or link."""
        idx, m = self.idx, self.model
        upper = sum(self.floor(max((c or 0.0) for c in row)) for row in idx.cost)
        upper += sum(self.floor(o) for o in idx.overhead) + self.link_ticks
        stage = m.new_int_var(0, upper, "stage")
        for terms in [*self._processor_loads(), *self.links.values()]:
            m.add(stage >= sum(terms))
        m.minimize(stage)

    def minimise_cost(self, target_s: float) -> float:
        """Cost: price-weighted busy time, every processor busy within ``target_s``.

        Returns:
            The price per 1,000 inferences of one objective unit (0 when every device is
            free: the objective is then 0).
        """
        m = self.model
        # Busy time in floored ticks is at most the real one: within the floored target.
        limit = self.floor(target_s * (1 + 1e-9))
        for terms in self._processor_loads():
            m.add(sum(terms) <= limit)
        prices = [d.price_per_hour for d in self.problem.cluster.devices]
        top = max(prices)
        if top <= 0:
            return 0.0
        weights = [math.floor(p / top * PRICE_SCALE) for p in prices]
        m.minimize(sum(weights[k] * sum(terms) for k, terms in self.busy.items()))
        return top / 3600.0 * 1000.0 * self.tick_s / PRICE_SCALE

    def _processor_loads(self) -> list[list[cp_model.LinearExprT]]:
        """The busy terms of each processor (devices sharing one add up)."""
        loads: dict[int, list[cp_model.LinearExprT]] = {}
        for k, terms in self.busy.items():
            loads.setdefault(self.idx.group[k], []).extend(terms)
        return list(loads.values())

    def _tensors(self) -> dict[tuple[int, str], tuple[int, list[int]]]:
        """(producer, tensor) -> (smallest bytes any consumer reads, consumers)."""
        out: dict[tuple[int, str], tuple[int, list[int]]] = {}
        for v, preds in enumerate(self.idx.preds):
            for s, nbytes, key in preds:
                least, consumers = out.get((s, key), (nbytes, []))
                out[(s, key)] = (min(least, nbytes), [*consumers, v])
        return out

    def _max_partitions(self) -> None:
        return  # not modelled: see the module docstring


def run_load_relaxation(problem: Problem, tick_s: float, hint: list[int] | None,
                        time_limit_s: float, seed: int, workers: int,
                        deadline: float | None = None) -> ModelResult:
    """Bound ``problem``'s throughput or cost objective from below (``bound_s``, in the
    objective's unit); every solution found is returned too."""
    model = LoadRelaxation(problem, tick_s)
    unit = tick_s
    if problem.objective == "cost":
        assert problem.latency_target_s is not None
        unit = model.minimise_cost(problem.latency_target_s)
        if unit == 0.0:
            return ModelResult("OPTIMAL", bound_s=0.0)  # every device free: cost 0 is a floor
    else:
        model.minimise_stage()
    if hint is not None:
        model.hint_assignment(hint)
    return run(model, time_limit_s=time_limit_s, seed=seed, workers=workers, unit_s=unit,
               keep=1, deadline=deadline)
