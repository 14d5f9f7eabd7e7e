"""CP-SAT placement of layer groups per phase (the model of ``problem.py``'s evaluator).

Variables, for group ``g`` and device ``d``:

* ``p[g,d]`` / ``q[g,d]``: the group's prefill / decode device (exactly one each; co-located
  plans tie ``p = q``); ``h[g,d] >= p, q``: the device holds the group's weights;
  ``u[d] >= h[g,d]``: the device is used (and paid for).
* Transitions as flows, which keep the LP relaxation tight: ``tp[g,a,b]`` (prefill group g on a,
  g+1 on b; ``sum_b tp[g,a,b] = p[g,a]``, ``sum_a tp[g,a,b] = p[g+1,b]``), the same ``tq`` for
  decode, ``ho[g,a,b]`` for the KV hand-off (prefill on a, decode on b) and ``tc[a,b]`` for the
  token's trip from the last group back to the first.
* Memory per device: weights of held groups + decode KV + the prompt KV of groups prefilled
  for another device (``p - ho[g,d,d]``) + the largest workspace ``ws[d] >= h[g,d] x ws_g``.

Times are integer ticks (``tick_s`` = the reference / 10^6) and bytes and prices integers, all
rounded *down*: the model never overstates a placement, so its proven bound is a lower bound on
the evaluator's optimum (a relaxation). Its solutions are re-scored by ``problem.evaluate``.
Objectives: ``ttft``, ``tpot`` (mean step), ``request`` (TTFT + (new - 1) TPOT: tokens/s at a
fixed batch), ``cost`` (price per hour of used devices x request time, CP-SAT's product).

Identical devices (same spec and links, e.g. a cluster file's ``count``) are interchangeable;
symmetry is broken by taking them in order of first use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from partitioner.generation.problem import GenerationProblem, Matrix

#: Ticks the reference time is scaled to.
TICKS_PER_REFERENCE = 1_000_000
#: Transfers into a device that differ by less than this fraction of the reference time are
#: modelled as one cost (the cheapest), see ``_destination_only``.
ALIKE = 1e-5
#: Price resolution (USD per hour) in the cost objective.
PRICE_UNIT = 1e-3
MODEL_OBJECTIVES = ("ttft", "tpot", "tpot_worst", "request", "cost")


@dataclass(frozen=True)
class PlacementResult:
    """One CP-SAT solve.

    Attributes:
        status: CP-SAT status name.
        solutions: ``(prefill devices, decode devices)`` of the solver's best few, best last.
        objective / bound: The model's objective and proven bound, in seconds (``cost``:
            USD/hour x seconds); None without a solution.
        wall_s: Wall time of the solve.
    """

    status: str
    solutions: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    objective: float | None
    bound: float | None
    wall_s: float


def device_types(problem: GenerationProblem, device_specs: Sequence[object]) -> list[list[int]]:
    """Device indices by type: interchangeable devices (same spec apart from id, processor
    and description, same transfers to every other device) share a type; in cluster order."""
    def signature(d: int) -> tuple[object, ...]:
        spec = device_specs[d]
        fields = tuple(sorted((k, repr(v)) for k, v in vars(spec).items()
                              if k not in ("id", "processor", "description")))
        others = tuple((problem.prefill_cut_s[d][e], problem.prefill_cut_s[e][d])
                       for e in range(len(problem.devices)) if e != d)
        return fields, tuple(sorted(others))
    classes: dict[tuple[object, ...], list[int]] = {}
    for d in range(len(problem.devices)):
        classes.setdefault(signature(d), []).append(d)
    return list(classes.values())


def canonical(prefill: Sequence[int], decode: Sequence[int], symmetric: Sequence[Sequence[int]]
              ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The same placement with interchangeable devices relabelled in order of first use (the
    form the model's symmetry breaking admits)."""
    relabel: dict[int, int] = {}
    for cls in symmetric:
        members = set(cls)
        order: list[int] = []
        for a, b in zip(prefill, decode, strict=True):
            for d in sorted({a, b}):
                if d in members and d not in order:
                    order.append(d)
        order += [d for d in cls if d not in order]
        relabel.update(zip(order, cls, strict=True))
    return (tuple(relabel.get(d, d) for d in prefill), tuple(relabel.get(d, d) for d in decode))


def _lsum(terms: Iterable[Any]) -> cp_model.LinearExpr:
    """A sum of linear terms as one CP-SAT expression."""
    return cp_model.LinearExpr.sum(list(terms))


def _destination_only(matrix: Matrix, tolerance: float) -> bool:
    """Whether a move's cost depends (within ``tolerance`` seconds) only on where it goes, as
    on a fleet joined by one network: then one "same device" Boolean per device replaces the
    D x D flow, charged the cheapest source's cost (a relaxation: the bound stays valid)."""
    D = len(matrix)
    for b in range(D):
        into = [matrix[a][b] for a in range(D) if a != b]
        if into and max(into) - min(into) > tolerance:
            return False
    return True


def _into(matrix: Matrix, b: int) -> float:
    return min((matrix[a][b] for a in range(len(matrix)) if a != b), default=0.0)


class PlacementModel:
    """The CP-SAT model of one :class:`GenerationProblem` for one objective."""

    def __init__(self, problem: GenerationProblem, objective: str, *, colocated: bool = False,
                 symmetric: Sequence[Sequence[int]] = (), reference_s: float | None = None,
                 allowed: Sequence[int] | None = None):
        if objective not in MODEL_OBJECTIVES:
            raise ValueError(f"objective {objective!r} not in {MODEL_OBJECTIVES}")
        self.problem, self.objective, self.colocated = problem, objective, colocated
        self.symmetric = [list(c) for c in symmetric]
        pr = problem
        G, D = len(pr.groups), len(pr.devices)
        ref = reference_s or max(1e-9, sum(max(row) for row in pr.prefill_s)
                                 + sum(max(row) for row in pr.decode_mean_s))
        self.tick_s = ref / TICKS_PER_REFERENCE
        t = self._ticks
        m = self.model = cp_model.CpModel()
        self.p = [[m.new_bool_var(f"p{g}_{d}") for d in range(D)] for g in range(G)]
        self.q = self.p if colocated else [[m.new_bool_var(f"q{g}_{d}") for d in range(D)]
                                           for g in range(G)]
        for g in range(G):
            m.add_exactly_one(self.p[g])
            if not colocated:
                m.add_exactly_one(self.q[g])
        h = self.p if colocated else [[m.new_bool_var(f"h{g}_{d}") for d in range(D)]
                                      for g in range(G)]
        self.u = [m.new_bool_var(f"u{d}") for d in range(D)]
        for d in range(D):
            if allowed is not None and d not in allowed:
                m.add(self.u[d] == 0)
        for g in range(G):
            for d in range(D):
                # Linear, not clauses, so that CP-SAT's LP relaxation sees them.
                if not colocated:
                    m.add(h[g][d] >= self.p[g][d])
                    m.add(h[g][d] >= self.q[g][d])
                m.add(self.u[d] >= h[g][d])

        def link(src: list[cp_model.IntVar], dst: list[cp_model.IntVar], name: str,
                 matrices: Sequence[Matrix]) -> tuple[list[cp_model.LinearExprT],
                                                      list[cp_model.IntVar]]:
            """The cost of moving from ``src``'s device to ``dst``'s (one expression per
            matrix) and the "same device" indicators."""
            if all(_destination_only(mx, ALIKE * ref) for mx in matrices):
                same = [m.new_bool_var(f"{name}_same{d}") for d in range(D)]
                for d in range(D):
                    m.add(same[d] <= src[d])
                    m.add(same[d] <= dst[d])
                    m.add(same[d] >= src[d] + dst[d] - 1)
                return [_lsum(t(_into(mx, b)) * (dst[b] - same[b]) for b in range(D))
                        for mx in matrices], same
            f = [[m.new_bool_var(f"{name}_{a}_{b}") for b in range(D)] for a in range(D)]
            for a in range(D):
                m.add(_lsum(f[a]) == src[a])
            for b in range(D):
                m.add(_lsum(f[a][b] for a in range(D)) == dst[b])
            return [_lsum(t(mx[a][b]) * f[a][b] for a in range(D) for b in range(D) if a != b)
                    for mx in matrices], [f[d][d] for d in range(D)]

        prefill_cuts = _lsum(link(self.p[g], self.p[g + 1], f"tp{g}", [pr.prefill_cut_s])[0][0]
                           for g in range(G - 1))
        decode_cuts = [link(self.q[g], self.q[g + 1], f"tq{g}", [pr.decode_cut_s])[0][0]
                       for g in range(G - 1)] if not colocated else [
            link(self.p[g], self.p[g + 1], f"tq{g}", [pr.decode_cut_s])[0][0]
            for g in range(G - 1)]
        token_cut = link(self.q[G - 1], self.q[0], "tc", [pr.token_cut_s])[0][0]
        handoffs = None if colocated else [link(self.p[g], self.q[g], f"ho{g}",
                                                [pr.handoff_s[g]]) for g in range(G)]

        ttft = _lsum([_lsum(t(pr.overhead_s[d]) * self.p[0][d] for d in range(D)),
                      _lsum(t(pr.prefill_s[g][d]) * self.p[g][d]
                            for g in range(G) for d in range(D)),
                      prefill_cuts])
        if handoffs is not None:
            ttft = _lsum([ttft, *(cost[0] for cost, _ in handoffs)])

        def step(times: Sequence[Sequence[float]]) -> cp_model.LinearExprT:
            return _lsum([_lsum(t(pr.overhead_s[d]) * self.q[0][d] for d in range(D)),
                          _lsum(t(times[g][d]) * self.q[g][d]
                                for g in range(G) for d in range(D)),
                          *decode_cuts, token_cut])

        tpot = step(pr.decode_mean_s)
        tpot_worst = step(pr.decode_worst_s)
        request = _lsum([ttft, tpot * (pr.workload.new - 1)])
        self.expressions = {"ttft": ttft, "tpot": tpot, "tpot_worst": tpot_worst,
                            "request": request}

        # Memory (bytes rounded so that the model never overstates what a device holds).
        for d in range(D):
            ws = m.new_int_var(0, int(max(pr.workspace_bytes)), f"ws{d}")
            for g in range(G):
                m.add(ws >= int(pr.workspace_bytes[g]) * h[g][d])
            load = _lsum(int(pr.weight_bytes[g]) * h[g][d] + int(pr.kv_decode_bytes[g])
                         * self.q[g][d] for g in range(G))
            if handoffs is not None:
                load = _lsum([load, *(int(pr.kv_prefill_bytes[g])
                                      * (self.p[g][d] - handoffs[g][1][d]) for g in range(G))])
            m.add(load + ws <= int(pr.memory[d]) + 1)  # + 1: rounding down never cuts a fit
            # A rounded cardinality cut (groups weigh nearly the same): at most as many
            # groups as the lightest fits times; it tightens the LP bound of the packing.
            lightest = min(pr.weight_bytes) or 1.0
            room = int((pr.memory[d] - min(pr.workspace_bytes)) // lightest)
            if room < G:
                m.add(_lsum(h[g][d] for g in range(G)) <= max(0, room))
            # The same for the groups it decodes, which also hold their KV cache.
            decoded = min(w + kv for w, kv in zip(pr.weight_bytes, pr.kv_decode_bytes,
                                                  strict=True)) or 1.0
            room = int((pr.memory[d] - min(pr.workspace_bytes)) // decoded)
            if room < G:
                m.add(_lsum(self.q[g][d] for g in range(G)) <= max(0, room))

        # SLOs (times rounded down: only ever relaxed; the evaluator has the last word).
        targets = pr.targets
        if targets.ttft_slo_s is not None:
            m.add(ttft <= math.ceil(targets.ttft_slo_s / self.tick_s))
        if targets.tpot_slo_s is not None:
            m.add(tpot_worst <= math.ceil(targets.tpot_slo_s / self.tick_s))

        # Interchangeable devices are taken in order of first use: instance k+1 may serve
        # group g only if instance k serves some group <= g (relabelling any placement so
        # keeps it feasible and equally good).
        for cls in symmetric:
            for a, b in zip(cls, cls[1:], strict=False):
                m.add(self.u[b] <= self.u[a])
                for g in range(G):
                    m.add(h[g][b] <= _lsum(h[k][a] for k in range(g)))

        self.price_scale = 1.0
        if objective == "cost":
            # Price per hour of the used devices x request time, as CP-SAT's own product: its
            # bound then grows with both factors' bounds as the search fixes devices.
            prices = [int(math.floor(pr.price_per_hour[d] / PRICE_UNIT)) for d in range(D)]
            def most(matrix: Sequence[Sequence[float]]) -> int:
                return t(max(max(row) for row in matrix)) + 1
            ttft_max = (sum(most([row]) for row in pr.prefill_s) + G * most(pr.prefill_cut_s)
                        + sum(most(hm) for hm in pr.handoff_s) + most([pr.overhead_s]))
            step_max = (sum(most([row]) for row in pr.decode_mean_s) + G * most(pr.decode_cut_s)
                        + most(pr.token_cut_s) + most([pr.overhead_s]))
            horizon = ttft_max + (pr.workload.new - 1) * step_max
            price = m.new_int_var(0, sum(prices), "price")
            m.add(price == _lsum(prices[d] * self.u[d] for d in range(D)))
            req = m.new_int_var(0, horizon, "request")
            m.add(req == request)
            cost = m.new_int_var(0, sum(prices) * horizon, "cost")
            m.add_multiplication_equality(cost, [price, req])
            self.price_scale = PRICE_UNIT
            m.minimize(cost)
        else:
            m.minimize(self.expressions[objective])

    def cap(self, expression: str, seconds: float) -> None:
        """Add ``expression <= seconds`` (rounded up: a placement the evaluator scores at
        ``seconds`` stays feasible), for a second, lexicographic stage."""
        self.model.add(self.expressions[expression] <= math.ceil(seconds / self.tick_s))

    def _ticks(self, seconds: float) -> int:
        return int(math.floor(seconds / self.tick_s))

    def hint(self, prefill: Sequence[int], decode: Sequence[int]) -> None:
        prefill, decode = canonical(prefill, decode, self.symmetric)
        for g, (a, b) in enumerate(zip(prefill, decode, strict=True)):
            for d in range(len(self.problem.devices)):
                self.model.add_hint(self.p[g][d], d == a)
                if not self.colocated:
                    self.model.add_hint(self.q[g][d], d == b)

    def extract(self, value: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
        def pick(rows: list[list[cp_model.IntVar]]) -> tuple[int, ...]:
            return tuple(next(d for d, v in enumerate(row) if value(v)) for row in rows)  # type: ignore[operator]
        return pick(self.p), pick(self.q)

    def solve(self, *, time_limit_s: float, seed: int = 0, workers: int = 1,
              keep: int = 5) -> PlacementResult:
        """Solve with a fixed seed and worker count; keep the solver's final solution pool."""
        solver = cp_model.CpSolver()
        params = solver.parameters
        params.random_seed = seed
        params.num_workers = max(1, workers)
        # One LP-driven worker with the full linearisation proved 80-layer fleets optimal in
        # seconds where two or four portfolio workers stalled at a 30% gap (the LP bound is
        # what closes a packing of near-identical groups).
        params.linearization_level = 2
        params.max_time_in_seconds = max(0.05, time_limit_s)
        params.max_deterministic_time = max(0.05, time_limit_s)
        params.fill_additional_solutions_in_response = True
        params.solution_pool_size = max(params.solution_pool_size, 2 * keep)
        t0 = time.perf_counter()
        status = solver.solve(self.model)
        wall = time.perf_counter() - t0
        name = solver.status_name(status)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return PlacementResult(name, (), None, None, wall)
        scale = self.tick_s * self.price_scale
        sols = []
        for sol in solver.response_proto.additional_solutions:
            values = sol.values
            picked = self.extract(lambda v, values=values: bool(values[v.index]))
            if picked not in sols:
                sols.append(picked)
        best = self.extract(solver.boolean_value)
        sols = [s for s in sols if s != best][: keep - 1] + [best]
        return PlacementResult(name, tuple(sols), solver.objective_value * scale,
                               solver.best_objective_bound * scale, wall)
