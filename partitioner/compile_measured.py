"""The compile-time measurement loop: time the plan and every single device as they will run,
feed the times back as costs, re-solve, and keep a split only when it measures faster than
the best single device by more than the noise (``CompileOptions.measure_rounds``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from partitioner.cluster.types import Cluster
from partitioner.costing.types import CostTable, Supported
from partitioner.graph.analysis import AnalysedModel
from partitioner.plan.build import build_plan
from partitioner.plan.types import CompileMeasurements, MeasuredCandidate, Plan
from partitioner.profiling.cache import ProfileCache
from partitioner.runtime.measure import MeasuredPlan, measure_plans
from partitioner.solver.baselines import run_baselines
from partitioner.solver.bounds.cheap import lower_bound
from partitioner.solver.evaluate import evaluate, is_acceptable, objective_value
from partitioner.solver.problem import Problem, SolveReport

if TYPE_CHECKING:
    from partitioner.compiler import CompileOptions

log = logging.getLogger(__name__)


def measures(cluster: Cluster, opts: CompileOptions) -> bool:
    """Whether the compile-time measurement loop runs: every device is measured here, the
    objective is latency, and ``measure_rounds`` is not 0."""
    return (opts.measure_rounds > 0 and opts.objective == "latency"
            and all(d.local for d in cluster.devices))


def _digest(assignment: Mapping[str, str]) -> str:
    text = json.dumps(sorted(assignment.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class _Candidate:
    name: str
    round: int | None
    problem: Problem
    report: SolveReport
    plan: Plan
    measured: MeasuredPlan | None = None
    #: The singles timed in the same batch (name -> measurement).
    batch_singles: dict[str, MeasuredPlan] = field(default_factory=dict)

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.report.assignment.values())))

    def record(self) -> MeasuredCandidate:
        assert self.measured is not None
        return MeasuredCandidate(
            self.name, self.round, _digest(self.report.assignment), len(self.plan.partitions),
            self.devices, float(self.report.evaluation.latency_s), self.measured.timing,
            self.measured.cached)


class _Costs:
    """Base costs scaled by measurements: a device's whole-model time, overridden by the
    time of each measured partition (its nodes' costs scaled so their sum plus the call
    overhead equals the measured partition time)."""

    def __init__(self, base: CostTable, cluster: Cluster) -> None:
        self.base, self.cluster = base, cluster
        self.whole: dict[str, float] = {}
        self.parts: dict[tuple[str, str], float] = {}

    def _scale(self, plan: Plan, measured: MeasuredPlan) -> dict[tuple[str, str], float]:
        scales: dict[tuple[str, str], float] = {}
        whole = len(plan.partitions) == 1  # one call: the end-to-end time is its time
        for p in plan.partitions:
            seconds = measured.timing.median_s if whole else measured.partition_s.get(p.index)
            total = sum(self.base.latency(n, p.device) for n in p.nodes)
            if seconds is None or total <= 0:
                continue
            target = max(seconds - self.cluster.device(p.device).call_overhead_s, 0.0)
            scales.update({(n, p.device): target / total for n in p.nodes})
        return scales

    def add_single(self, device: str, plan: Plan, measured: MeasuredPlan) -> None:
        scales = self._scale(plan, measured)
        if scales:
            self.whole[device] = next(iter(scales.values()))

    def add_split(self, plan: Plan, measured: MeasuredPlan) -> None:
        self.parts.update(self._scale(plan, measured))

    def table(self, parts: Mapping[tuple[str, str], float] | None = None,
              whole_only: bool = False) -> CostTable:
        overrides = {} if whole_only else dict(self.parts)
        overrides.update(parts or {})
        table = CostTable()
        for (node, device), cost in self.base.items():
            if isinstance(cost, Supported):
                scale = overrides.get((node, device), self.whole.get(device, 1.0))
                cost = dataclasses.replace(cost, latency_s=cost.latency_s * scale)
            table.set(node, device, cost)
        return table


def measured_compile(
    analysed: AnalysedModel, cluster: Cluster, costs: CostTable, problem: Problem,
    opts: CompileOptions, solve_problem: Callable[[Problem], SolveReport],
) -> tuple[Problem, SolveReport, Plan]:
    """The compile-time measurement loop (see ``CompileOptions.measure_rounds``):
    ``solve_problem`` is the compiler's solve, called again on measured costs."""
    cache = ProfileCache()
    scaled = _Costs(costs, cluster)

    def problem_with(table: CostTable) -> Problem:
        return dataclasses.replace(problem, costs=table)

    def solved(r: int, prob: Problem) -> _Candidate:
        report = solve_problem(prob)
        return _Candidate(f"round {r}", r, prob, report,
                          build_plan(analysed, cluster, prob, report, prob.costs))

    first = solved(0, problem)
    singles: dict[str, _Candidate] = {}
    for device in cluster.devices:
        base = first.report.baselines.get(f"single:{device.id}")
        if base is None or base.evaluation is None or not is_acceptable(problem,
                                                                          base.evaluation):
            continue
        report = dataclasses.replace(first.report, assignment=dict(base.assignment),
                                     evaluation=base.evaluation, status="SINGLE_DEVICE",
                                     objective=objective_value(problem, base.evaluation))
        name = f"single:{device.id}"
        singles[name] = _Candidate(name, None, problem, report,
                                   build_plan(analysed, cluster, problem, report, costs))
    single_of = {_digest(c.report.assignment): c for c in singles.values()}
    rounds: list[_Candidate] = []
    seen: set[str] = set()
    current = first
    for r in range(opts.measure_rounds):
        digest = _digest(current.report.assignment)
        same = single_of.get(digest)
        batch = {n: c.plan for n, c in singles.items()}
        others: dict[str, _Candidate] = {}
        if same is None:
            batch[current.name] = current.plan
            others = _alternatives(analysed, cluster, current.problem, current,
                                   seen | set(single_of))
            batch.update({n: c.plan for n, c in others.items()})
        timed = measure_plans(analysed, batch, cache)
        for name, c in singles.items():
            c.measured = timed[name]
            scaled.add_single(name.split(":", 1)[1], c.plan, timed[name])
        current.measured = timed[same.name if same is not None else current.name]
        current.batch_singles = {n: timed[n] for n in singles}
        if same is None:
            scaled.add_split(current.plan, current.measured)
        rounds.append(current)
        seen.add(digest)
        for name, other in others.items():
            other.measured, other.batch_singles = timed[name], current.batch_singles
            scaled.add_split(other.plan, other.measured)
            rounds.append(other)
            seen.add(_digest(other.report.assignment))
        if same is not None or r + 1 >= opts.measure_rounds:
            break
        nxt = solved(r + 1, problem_with(scaled.table()))
        if _digest(nxt.report.assignment) in seen:  # stable
            break
        current = nxt
    return _choose(analysed, cluster, problem, opts, scaled, rounds, singles)


#: Alternatives measured beside each round's split: its partitions with the longest predicted
#: calls, each moved whole onto another device (where it merges with that device's
#: neighbouring partitions), at most this many per round.
MAX_ALTERNATIVES = 4


def _alternatives(analysed: AnalysedModel, cluster: Cluster, problem: Problem,
                  current: _Candidate, skip: set[str]) -> dict[str, _Candidate]:
    """The plans the solver weighed at each cut of ``current``: one partition on another
    device that can run all of it, within memory; timed beside ``current``, their partition
    times become costs too, so the next solve knows what each cut really costs both ways.
    Assignments in ``skip`` (digests already timed) are left out."""
    plan, report = current.plan, current.report
    if len(plan.partitions) < 2:
        return {}
    out: dict[str, _Candidate] = {}
    for part in sorted(plan.partitions, key=plan.predicted_call_s, reverse=True):
        for device in cluster.devices:
            if device.id == part.device or any(
                    not isinstance(problem.costs.get(n, device.id), Supported)
                    or problem.pins.get(n, device.id) != device.id
                    or device.id in problem.forbidden.get(n, ()) for n in part.nodes):
                continue
            assignment = {**report.assignment, **dict.fromkeys(part.nodes, device.id)}
            digest = _digest(assignment)
            ev = evaluate(problem, assignment)
            if digest in skip or not is_acceptable(problem, ev):
                continue
            skip.add(digest)
            name = f"{current.name}: p{part.index} on {device.id}"
            moved = dataclasses.replace(report, assignment=assignment, evaluation=ev,
                                        objective=objective_value(problem, ev),
                                        status="FEASIBLE")
            out[name] = _Candidate(name, current.round, problem, moved,
                                   build_plan(analysed, cluster, problem, moved, problem.costs))
            if len(out) >= MAX_ALTERNATIVES:
                return out
    return out


def _choose(
    analysed: AnalysedModel, cluster: Cluster, problem: Problem, opts: CompileOptions,
    scaled: _Costs, rounds: list[_Candidate], singles: dict[str, _Candidate],
) -> tuple[Problem, SolveReport, Plan]:
    """The best measured candidate; a split only when it beats the best single device (timed
    in the same batch) by more than the measured noise or the explicit ``min_gain``."""
    splits = [c for c in rounds if c.measured is not None and len(c.devices) > 1]
    best_split = min(splits, key=lambda c: c.measured.timing.median_s,  # type: ignore[union-attr]
                     default=None)
    timed_singles = {n: c for n, c in singles.items() if c.measured is not None}
    if best_split is not None and best_split.batch_singles:
        reference = best_split.batch_singles
    else:
        reference = {n: c.measured for n, c in timed_singles.items() if c.measured}
    best_single = min(reference, key=lambda n: reference[n].timing.median_s, default=None)
    chosen: _Candidate | None
    note = ""
    gain, source = 0.0, "option" if opts.min_gain is not None else "noise"
    if best_split is not None and best_single is not None:
        split_t = best_split.measured.timing  # type: ignore[union-attr]
        single_t = reference[best_single].timing
        if opts.min_gain is not None:
            gain = opts.min_gain
        else:
            noise = max(split_t.noise_s, single_t.noise_s)
            gain = noise / split_t.median_s if split_t.median_s > 0 else 0.0
        if single_t.median_s > split_t.median_s * (1 + gain):
            chosen = best_split
            note = (f"{best_split.name} measured {split_t.median_s * 1e3:.3f} ms, faster than "
                    f"{best_single} ({single_t.median_s * 1e3:.3f} ms) by more than "
                    f"{gain:.1%}")
        else:
            chosen = singles[best_single]
            note = (f"{best_split.name} measured {split_t.median_s * 1e3:.3f} ms, not faster "
                    f"than {best_single} ({single_t.median_s * 1e3:.3f} ms) by more than "
                    f"{gain:.1%}: the single device runs it")
    elif best_single is not None:
        chosen = singles[best_single]
        note = f"{best_single} measured fastest; no split plan was proposed"
    else:
        chosen = rounds[0] if rounds else None
        note = "no single-device plan could be measured"
    if chosen is None:  # nothing measured at all: the first solve as it was
        first = rounds[0]
        return first.problem, first.report, first.plan
    if chosen.round is None and chosen.name in reference:
        # The single device as it measured in the batch the decision compared, not in the
        # last batch it was timed in: its prediction is the figure the record shows.
        chosen.measured = reference[chosen.name]
        scaled.add_single(chosen.name.split(":", 1)[1], chosen.plan, chosen.measured)
    problem_out, report, plan = _final(analysed, cluster, problem, scaled, chosen)
    singles_record = tuple(
        dataclasses.replace(singles[n].record(), measured=reference[n].timing,
                            cached=reference[n].cached)
        for n in singles if n in reference)
    record = CompileMeasurements(
        rounds=tuple(c.record() for c in rounds if c.measured is not None),
        singles=singles_record, chosen=chosen.name, min_gain=gain, min_gain_source=source,
        note=note)
    log.info("measured at compile: %s", note)
    return problem_out, report, dataclasses.replace(plan, measured=record)



def _final(analysed: AnalysedModel, cluster: Cluster, problem: Problem, scaled: _Costs,
           chosen: _Candidate) -> tuple[Problem, SolveReport, Plan]:
    """The chosen candidate rebuilt on the costs its measurement gave, so that its predicted
    latency is the measured one; as it was when the re-cut would differ from what ran."""
    assert chosen.measured is not None
    if chosen.round is None:
        table = scaled.table(whole_only=True)
    else:
        table = scaled.table(scaled._scale(chosen.plan, chosen.measured))
    final = dataclasses.replace(problem, costs=table)
    ev = evaluate(final, chosen.report.assignment)
    value = objective_value(final, ev)
    bound = min(lower_bound(final), value)
    report = dataclasses.replace(
        chosen.report, evaluation=ev, objective=value, bound=bound,
        gap=(value - bound) / value if value > 0 else 0.0,
        baselines=run_baselines(final),
        status="SINGLE_DEVICE" if chosen.round is None else (
            "OPTIMAL" if value - bound <= 1e-12 else "FEASIBLE"))
    plan = build_plan(analysed, cluster, final, report, table)
    if [p.nodes for p in plan.partitions] != [p.nodes for p in chosen.plan.partitions]:
        log.info("the measured costs cut %s differently; keeping it as measured", chosen.name)
        return chosen.problem, chosen.report, chosen.plan
    return final, report, plan
