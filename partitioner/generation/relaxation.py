"""A quick lower bound on a request's time that respects memory: each phase alone as an LP.

Each phase is a fractional assignment of the groups to devices, every device holding what the
phase puts on it within its memory (less the smallest workspace): prefill groups their weights
and the prompt's KV, decode groups their weights and the reserved KV. Transfers, call
overheads and the two phases sharing a device's memory are left out, so the bound is below
every placement's request time (``TTFT + (new - 1) x TPOT``). Unlike "every group on its
fastest device", it counts that fast devices are small: it bounds fleets the CP-SAT search
could not finish, and prunes batch sizes and fleets that cannot win.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ortools.linear_solver import pywraplp

from partitioner.generation.problem import GenerationProblem


def _phase_lp(times: Sequence[Sequence[float]], needs: Sequence[float],
              capacity: dict[int, float]) -> float | None:
    """min sum t[g][d] x[g][d], sum_d x[g][d] = 1, sum_g need[g] x[g][d] <= cap[d]
    (None: infeasible). Times and bytes are scaled to about 1 and capacities capped at what
    every group together needs, for GLOP's tolerances (a 64 GB host beside 5 MB groups made
    it fail); when GLOP ends without a proof either way, the bound without memory stands."""
    G = len(times)
    no_memory = sum(min(times[g][d] for d in capacity) for g in range(G))
    t_unit = max(times[g][d] for g in range(G) for d in capacity) or 1.0
    b_unit = max(needs) or 1.0
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:  # pragma: no cover - GLOP ships with OR-Tools
        return no_memory
    x = {(g, d): solver.NumVar(0.0, 1.0, f"x{g}_{d}") for g in range(G) for d in capacity}
    for g in range(G):
        solver.Add(sum(x[g, d] for d in capacity) == 1)
    for d, cap in capacity.items():
        solver.Add(sum(needs[g] / b_unit * x[g, d] for g in range(G))
                   <= min(cap / b_unit, G + 1.0))
    solver.Minimize(sum(times[g][d] / t_unit * x[g, d] for g in range(G) for d in capacity))
    status = solver.Solve()
    if status == pywraplp.Solver.INFEASIBLE:
        return None
    if status != pywraplp.Solver.OPTIMAL:
        return no_memory
    # GLOP's optimum is exact to its tolerance; shave a hair so the bound stays below.
    return max(0.0, solver.Objective().Value() * t_unit * (1 - 1e-6))


@functools.lru_cache(maxsize=4096)
def phase_lower_bounds(pr: GenerationProblem, devices: tuple[int, ...] | None = None
                       ) -> tuple[float, float] | None:
    """Lower bounds on (TTFT, TPOT) on ``devices`` (default all); None when even the
    relaxation cannot hold the model. A request takes at least ``TTFT + (new - 1) TPOT``."""
    use = list(range(len(pr.devices))) if devices is None else list(devices)
    room = {d: max(0.0, pr.memory[d] - min(pr.workspace_bytes)) for d in use}
    G = len(pr.groups)
    prefill = _phase_lp(pr.prefill_s, [pr.weight_bytes[g] + pr.kv_prefill_bytes[g]
                                       for g in range(G)], room)
    decode = _phase_lp(pr.decode_mean_s, [pr.weight_bytes[g] + pr.kv_decode_bytes[g]
                                          for g in range(G)], room)
    if prefill is None or decode is None:
        return None
    return prefill, decode
