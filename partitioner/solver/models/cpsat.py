"""CP-SAT placement models (assignment core, latency/cost schedule) and the solve loop.

Model (flexible job shop), on a possibly coarsened Problem, time in integer ticks
(``tick_s`` chosen so the reference latency is about 10^6 ticks):

* ``x[n,d]`` Boolean only for allowed pairs (supported, not forbidden, pinned device only);
  exactly one per node.
* ``z[e,d]`` "both ends of edge e on d" (``z <= x[u,d]``, ``z <= x[v,d]``); the minimiser sets
  it wherever it may, so ``1 - sum_d z[e,d]`` marks a cut edge.
* ``entry[n]`` per-call overhead marker: 1 for sources, ``>= 1 - same(e)`` for every in-edge.
  A node with an entry pays its device's ``call_overhead_s``. This approximates the
  evaluator, which pays the overhead once per partition from ``split_into_partitions``; the
  evaluator stays the source of truth and every candidate is re-scored with it.
* ``max_partitions`` bounds ``sum(entry of non-sources) + devices used by sources``.
* Memory (safe mode): weights + outputs of nodes placed on d + bytes received on d over cut
  edges + the largest workspace <= capacity: an upper bound on the evaluator's peak, so a
  model solution always fits. ``weights`` mode keeps only what the evaluator's peak surely
  holds: weights + the largest workspace + the largest ``ProblemIndex.live`` of a
  node on d (used when the safe model is infeasible, and by the relaxation; candidates are
  then checked by the evaluator).
* Schedule: optional interval per (n,d) of size cost + overhead*entry, NoOverlap per processor
  (devices sharing a processor share one NoOverlap), ``end[u] <= start[v]`` and, for every
  device pair (a, b), ``start[v] >= end[u] + transfer(a, b)`` enforced by ``x[u,a] & x[v,b]``.
* Objective latency: makespan. Cost: price-weighted busy time subject to makespan <= target.
  Busy time includes the copies that occupy a device without a copy engine
  (``occupying_copies``), once per tensor and destination device.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

from partitioner.solver.index import ProblemIndex, edge_pairs, index_of
from partitioner.solver.problem import Problem

log = logging.getLogger(__name__)

#: Ticks the reference latency is scaled to.
TICKS_PER_REFERENCE = 1_000_000


@dataclass
class ModelResult:
    """Outcome of one CP-SAT run on a (coarse) problem.

    Attributes:
        status: CP-SAT status name.
        solutions: Device index per node of the best few solutions (the solver's final
            pool), last = best.
        objective_s: Best model objective in seconds (price units for cost), or None.
        bound_s: Proven model bound in the same unit, or None.
        wall_s: Wall time of the solve.
        used_s: The part of the time limit used, read from CP-SAT's deterministic time:
            unlike the wall time, the same on every run, so a later model's share of the
            unused time is too.
        clock_stopped: Whether the wall clock, not the deterministic limit, ended the
            search (a rerun may then find other solutions).
        bound_is_relaxation: Whether ``bound_s`` also bounds the evaluator's objective.
    """

    status: str
    solutions: list[list[int]] = field(default_factory=list)
    objective_s: float | None = None
    bound_s: float | None = None
    wall_s: float = 0.0
    used_s: float = 0.0
    clock_stopped: bool = False
    bound_is_relaxation: bool = True


class AssignmentModel:
    """The assignment core shared by the latency, cost and throughput models."""

    #: CP-SAT deterministic time a solve gets per second of its time limit. Deterministic
    #: time runs slower than the clock, by a factor that depends on the model: measured on
    #: the zoo on this 2-core machine, 0.2-0.6 per second on the serial model (when it does
    #: not prove its optimum at once), 0.12-0.36 on the schedule model and 0.07-0.2 on the
    #: relaxations. Set below the least, so that the deterministic limit, not the clock, ends
    #: a solve and the same input gives the same plan.
    deterministic_per_s = 0.2

    def __init__(self, problem: Problem, tick_s: float, memory: str = "safe") -> None:
        self.problem = problem
        self.idx: ProblemIndex = index_of(problem)
        self.tick_s = tick_s
        self.model = cp_model.CpModel()
        idx, m = self.idx, self.model
        self.x: list[dict[int, cp_model.IntVar]] = []
        for i, name in enumerate(idx.names):
            row = {k: m.new_bool_var(f"x[{name},{idx.devices[k]}]") for k in idx.allowed[i]}
            m.add_exactly_one(row.values())
            self.x.append(row)
        self.pairs = edge_pairs(idx)
        self.same: dict[tuple[int, int], cp_model.LinearExprT] = {}
        self.z: dict[tuple[int, int, int], cp_model.IntVar] = {}
        for (u, v) in self.pairs:
            common = [k for k in self.x[u] if k in self.x[v]]
            zs = []
            for k in common:
                z = m.new_bool_var(f"z[{u},{v},{k}]")
                m.add_implication(z, self.x[u][k])
                m.add_implication(z, self.x[v][k])
                self.z[(u, v, k)] = z
                zs.append(z)
            self.same[(u, v)] = sum(zs) if zs else 0
        self.sources = [i for i in range(len(idx.names)) if not idx.preds[i]]
        self.entry: list[cp_model.IntVar | int] = []
        for i in range(len(idx.names)):
            if not idx.preds[i]:
                self.entry.append(1)
                continue
            e = m.new_bool_var(f"entry[{i}]")
            for s in {s for s, _, _ in idx.preds[i]}:
                m.add(e >= 1 - self.same[(s, i)])
            self.entry.append(e)
        self._memory(memory)
        self._max_partitions()

    def ticks(self, seconds: float) -> int:
        """Seconds to ticks, rounded to nearest."""
        return int(round(seconds / self.tick_s))

    def floor(self, seconds: float) -> int:
        """Seconds to ticks, rounded down (keeps a relaxation a relaxation)."""
        return int(math.floor(seconds / self.tick_s))

    def entry_overhead(self, i: int, k: int, oh: int) -> cp_model.LinearExprT:
        """``oh`` ticks when node ``i`` sits on device ``k`` and enters a call there."""
        xv, entry = self.x[i][k], self.entry[i]
        if isinstance(entry, int):
            return oh * xv
        both = self.model.new_bool_var(f"oh{i},{k}")
        self.model.add(both >= xv + entry - 1)
        return oh * both

    def cut_transfers(self) -> Iterator[tuple[int, int, int, cp_model.IntVar]]:
        """``(src device, dst device, transfer ticks, cut)`` for every edge whose ends may sit
        on different devices at a non-zero transfer cost; ``cut`` is 1 when they do."""
        for (u, v), nbytes in self.pairs.items():
            for a, xa in self.x[u].items():
                for b, xb in self.x[v].items():
                    if a == b:
                        continue
                    t = self.ticks(self.idx.transfer(a, b, nbytes))
                    if t <= 0:
                        continue
                    cut = self.model.new_bool_var(f"cut{u},{v},{a},{b}")
                    self.model.add(cut >= xa + xb - 1)
                    yield a, b, t, cut

    def occupying_copies(self) -> Iterator[tuple[int, int, int, cp_model.IntVar]]:
        """``(src device, dst device, transfer ticks rounded down, sent)`` for every tensor
        that may be copied between devices whose transfer occupies an endpoint
        (``ProblemIndex.occupies``); ``sent`` is 1 when a producer on the source has a
        consumer on the destination. Counted once per (tensor, destination device), as the
        evaluator pushes it, with the smallest bytes any consumer reads: a floor of the
        evaluator's occupied busy time."""
        idx = self.idx
        tensors: dict[tuple[int, str], tuple[int, list[int]]] = {}
        for v, preds in enumerate(idx.preds):
            for s, nbytes, key in preds:
                least, consumers = tensors.get((s, key), (nbytes, []))
                tensors[(s, key)] = (min(least, nbytes), [*consumers, v])
        for (u, key), (nbytes, consumers) in tensors.items():
            for a, xa in self.x[u].items():
                for b in sorted({b for v in consumers for b in self.x[v] if b != a}):
                    t = self.floor(idx.transfer(a, b, nbytes))
                    if t <= 0 or not idx.occupied(a, b):
                        continue
                    sent = self.model.new_bool_var(f"copy[{u},{key},{a},{b}]")
                    for v in consumers:
                        if b in self.x[v]:
                            self.model.add(sent >= xa + self.x[v][b] - 1)
                    yield a, b, t, sent

    def _memory(self, mode: str) -> None:
        idx, m = self.idx, self.model
        for k, dev in enumerate(self.problem.cluster.devices):
            terms = []
            ws = max((idx.workspace[i][k] for i in range(len(idx.names)) if k in self.x[i]),
                     default=0)
            ws_var = m.new_int_var(0, ws, f"ws[{dev.id}]")
            # Safe mode counts every output already; ``weights`` mode the largest footprint.
            live = m.new_int_var(0, dev.memory_bytes if mode == "weights" else 0,
                                 f"live[{dev.id}]")
            for i in range(len(idx.names)):
                xv = self.x[i].get(k)
                if xv is None:
                    continue
                size = idx.weights[i] + (idx.out_bytes[i] if mode == "safe" else 0)
                if size:
                    terms.append(size * xv)
                if idx.workspace[i][k]:
                    m.add(ws_var >= idx.workspace[i][k] * xv)
                if mode == "weights" and idx.cost[i][k]:
                    m.add(live >= idx.live[i] * xv)
            if mode == "safe":
                for (u, v), nbytes in self.pairs.items():
                    xv = self.x[v].get(k)
                    if xv is None or not nbytes:
                        continue
                    zk = self.z.get((u, v, k))
                    terms.append(nbytes * (xv - zk) if zk is not None else nbytes * xv)
            m.add(sum(terms) + ws_var + live <= dev.memory_bytes)

    def _max_partitions(self) -> None:
        limit = self.problem.max_partitions
        if limit is None:
            return
        m, idx = self.model, self.idx
        used = []
        for k in range(len(idx.devices)):
            lits = [self.x[i][k] for i in self.sources if k in self.x[i]]
            if lits:
                u = m.new_bool_var(f"source_on[{k}]")
                for lit in lits:
                    m.add_implication(lit, u)
                used.append(u)
        m.add(sum(used) + sum(e for i, e in enumerate(self.entry) if idx.preds[i]) <= limit)

    def hint_assignment(self, dev: Sequence[int]) -> None:
        """Hint x, z and entry from a device index per node."""
        m = self.model
        for i, row in enumerate(self.x):
            for k, var in row.items():
                m.add_hint(var, k == dev[i])
        for (u, v, k), z in self.z.items():
            m.add_hint(z, dev[u] == k and dev[v] == k)
        for i, e in enumerate(self.entry):
            if not isinstance(e, int):
                m.add_hint(e, any(dev[s] != dev[i] for s, _, _ in self.idx.preds[i]))

    def extract(self, value: Callable[[cp_model.IntVar], int]) -> list[int]:
        """Device index per node from a solution."""
        return [next(k for k, var in row.items() if value(var)) for row in self.x]


class ScheduleModel(AssignmentModel):
    """Latency (makespan) and cost (price subject to a latency target) objective."""

    deterministic_per_s = 0.1

    def __init__(self, problem: Problem, tick_s: float, memory: str = "safe") -> None:
        super().__init__(problem, tick_s, memory)
        idx, m = self.idx, self.model
        n = len(idx.names)
        horizon = 0
        for i in range(n):
            horizon += max(self.ticks(idx.cost[i][k] or 0.0) for k in self.x[i])
            horizon += max(self.ticks(idx.overhead[k]) for k in self.x[i])
        for (u, v), nbytes in self.pairs.items():
            horizon += max((self.ticks(idx.transfer(a, b, nbytes)) for a in self.x[u]
                            for b in self.x[v]), default=0)
        self.horizon = horizon + 1
        self.start = [m.new_int_var(0, self.horizon, f"s[{i}]") for i in range(n)]
        self.end = [m.new_int_var(0, self.horizon, f"e[{i}]") for i in range(n)]
        self.dur: list[dict[int, int]] = []
        per_group: dict[int, list[cp_model.IntervalVar]] = {}
        self.busy_terms: dict[int, list[cp_model.LinearExprT]] = {}
        for i in range(n):
            durs = {}
            for k, xv in self.x[i].items():
                d = self.ticks(idx.cost[i][k] or 0.0)
                oh = self.ticks(idx.overhead[k])
                durs[k] = d
                size = d + oh * self.entry[i]
                iv = m.new_optional_interval_var(self.start[i], size, self.end[i], xv, f"iv{i},{k}")
                per_group.setdefault(idx.group[k], []).append(iv)
                self.busy_terms.setdefault(k, []).append(d * xv)
                if oh:
                    self.busy_terms[k].append(self.entry_overhead(i, k, oh))
            self.dur.append(durs)
        # Copies that occupy a device (no copy engine) keep it busy too: a floor of the
        # evaluator's, so the energetic cut below and the cost objective stay relaxations.
        for a, b, t, sent in self.occupying_copies():
            for k in idx.occupied(a, b):
                self.busy_terms.setdefault(k, []).append(t * sent)
        for ivs in per_group.values():
            m.add_no_overlap(ivs)
        for (u, v), nbytes in self.pairs.items():
            m.add(self.start[v] >= self.end[u])
            for a, xa in self.x[u].items():
                for b, xb in self.x[v].items():
                    if a != b:
                        t = self.ticks(idx.transfer(a, b, nbytes))
                        if t > 0:
                            m.add(self.start[v] >= self.end[u] + t).only_enforce_if(xa, xb)
        self.makespan = m.new_int_var(0, self.horizon, "makespan")
        for i in range(n):
            if not idx.succs[i]:
                m.add(self.makespan >= self.end[i])
        # Redundant energetic cut: a processor's work fits before the makespan (tightens the
        # LP bound a lot on load-balancing-like instances).
        for g in set(idx.group):
            ks = [k for k in range(len(idx.devices)) if idx.group[k] == g]
            m.add(self.makespan >= sum(t for k in ks for t in self.busy_terms.get(k, [])))

    def minimise_latency(self) -> None:
        self.model.minimize(self.makespan)

    def minimise_cost(self, target_s: float) -> float:
        """Minimise price-weighted busy time under the target; returns price per objective unit."""
        # A target beyond the horizon (any schedule meets it) would overflow CP-SAT's ints.
        self.model.add(self.makespan <= min(self.horizon, int(target_s / self.tick_s)))
        prices = [d.price_per_hour for d in self.problem.cluster.devices]
        top = max(prices)
        if top <= 0:
            self.model.minimize(self.makespan)
            return 0.0
        weights = [int(round(p / top * 1000)) for p in prices]
        self.model.minimize(sum(weights[k] * sum(terms) for k, terms in self.busy_terms.items()))
        # objective * unit = price per 1k inferences
        return top / 3600.0 * 1000.0 * self.tick_s / 1000

    def hint_schedule(self, dev: Sequence[int], order: Sequence[int]) -> None:
        """Hint a full schedule for ``dev``, list-scheduling nodes in ``order`` (topological)."""
        self.hint_assignment(dev)
        idx = self.idx
        free: dict[int, int] = {}
        end = [0] * len(idx.names)
        for i in order:
            k = dev[i]
            ready = 0
            for s, nbytes, _ in idx.preds[i]:
                ready = max(ready, end[s] + (self.ticks(idx.transfer(dev[s], k, nbytes))
                                             if dev[s] != k else 0))
            entry = 1 if not idx.preds[i] or any(dev[s] != k for s, _, _ in idx.preds[i]) else 0
            s0 = max(ready, free.get(idx.group[k], 0))
            end[i] = s0 + self.dur[i][k] + entry * self.ticks(idx.overhead[k])
            free[idx.group[k]] = end[i]
            self.model.add_hint(self.start[i], s0)
            self.model.add_hint(self.end[i], end[i])
        self.model.add_hint(self.makespan, max(end, default=0))


def run(model: AssignmentModel, *, time_limit_s: float, seed: int, workers: int,
        unit_s: float, progress: Callable[[float, float], None] | None = None,
        keep: int = 5, deadline: float | None = None) -> ModelResult:
    """Solve ``model`` deterministically; keep up to ``keep`` of its best solutions.

    Determinism: ``interleave_search`` (with several workers; one worker's search is
    deterministic as it is) with a deterministic-time limit of the model's
    ``deterministic_per_s`` times ``time_limit_s``, fixed seed and worker count. The wall
    clock stops the solve at ``1.2 * time_limit_s + 0.5`` or at ``deadline`` (a
    ``time.perf_counter()`` value: the end of the caller's stage), whichever comes first; a
    run is irreproducible only when the clock stops it (``ModelResult.clock_stopped``).

    Interleaved search with a single worker is avoided: on CP-SAT 9.15 it returned OPTIMAL
    8.0 ms for a model whose optimum is 7.1 ms (tests/test_solver_bruteforce.py, seed 310),
    and a wrong OPTIMAL is a wrong proven bound.

    The solutions returned are the solver's final solution pool (``solution_pool_size``
    best distinct solutions, ``fill_additional_solutions_in_response``), not the improving
    solutions the callback saw: with two interleaved workers the callback's sequence
    differs from run to run (a worker's solution counts as improving or not depending on
    which thread reports first within a batch; a random 235-node load relaxation gave 21,
    22, 23 or 24 callback solutions in five runs of the same model, the same final
    solution and pool every time), and any of them may become the plan.
    """
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.random_seed = seed
    params.num_workers = max(1, workers)
    params.interleave_search = workers > 1
    params.max_deterministic_time = max(0.01, model.deterministic_per_s * time_limit_s)
    params.fill_additional_solutions_in_response = True
    if keep > 1:
        # A larger pool is kept diverse (``solution_pool_diversity_limit``): the candidates
        # the evaluator, whose objective differs from the model's, picks among.
        params.solution_pool_size = max(params.solution_pool_size, 2 * keep)
    t0 = time.perf_counter()
    wall_limit = 1.2 * time_limit_s + 0.5
    if deadline is not None:
        wall_limit = max(0.01, min(wall_limit, deadline - t0))
    params.max_time_in_seconds = wall_limit
    cb = _Collector(unit_s, progress)
    status = solver.solve(model.model, cb)
    wall = time.perf_counter() - t0
    name = solver.status_name(status)
    response = solver.response_proto
    dtime = response.deterministic_time
    used = min(time_limit_s, dtime / model.deterministic_per_s)
    # Only a proof (OPTIMAL, INFEASIBLE) or the deterministic limit end a search the same
    # way on every run; a search that reached the wall limit counts as stopped by the clock
    # even when its deterministic time came close to its limit.
    result = ModelResult(status=name, wall_s=wall, used_s=used,
                         clock_stopped=name in ("FEASIBLE", "UNKNOWN")
                         and (dtime < params.max_deterministic_time
                              or wall >= 0.99 * wall_limit))
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        result.objective_s = solver.objective_value * unit_s
        result.bound_s = solver.best_objective_bound * unit_s
        pool = [model.extract(_value_in(sol)) for sol in response.additional_solutions]
        final = model.extract(solver.boolean_value)
        for dev in reversed([final, *pool]):  # best last
            if dev in result.solutions:
                result.solutions.remove(dev)
            result.solutions.append(dev)
        del result.solutions[:-keep]
    log.info("CP-SAT %s in %.2fs: objective %s bound %s", name, wall,
             result.objective_s, result.bound_s)
    return result


def _value_in(solution: Any) -> Callable[[cp_model.IntVar], int]:
    """A variable's value in one solution of CP-SAT's pool (``additional_solutions``)."""
    return lambda var: int(solution.values[var.index])


class _Collector(cp_model.CpSolverSolutionCallback):
    """Reports progress; its solutions are not kept (``run``: their sequence is racy)."""

    def __init__(self, unit_s: float, progress: Callable[[float, float], None] | None) -> None:
        super().__init__()
        self._unit = unit_s
        self._progress = progress

    def on_solution_callback(self) -> None:
        if self._progress is not None:
            self._progress(self.objective_value * self._unit,
                           self.best_objective_bound * self._unit)
