"""Plan a decoder's generation on a cluster: batch search, CP-SAT per phase, baselines, bound.

For every batch size the objective tries (``Workload.batch_candidates``), the CP-SAT placement
(``placement.py``) is solved twice: disaggregated (prefill and decode devices chosen apart) and
co-located (the same device per group in both phases). Every solution and every baseline
(``baselines.py``) is scored by the evaluator (``problem.evaluate``); the plan is the best
feasible one, so it is never worse than a baseline. The proven bound combines the
disaggregated solves' bounds over the batch sizes tried.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from partitioner.cluster.types import Cluster
from partitioner.errors import InfeasibleError
from partitioner.generation.baselines import (
    Placement,
    homogeneous_fleets,
    layer_offload,
    memory_fill,
    single_device,
)
from partitioner.generation.costs import (
    DecodeFit,
    DeviceRates,
    compute_dtype,
    measured_rates,
    spec_rates,
)
from partitioner.generation.local_search import improve
from partitioner.generation.phases import LayerGroup, group_layers, group_work
from partitioner.generation.placement import PlacementModel, PlacementResult, device_types
from partitioner.generation.problem import (
    GenerationEval,
    GenerationProblem,
    build_problem,
    evaluate,
)
from partitioner.generation.relaxation import phase_lower_bounds
from partitioner.generation.spec import DecoderSpec
from partitioner.generation.workload import Targets, Workload

#: Total groups x devices the CP-SAT model is sized for (80 layers on 8 devices: 15 groups).
GROUP_DEVICE_BUDGET = 120
GIB = 2**30


def choose_groups(num_layers: int, num_devices: int) -> int:
    """How many contiguous layer groups to place: at most ``GROUP_DEVICE_BUDGET / devices``."""
    return max(1, min(num_layers, max(4, GROUP_DEVICE_BUDGET // max(1, num_devices))))


@dataclass(frozen=True)
class Candidate:
    """A scored placement and where it came from (``cp-sat``, ``cp-sat co-located``, a
    baseline's name)."""

    origin: str
    eval: GenerationEval


@dataclass
class BatchSolve:
    """The two CP-SAT solves at one batch size."""

    batch: int
    status: str
    colocated_status: str
    bound: float | None  # disaggregated model bound in the objective's unit
    wall_s: float


@dataclass
class GenerationPlan:
    """The outcome of :func:`plan_generation` (``to_dict`` is generation.json's placement)."""

    spec: DecoderSpec
    workload: Workload
    targets: Targets
    cluster: Cluster
    groups: tuple[LayerGroup, ...]
    rates: tuple[DeviceRates, ...]
    problems: dict[int, GenerationProblem]
    plan: Candidate
    colocated: Candidate | None
    baselines: dict[str, Candidate | None]
    baseline_notes: dict[str, str]
    solves: list[BatchSolve]
    bound: float | None
    solve_time_s: float
    pareto: list[Candidate] = field(default_factory=list)
    by_batch: list[Candidate] = field(default_factory=list)

    @property
    def objective(self) -> str:
        return self.targets.objective

    @property
    def value(self) -> float:
        return self.plan.eval.value(self.objective)

    @property
    def gap(self) -> float | None:
        if self.bound is None:
            return None
        return abs(self.value - self.bound) / abs(self.value) if self.value else 0.0

    @property
    def problem(self) -> GenerationProblem:
        return self.problems[self.plan.eval.batch]

    def explain(self) -> list[dict[str, Any]]:
        """Per group and phase: the device, its time, and why not each faster device."""
        return [explain_group(self.problem, self.plan.eval, g, self.objective)
                for g in range(len(self.groups))]

    def choice(self) -> str:
        """Why the plan is disaggregated or co-located, in one sentence."""
        ev, co = self.plan.eval, self.colocated
        unit = _UNITS[self.objective]
        if ev.colocated:
            if co is None:
                return "co-located: no disaggregated placement did better"
            return (f"co-located: the best disaggregated placement found is no better "
                    f"({unit(ev.value(self.objective))}); a split would duplicate weights and "
                    "pay the KV hand-off")
        if co is None:
            return ("disaggregated: no co-located placement fits the memory or meets the "
                    "SLOs")
        split = [g for g in range(len(self.groups)) if ev.prefill[g] != ev.decode[g]]
        return (f"disaggregated ({len(split)} of {len(self.groups)} groups prefill on another "
                f"device than they decode): {unit(ev.value(self.objective))} against "
                f"{unit(co.eval.value(self.objective))} for the best co-located plan")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for generation.json and the report (``report/generation.py``)."""
        pr, ev = self.problem, self.plan.eval
        devs = pr.devices
        return {
            "model": self.spec.name,
            "cluster": self.cluster.name,
            "workload": self.workload.to_dict(),
            "objective": self.objective,
            "slo": {"ttft_ms": _ms(self.targets.ttft_slo_s),
                    "tpot_ms": _ms(self.targets.tpot_slo_s)},
            "kv_bytes_per_token": self.spec.kv_bytes_per_token(),
            "weight_bytes": sum(pr.weight_bytes),
            "devices": [{"id": d.id, "class": d.device_class, "memory_bytes": d.memory_bytes,
                         "price_per_hour": d.price_per_hour, "cost_source": r.source}
                        for d, r in zip(self.cluster.devices, self.rates, strict=True)],
            "groups": [{"index": g.index, "label": g.label, "first_layer": g.first,
                        "layers": g.count, "prefill": devs[ev.prefill[g.index]],
                        "decode": devs[ev.decode[g.index]],
                        "kv_bytes_per_token": pr.kv_decode_bytes[g.index]
                        / (pr.batch * self.workload.context)}
                       for g in self.groups],
            "batch": ev.batch,
            "predicted": _eval_dict(ev, devs),
            "kv_bytes_by_device": _kv_by_device(pr, ev),
            "status": self.solves[0].status if len(self.solves) == 1 else
            ",".join(sorted({s.status for s in self.solves})),
            "bound": self.bound,
            "gap": self.gap,
            "solve_time_s": self.solve_time_s,
            "origin": self.plan.origin,
            "choice": self.choice(),
            "colocated": None if self.colocated is None else {
                "origin": self.colocated.origin, **_eval_dict(self.colocated.eval, devs)},
            "baselines": {name: (None if c is None else {"origin": c.origin,
                                                         **_eval_dict(c.eval, devs)})
                          for name, c in self.baselines.items()},
            "baseline_notes": self.baseline_notes,
            "solves": [{"batch": s.batch, "status": s.status,
                        "colocated_status": s.colocated_status,
                        # JSON has no infinity: a batch nothing fits at has no bound to give.
                        "bound": s.bound if s.bound is not None and math.isfinite(s.bound)
                        else None,
                        "wall_s": s.wall_s} for s in self.solves],
            "pareto": [{"origin": c.origin, **_eval_dict(c.eval, devs)} for c in self.pareto],
            "by_batch": [{"origin": c.origin, **_eval_dict(c.eval, devs)}
                         for c in self.by_batch],
            "explain": self.explain(),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


_UNITS = {
    "ttft": lambda v: f"TTFT {v * 1e3:.4g} ms",
    "tpot": lambda v: f"TPOT {v * 1e3:.4g} ms",
    "tokens-per-s": lambda v: f"{v:.4g} tokens/s",
    "cost-per-mtok": lambda v: f"{v:.4g} $/Mtok",
}


def format_value(objective: str, value: float) -> str:
    return _UNITS[objective](value)


def _eval_dict(ev: GenerationEval, devices: Sequence[str]) -> dict[str, Any]:
    return {
        "batch": ev.batch,
        "prefill": [devices[d] for d in ev.prefill],
        "decode": [devices[d] for d in ev.decode],
        "colocated": ev.colocated,
        "ttft_s": ev.ttft_s,
        "tpot_s": ev.tpot_s,
        "tpot_worst_s": ev.tpot_worst_s,
        "tokens_per_s": ev.tokens_per_s,
        "price_per_hour": ev.price_per_hour,
        "cost_per_mtok": ev.cost_per_mtok,
        "memory_bytes": {devices[d]: m for d, m in enumerate(ev.memory_bytes) if m},
        "fits": ev.fits,
        "slo_misses": list(ev.slo_misses),
    }


def _kv_by_device(pr: GenerationProblem, ev: GenerationEval) -> dict[str, float]:
    """KV bytes per token (all sequences of the batch... per sequence) held by each decode
    device: multiply by context x batch for the reservation."""
    out: dict[str, float] = {}
    for g, d in enumerate(ev.decode):
        per_token = pr.kv_decode_bytes[g] / (pr.batch * pr.workload.context)
        out[pr.devices[d]] = out.get(pr.devices[d], 0.0) + per_token
    return out


def explain_group(pr: GenerationProblem, ev: GenerationEval, g: int,
                  objective: str) -> dict[str, Any]:
    """Why group ``g`` sits where it does in each phase: every device that would run the phase
    faster, moved there alone, and what that move would do (memory, SLO, objective)."""
    out: dict[str, Any] = {"group": pr.groups[g].label}
    for phase, times, placed in (("prefill", pr.prefill_s, ev.prefill),
                                 ("decode", pr.decode_mean_s, ev.decode)):
        here = placed[g]
        reasons = []
        for d in sorted(range(len(pr.devices)), key=lambda d: times[g][d]):
            if times[g][d] >= times[g][here]:
                break
            moved = list(placed)
            moved[g] = d
            alt = evaluate(pr, moved, ev.decode) if phase == "prefill" else evaluate(
                pr, ev.prefill, moved)
            if not alt.fits:
                full = alt.over_memory[0]
                why = (f"would not fit: {pr.devices[full]} would hold "
                       f"{alt.memory_bytes[full] / GIB:.3g} of {pr.memory[full] / GIB:.3g} GiB")
            elif alt.slo_misses:
                why = "would miss the SLO: " + "; ".join(alt.slo_misses)
            else:
                why = (f"{format_value(objective, alt.value(objective))} against "
                       f"{format_value(objective, ev.value(objective))} (transfers, hand-off"
                       f"{', price' if objective == 'cost-per-mtok' else ''})")
            reasons.append({"device": pr.devices[d], "time_s": times[g][d], "why_not": why})
        out[phase] = {"device": pr.devices[here], "time_s": times[g][here],
                      "faster_devices": reasons}
    return out


def device_rates(spec: DecoderSpec, cluster: Cluster, workload: Workload,
                 decode_fits: Mapping[str, DecodeFit] | None = None,
                 prefill_times: Mapping[str, float] | None = None) -> tuple[DeviceRates, ...]:
    """Spec-sheet rates, or measured ones for devices with a decode fit (and a measured
    whole-model prefill of ``workload.prompt`` tokens at the fit's batch)."""
    dtype = compute_dtype(spec.weight_bytes_per_param)
    out = []
    groups = group_layers(spec.num_layers, spec.num_layers)
    for device in cluster.devices:
        fit = (decode_fits or {}).get(device.id)
        if fit is None:
            out.append(spec_rates(device, dtype))
            continue
        works = [group_work(spec, g, workload.prompt, fit.batch) for g in groups]
        weights = sum(w.decode_weight_bytes + w.decode_other_bytes for w in works)
        prefill_s = (prefill_times or {}).get(device.id)
        prefill = None if prefill_s is None else (sum(w.prefill_flops for w in works), prefill_s)
        out.append(measured_rates(device, dtype, fit, weights, spec.kv_bytes_per_token(),
                                  prefill))
    return tuple(out)


def _better(a: GenerationEval, b: GenerationEval | None, objective: str) -> bool:
    """Is ``a`` better than ``b``: a smaller objective key, then a lower price, then fewer
    devices (for determinism among ties)."""
    if b is None:
        return True
    ka, kb = a.key(objective), b.key(objective)
    if abs(ka - kb) > 1e-12 * max(abs(ka), abs(kb)):
        return ka < kb
    return (a.price_per_hour, len(set(a.prefill) | set(a.decode))) < (
        b.price_per_hour, len(set(b.prefill) | set(b.decode)))


def _best(cands: Sequence[Candidate], objective: str) -> Candidate | None:
    best: Candidate | None = None
    for c in cands:
        if c.eval.feasible and _better(c.eval, best.eval if best else None, objective):
            best = c
    return best


def _model_objective(objective: str) -> str:
    return {"tokens-per-s": "request", "cost-per-mtok": "cost"}.get(objective, objective)


def _bound_value(objective: str, problem: GenerationProblem, model_bound: float) -> float:
    """A model bound (seconds, or USD/h x seconds) in the objective's unit."""
    if objective == "tokens-per-s":
        return problem.tokens_per_request / model_bound if model_bound > 0 else float("inf")
    if objective == "cost-per-mtok":
        return model_bound / 3600 / problem.tokens_per_request * 1e6
    return model_bound


def plan_generation(spec: DecoderSpec, workload: Workload, targets: Targets, cluster: Cluster,
                    *, time_limit_s: float = 10.0, seed: int = 0, workers: int = 1,
                    groups: int | None = None,
                    decode_fits: Mapping[str, DecodeFit] | None = None,
                    prefill_times: Mapping[str, float] | None = None) -> GenerationPlan:
    """Place ``spec``'s layer groups per phase on ``cluster`` for ``workload`` under ``targets``.

    Raises:
        WorkloadError: the context is beyond the model's maximum.
        InfeasibleError: the KV cache fits nowhere (names bytes per token and the largest
            context that would fit), or no placement meets the SLOs (names the best achievable).
    """
    started = time.perf_counter()
    workload.check_model(spec)
    layer_groups = tuple(group_layers(spec.num_layers, groups or choose_groups(
        spec.num_layers, len(cluster.devices))))
    rates = device_rates(spec, cluster, workload, decode_fits, prefill_times)
    objective = targets.objective
    batches = workload.batch_candidates(objective)
    problems = {b: build_problem(spec, workload, targets, cluster, rates, layer_groups, b)
                for b in batches}
    types = device_types(problems[batches[0]], cluster.devices)
    symmetric = [t for t in types if len(t) > 1]

    everything: list[Candidate] = []
    baselines: dict[str, list[Candidate]] = {}
    offload_note = ""
    for batch in batches:
        pr = problems[batch]
        named: list[tuple[str, str, Placement]] = [
            ("best single device", f"single {pr.devices[d]}", single_device(pr, d))
            for d in range(len(pr.devices))]
        offload = layer_offload(pr, cluster)
        if offload is not None:
            offload_note, placement = offload
            named.append(("layer offload", "layer offload", placement))
        named += [("cheapest homogeneous fleet", f"homogeneous {name}", placement)
                  for name, placement in homogeneous_fleets(pr, types)]
        filled = memory_fill(pr)
        if filled is not None:
            named.append(("memory fill", "memory fill", filled))
        for kind, origin, (p, q) in named:
            c = Candidate(origin, evaluate(pr, p, q))
            baselines.setdefault(kind, []).append(c)
            everything.append(c)

    # Most promising batch first; a batch whose optimistic bound cannot beat the best plan
    # so far is not solved (its optimistic bound stands as its bound).
    model_obj = _model_objective(objective)
    optimistic_of = {b: _optimistic(objective, problems[b], types) for b in batches}
    order = sorted(batches, key=optimistic_of.__getitem__, reverse=objective == "tokens-per-s")
    solves: list[BatchSolve] = []
    # Everything, baselines included, within the limit; TTFT and TPOT keep a fifth of it
    # for their second stage (the fastest request among equally good placements).
    overall = started + time_limit_s
    second_stage_s = time_limit_s / 5 if objective in ("ttft", "tpot") else 0.0
    deadline = overall - second_stage_s
    reserve_each = max(MIN_SOLVE_S, min(RESERVE_S, time_limit_s / (2 * len(batches))))
    for i, batch in enumerate(order):
        pr = problems[batch]
        optimistic = optimistic_of[batch]
        incumbent = _best(everything, objective)
        if incumbent is not None and not _could_beat(objective, optimistic,
                                                     incumbent.eval.value(objective)):
            solves.append(BatchSolve(batch, "PRUNED", "PRUNED", optimistic, 0.0))
            continue
        start = _best([c for c in everything if c.eval.batch == batch], objective)
        results = {}
        for colocated in (True, False):
            origin = "cp-sat co-located" if colocated else "cp-sat"
            # Hint: the best placement so far at this batch (polished), itself a candidate.
            if start is not None:
                polished = improve(pr, start.eval, objective, colocated=colocated)
                if polished is not start.eval:
                    start = Candidate(f"{start.origin} + local search", polished)
                    everything.append(start)
            # The most promising batch comes first and gets all the time but a reserve for
            # each later batch that could still beat the best plan so far (most are pruned
            # once this one is solved): one CP-SAT solve given the time at once proves far
            # more than two restarted from a hint (the 70B A100 fleet at tokens/s: 0.5% in
            # one 10 s solve against 8% in two of 5 s). The co-located solve (a
            # restriction, quick) gets a third of it.
            incumbent = _best(everything, objective)
            hopeful = sum(1 for b in order[i + 1:] if incumbent is None or _could_beat(
                objective, optimistic_of[b], incumbent.eval.value(objective)))
            left = max(MIN_SOLVE_S, deadline - time.perf_counter() - hopeful * reserve_each)
            budget = left / 3 if colocated else left
            if objective == "cost-per-mtok":
                res, found = _solve_cost_by_fleet(pr, types, symmetric, everything, budget,
                                                  seed, workers, colocated)
            else:
                model = PlacementModel(pr, model_obj, colocated=colocated, symmetric=symmetric)
                if start is not None:
                    model.hint(start.eval.prefill, start.eval.decode)
                res = model.solve(time_limit_s=budget, seed=seed, workers=workers)
                found = [Candidate(origin, evaluate(pr, p, q)) for p, q in res.solutions]
            results[colocated] = res
            best_found = _best(found, objective)
            if best_found is not None:
                polished = improve(pr, best_found.eval, objective, colocated=colocated)
                if polished is not best_found.eval:
                    found.append(Candidate(f"{origin} + local search", polished))
            everything += found
            start = _best([c for c in everything if c.eval.batch == batch], objective)
        dis = results[False]
        if dis.status in ("OPTIMAL", "FEASIBLE") and dis.bound is not None:
            batch_bound = _tighter(objective, _bound_value(objective, pr, dis.bound),
                                   optimistic)
        elif dis.status == "INFEASIBLE":
            batch_bound = float("-inf") if objective == "tokens-per-s" else float("inf")
        else:
            batch_bound = optimistic
        solves.append(BatchSolve(batch, dis.status, results[True].status, batch_bound,
                                 dis.wall_s + results[True].wall_s))
    if objective != "cost-per-mtok":
        everything += _prove_further(solves, problems, everything, objective, symmetric,
                                     deadline, seed, workers)
    solves.sort(key=lambda s: s.batch)
    per_solve = max(0.2, time_limit_s / (2 * len(batches)))

    plan = _best(everything, objective)
    if plan is None:
        raise _diagnose(spec, workload, targets, cluster, rates, layer_groups, batches[0],
                        symmetric, per_solve, seed, workers)
    if objective in ("ttft", "tpot"):
        # Second stage: among placements as good on the objective, the fastest request
        # (TTFT alone leaves the decode placement free, TPOT the prefill placement).
        pr = problems[plan.eval.batch]
        model = PlacementModel(pr, "request", symmetric=symmetric)
        model.cap(objective, plan.eval.value(objective))
        model.hint(plan.eval.prefill, plan.eval.decode)
        res = model.solve(time_limit_s=max(MIN_SOLVE_S, overall - time.perf_counter()),
                          seed=seed, workers=workers)
        value = plan.eval.value(objective)
        for p, q in res.solutions:
            ev = evaluate(pr, p, q)
            if (ev.feasible and ev.value(objective) <= value * (1 + 1e-9)
                    and ev.request_s < plan.eval.request_s * (1 - 1e-9)):
                plan = Candidate("cp-sat (second stage: request time)", ev)
                everything.append(plan)
    best_colocated = _best([c for c in everything if c.eval.colocated], objective)
    best_baselines: dict[str, Candidate | None] = {}
    notes: dict[str, str] = {}
    for kind, cands in baselines.items():
        if kind == "cheapest homogeneous fleet":
            ok = [c for c in cands if c.eval.feasible]
            best_baselines[kind] = min(ok, key=lambda c: (c.eval.price_per_hour,
                                                          c.eval.key(objective))) if ok else None
        else:
            best_baselines[kind] = _best(cands, objective)
        if best_baselines[kind] is None:
            notes[kind] = _infeasible_note(cands)
    if offload_note:
        notes["layer offload"] = offload_note
    else:
        best_baselines["layer offload"] = None
        notes["layer offload"] = "needs a CPU and an accelerator; the cluster lacks one"
    best_baselines["best co-located plan"] = best_colocated
    if best_colocated is None:
        notes["best co-located plan"] = "no co-located placement fits and meets the SLOs"

    bounds = [s.bound for s in solves if s.bound is not None]
    bound: float | None = None
    if len(bounds) < len(solves):
        pass
    elif objective == "tokens-per-s":
        bound = max(max(bounds), plan.eval.value(objective))
    else:
        bound = min(min(bounds), plan.eval.value(objective))
    feasible = [c for c in everything if c.eval.feasible]
    by_batch = [b for b in (_best([c for c in feasible if c.eval.batch == batch], objective)
                            for batch in batches) if b is not None]
    return GenerationPlan(spec, workload, targets, cluster, layer_groups, rates, problems, plan,
                          best_colocated, best_baselines, notes, solves, bound,
                          time.perf_counter() - started, _pareto(feasible), by_batch)


def _fleets(pr: GenerationProblem, types: Sequence[Sequence[int]]
            ) -> list[tuple[float, list[int]]]:
    """Every fleet (how many devices of each type: interchangeable devices make the first
    ``n`` of a type as good as any ``n``) whose memory could hold the weights and KV cache,
    cheapest first, as (price per hour, device indices)."""
    fleets = []
    need = sum(pr.weight_bytes) + sum(pr.kv_decode_bytes)
    for counts in itertools.product(*(range(len(t) + 1) for t in types)):
        devices = [d for t, n in zip(types, counts, strict=True) for d in t[:n]]
        if not devices:
            continue
        if sum(pr.memory[d] for d in devices) < need or sum(
                _most_groups(pr, d) for d in devices) < len(pr.groups):
            continue
        fleets.append((sum(pr.price_per_hour[d] for d in devices), devices))
    fleets.sort(key=lambda f: (f[0], len(f[1])))
    return fleets


def _fleet_optimistic(pr: GenerationProblem, price: float, devices: list[int]) -> float:
    """$/Mtok no placement on ``devices`` beats: each phase alone as a memory-respecting LP
    (``relaxation.py``); inf when even that cannot hold the model."""
    phases = phase_lower_bounds(pr, tuple(devices))
    if phases is None:
        return float("inf")
    request_lb = phases[0] + (pr.workload.new - 1) * phases[1]
    return price * request_lb * 1e6 / 3600 / pr.tokens_per_request


def _solve_cost_by_fleet(pr: GenerationProblem, types: Sequence[Sequence[int]],
                         symmetric: list[list[int]], known: Sequence[Candidate],
                         time_limit_s: float, seed: int, workers: int, colocated: bool = False
                         ) -> tuple[PlacementResult, list[Candidate]]:
    """$/Mtok with a proven bound: price x time is a product, so instead of one model with
    it, enumerate the fleets (how many devices of each type; interchangeable devices make the
    first ``n`` of a type as good as any ``n``), cheapest first, and minimise the request time
    on each. A fleet whose memory cannot hold the weights and KV cache is skipped; one whose
    optimistic bound (fastest device per group and phase) cannot beat the best plan so far is
    pruned. The bound is the least over fleets of price x the fleet's time bound."""
    started = time.perf_counter()
    fleets = _fleets(pr, types)
    to_cost = 1e6 / 3600 / pr.tokens_per_request
    found: list[Candidate] = []
    bound = float("inf")
    statuses = set()

    hopes = [_fleet_optimistic(pr, price, devices) for price, devices in fleets]
    for k, (price, devices) in enumerate(fleets):
        optimistic = hopes[k]
        incumbent = _best([*known, *found], "cost-per-mtok")
        best_cost = incumbent.eval.cost_per_mtok if incumbent is not None else float("inf")
        if optimistic >= best_cost * (1 - 1e-9):
            bound = min(bound, optimistic)
            statuses.add("PRUNED")
            continue
        model = PlacementModel(pr, "request", symmetric=symmetric, allowed=devices,
                               colocated=colocated)
        inside = _best([c for c in [*known, *found] if c.eval.batch == pr.batch
                        and (c.eval.colocated or not colocated)
                        and set(c.eval.prefill) | set(c.eval.decode) <= set(devices)],
                       "tokens-per-s")
        if inside is not None:
            model.hint(inside.eval.prefill, inside.eval.decode)
        hopeful = sum(1 for h in hopes[k:] if h < best_cost * (1 - 1e-9))
        # Cheap fleets come first and are likeliest to win: each gets at least a third of
        # what is left.
        budget = max(0.1, (time_limit_s - (time.perf_counter() - started)) / min(3, hopeful))
        res = model.solve(time_limit_s=budget, seed=seed, workers=workers)
        statuses.add(res.status)
        origin = "cp-sat co-located" if colocated else "cp-sat"
        found += [Candidate(f"{origin} ({len(devices)}-device fleet)", evaluate(pr, p, q))
                  for p, q in res.solutions]
        if res.status == "INFEASIBLE":
            continue
        fleet_lb = price * res.bound * to_cost if res.bound is not None else optimistic
        bound = min(bound, max(fleet_lb, optimistic))
    status = ("OPTIMAL" if statuses <= {"OPTIMAL", "PRUNED", "INFEASIBLE"} and fleets
              else "INFEASIBLE" if not fleets or statuses == {"INFEASIBLE"} else "FEASIBLE")
    best = _best(found, "cost-per-mtok")
    bound_model = bound / to_cost if bound != float("inf") else None
    return PlacementResult(status, (), best.eval.cost_per_mtok / to_cost if best else None,
                           bound_model, time.perf_counter() - started), found


def _most_groups(pr: GenerationProblem, d: int) -> int:
    """How many groups device ``d`` could decode at most (weights and KV cache of the
    lightest, one workspace)."""
    lightest = min(w + kv for w, kv in zip(pr.weight_bytes, pr.kv_decode_bytes, strict=True))
    return int((pr.memory[d] - min(pr.workspace_bytes)) // max(1.0, lightest))


def _optimistic(objective: str, pr: GenerationProblem,
                types: Sequence[Sequence[int]] = ()) -> float:
    """A bound no placement at this batch beats: each phase alone as a memory-respecting LP,
    no transfers (``relaxation.py``); cost: the least over the fleets whose memory could hold
    the model (``_fleets``) of the fleet's price x its bound time."""
    if objective == "cost-per-mtok" and types:
        fleets = _fleets(pr, types)
        return min((_fleet_optimistic(pr, price, devices) for price, devices in fleets),
                   default=float("inf"))
    phases = phase_lower_bounds(pr)
    if phases is None:  # not even the relaxation holds the model at this batch
        return 0.0 if objective == "tokens-per-s" else float("inf")
    ttft, tpot = phases
    request = ttft + (pr.workload.new - 1) * tpot
    if objective == "ttft":
        return ttft
    if objective == "tpot":
        return tpot
    if objective == "tokens-per-s":
        return pr.tokens_per_request / request
    return min(pr.price_per_hour) * request / 3600 / pr.tokens_per_request * 1e6


def _could_beat(objective: str, optimistic: float, incumbent: float) -> bool:
    if objective == "tokens-per-s":
        return optimistic > incumbent * (1 + 1e-9)
    return optimistic < incumbent * (1 - 1e-9)


#: Least time left over worth another solve (CP-SAT starts again from the hint).
MIN_FURTHER_S = 1.0
#: Shortest CP-SAT solve, and the most time kept back for each later batch still hopeful.
MIN_SOLVE_S = 0.2
RESERVE_S = 1.0


def _prove_further(solves: list[BatchSolve], problems: Mapping[int, GenerationProblem],
                   everything: Sequence[Candidate], objective: str,
                   symmetric: Sequence[Sequence[int]], deadline: float, seed: int,
                   workers: int) -> list[Candidate]:
    """Spend the time pruned batches left on the most promising batch whose disaggregated
    solve stopped unproven (``solves`` is in the order solved, most promising first): solve
    it again from the best placement so far with all of that time, and keep the tighter
    bound. Returns the placements found. (A restart from a hint gains less than the same
    time given to the first solve, which is why batches get their time at once, with only a
    reserve for later hopeful ones; this spends what the reserve and pruning left.)"""
    left = deadline - time.perf_counter()
    unproven = next((s for s in solves if s.status == "FEASIBLE"), None)
    if unproven is None or left < MIN_FURTHER_S:
        return []
    pr = problems[unproven.batch]
    model = PlacementModel(pr, _model_objective(objective), colocated=False,
                           symmetric=symmetric)
    start = _best([c for c in everything if c.eval.batch == unproven.batch], objective)
    if start is not None:
        model.hint(start.eval.prefill, start.eval.decode)
    res = model.solve(time_limit_s=left, seed=seed, workers=workers)
    unproven.wall_s += res.wall_s
    if res.status in ("OPTIMAL", "FEASIBLE") and res.bound is not None:
        bound = _bound_value(objective, pr, res.bound)
        unproven.bound = bound if unproven.bound is None else _tighter(objective, bound,
                                                                         unproven.bound)
        unproven.status = res.status
    return [Candidate("cp-sat", evaluate(pr, p, q)) for p, q in res.solutions]


def _tighter(objective: str, a: float, b: float) -> float:
    return min(a, b) if objective == "tokens-per-s" else max(a, b)


def _pareto(cands: Sequence[Candidate]) -> list[Candidate]:
    """Tokens/s against $/Mtok: the candidates no other beats on both (one per batch size
    at most once each point), by batch size."""
    front: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (-c.eval.tokens_per_s, c.eval.cost_per_mtok)):
        if not front or c.eval.cost_per_mtok < front[-1].eval.cost_per_mtok - 1e-12:
            front.append(c)
    return sorted(front, key=lambda c: (c.eval.batch, c.eval.tokens_per_s))


def _infeasible_note(cands: Sequence[Candidate]) -> str:
    if all(not c.eval.fits for c in cands):
        return "does not fit the memory"
    misses = next(c.eval.slo_misses for c in cands if c.eval.fits)
    return "misses the SLOs (" + "; ".join(misses) + ")"


def largest_fitting_context(pr: GenerationProblem, max_context: int) -> int:
    """The longest context (0: none) for which a co-located first fit by memory places every
    group (bisection; KV reservations scale with the context)."""
    def fits(context: int) -> bool:
        scale = context / pr.workload.context
        scaled = replace(pr, kv_decode_bytes=tuple(b * scale for b in pr.kv_decode_bytes))
        return memory_fill(scaled) is not None

    lo, hi = 0, max_context
    if not fits(1):
        return 0
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _diagnose(spec: DecoderSpec, workload: Workload, targets: Targets, cluster: Cluster,
              rates: Sequence[DeviceRates], groups: Sequence[LayerGroup], batch: int,
              symmetric: list[list[int]], time_limit_s: float, seed: int,
              workers: int) -> InfeasibleError:
    """Why nothing was feasible: the memory (KV cache or weights), or the SLOs."""
    free = replace(targets, ttft_slo_s=None, tpot_slo_s=None)
    pr = build_problem(spec, workload, free, cluster, rates, groups, batch)
    fits = [evaluate(pr, *single_device(pr, d)) for d in range(len(pr.devices))]
    res = None
    if not any(f.fits for f in fits) and memory_fill(pr) is None:
        res = PlacementModel(pr, "ttft", symmetric=symmetric).solve(
            time_limit_s=time_limit_s, seed=seed, workers=workers)
    if res is not None and not res.solutions:
        per_token = spec.kv_bytes_per_token()
        weights = sum(pr.weight_bytes)
        largest = largest_fitting_context(pr, spec.max_context)
        if largest == 0:
            return InfeasibleError(
                f"model {spec.name!r}: its weights ({weights / GIB:.3g} GiB) and a batch of "
                f"{batch} prompts do not fit cluster {cluster.name!r} "
                f"({sum(pr.memory) / GIB:.3g} GiB on {len(pr.devices)} devices), at any context "
                f"(the KV cache takes {per_token:.6g} bytes per token per sequence)")
        return InfeasibleError(
            f"model {spec.name!r}: the KV cache ({per_token:.6g} bytes per token x context "
            f"{workload.context} x batch {batch} = {per_token * workload.context * batch / GIB:.3g}"
            f" GiB) fits on no device of cluster {cluster.name!r} beside the weights "
            f"({weights / GIB:.3g} GiB); the largest context that fits at batch {batch} is "
            f"{largest} tokens")
    best = {}
    for name, obj in (("TTFT", "ttft"), ("TPOT", "tpot_worst")):
        r = PlacementModel(pr, obj, symmetric=symmetric).solve(
            time_limit_s=time_limit_s, seed=seed, workers=workers)
        evs = [evaluate(pr, p, q) for p, q in r.solutions]
        evs += [f for f in fits if f.fits]
        ok = [e for e in evs if e.fits]
        if ok:
            best[name] = min(e.ttft_s if name == "TTFT" else e.tpot_worst_s for e in ok)
    parts = []
    if targets.ttft_slo_s is not None and "TTFT" in best:
        parts.append(f"--ttft-slo {targets.ttft_slo_s * 1e3:g} ms (best achievable TTFT "
                     f"{best['TTFT'] * 1e3:.4g} ms)")
    if targets.tpot_slo_s is not None and "TPOT" in best:
        parts.append(f"--tpot-slo {targets.tpot_slo_s * 1e3:g} ms (best achievable TPOT "
                     f"{best['TPOT'] * 1e3:.4g} ms)")
    return InfeasibleError(
        f"model {spec.name!r} on cluster {cluster.name!r} at batch {batch}: no placement meets "
        + " and ".join(parts or ["the SLOs together"])
        + ("" if len(parts) < 2 else " together"))
