"""The compile pipeline: ONNX -> analysis -> costs -> problem -> baselines + CP-SAT -> Plan.

``CompileOptions`` is the typed set of choices one compilation takes; ``compile_model``
returns every intermediate product (for the CLI, benchmarks and reports) and ``compile``
only the plan. ``write_plan`` writes a plan from any of the model forms ``compile`` accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from partitioner.cluster.file import load_cluster
from partitioner.cluster.types import Cluster
from partitioner.costing.table import build_cost_table
from partitioner.costing.types import CostTable, Supported
from partitioner.errors import ClusterError, CostModelError, PlanError, ShapeError, SolverError
from partitioner.graph.analysis import AnalysedModel, analyse
from partitioner.plan import io as plan_io
from partitioner.plan.build import build_plan
from partitioner.plan.types import (
    CompileMeasurements,
    MeasuredCandidate,
    MeasuredLatency,
    Plan,
)
from partitioner.profiling.cache import ProfileCache
from partitioner.protocols import CostModel
from partitioner.registry import get_cost_model
from partitioner.runtime.measure import MeasuredPlan, measure_plans
from partitioner.solver import solve
from partitioner.solver.baselines import run_baselines
from partitioner.solver.bounds.cheap import lower_bound
from partitioner.solver.build import build_problem
from partitioner.solver.evaluate import evaluate, is_acceptable, objective_value
from partitioner.solver.problem import OBJECTIVES, Problem, SolveReport

log = logging.getLogger(__name__)

#: What ``compile``, ``compile_model`` and ``write_plan`` accept as the model.
ModelInput = str | os.PathLike[str] | onnx.ModelProto | AnalysedModel

#: Default ``min_gain`` for clusters measured on this machine (``local``, ``local-cores``)
#: when the compile-time measurement loop is off (``measure_rounds=0``); with it on, the
#: measured noise decides instead.
MEASURED_MIN_GAIN = 0.05
#: Feedback rounds of the compile-time measurement loop (clusters measured here).
MEASURE_ROUNDS = 3


def _bad(error: type[Exception], name: str, value: object, expected: str) -> Exception:
    return error(f"CompileOptions {name}={value!r}: expected {expected}")


def _strings(name: str, value: object, error: type[Exception]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _bad(error, name, value, "a list of strings")
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise _bad(error, name, value, "a list of non-empty strings")
    return tuple(value)


def _number(name: str, value: object, kind: type, minimum: float, strict: bool) -> None:
    """Refuse ``value`` unless it is a finite ``kind`` above (``strict``) or at ``minimum``."""
    kinds = (int,) if kind is int else (int, float)
    ok = (
        isinstance(value, kinds)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not ok:
        what = "integer" if kind is int else "number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise _bad(SolverError, name, value, f"a finite {what} {bound}")


@dataclass(frozen=True)
class CompileOptions:
    """What one compilation optimises and under which constraints.

    Every field has the default ``hetpart compile`` uses; a bad value raises a
    ``PartitionerError`` naming the field and the value when the options are made. Lists
    are stored as tuples (shapes as ``{name: tuple}``), so options compare and hash by value.

    Attributes:
        objective: ``latency`` (one inference, end to end), ``throughput`` (pipelined:
            the busiest device or link) or ``cost`` (price per inference, under
            ``latency_target_s``).
        devices: Restrict the cluster to these device ids (one id: a single-device plan);
            None uses every device.
        input_shapes: Concrete shapes for inputs with symbolic dimensions,
            ``{"x": (1, 3, 224, 224)}``; ignored when the model is already analysed.
        pins: ``NODE_OR_OP_TYPE=DEVICE`` placements the plan must respect.
        forbidden: ``NODE_OR_OP_TYPE=DEVICE`` placements the plan must avoid.
        latency_target_s: Latency bound in seconds; required by, and only allowed with,
            the ``cost`` objective.
        max_partitions: Upper bound on the number of partitions (runner calls); None: any.
        time_limit_s: Wall-clock limit of the solve (search, bound, refinement); loading,
            analysis, costing, the baselines and writing come on top.
        seed: CP-SAT random seed, 0 to 2**31 - 1 (same input and seed give the same
            plan, unless the clock ends a solver stage on a loaded machine:
            ``Plan.solver.clock_stopped``).
        workers: CP-SAT search workers.
        min_gain: Smallest gain over the best single device, as a fraction (0.05 = 5 %),
            that justifies a plan on several devices. None: 0 on spec-sheet clusters; on
            clusters measured here, the measured noise of the split plan and the best
            single-device plan, timed together (``MEASURED_MIN_GAIN`` of the predicted
            latency when ``measure_rounds`` is 0). When the loop runs, the gain is judged on
            measured latencies.
        measure_rounds: On clusters whose devices are all measured here and the latency
            objective: time every device's whole-model plan and the compiled plan as they
            run, feed the measured partition times back into the costs, re-solve, and
            repeat until the assignment is stable or this many rounds; the plan is the best
            measured candidate, and a split only when it measures faster than the best
            single device by more than ``min_gain``. 0 turns the loop off.
        cost_model: A registered cost model name (``roofline``, ``profiled``, ``fitted``:
            the files of ``cost_models/``, created with default options), a ``CostModel``
            object, or None for the cluster's default (``costing.table.default_cost_model``:
            profiled on clusters with devices here, roofline otherwise).
    """

    objective: str = "latency"
    devices: Sequence[str] | None = None
    input_shapes: Mapping[str, Sequence[int]] | None = field(default=None, hash=False)
    pins: Sequence[str] = ()
    forbidden: Sequence[str] = ()
    latency_target_s: float | None = None
    max_partitions: int | None = None
    time_limit_s: float = 30.0
    seed: int = 0
    workers: int = 2
    min_gain: float | None = None
    cost_model: str | CostModel | None = field(default=None, hash=False)
    measure_rounds: int = MEASURE_ROUNDS

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise _bad(SolverError, "objective", self.objective,
                       f"one of {', '.join(OBJECTIVES)}")
        if self.objective == "cost" and self.latency_target_s is None:
            raise SolverError("CompileOptions objective='cost' needs latency_target_s")
        if self.latency_target_s is not None:
            if self.objective != "cost":
                raise SolverError(
                    f"CompileOptions latency_target_s={self.latency_target_s!r} applies only "
                    f"to objective='cost' (got objective={self.objective!r})")
            _number("latency_target_s", self.latency_target_s, float, 0.0, strict=True)
        if self.devices is not None:
            devices = _strings("devices", self.devices, ClusterError)
            if not devices:
                raise _bad(ClusterError, "devices", self.devices, "at least one device id")
            object.__setattr__(self, "devices", devices)
        object.__setattr__(self, "pins", _strings("pins", self.pins, SolverError))
        object.__setattr__(self, "forbidden", _strings("forbidden", self.forbidden, SolverError))
        if self.input_shapes is not None:
            object.__setattr__(self, "input_shapes", _shapes(self.input_shapes))
        if self.max_partitions is not None:
            _number("max_partitions", self.max_partitions, int, 1, strict=False)
        _number("time_limit_s", self.time_limit_s, float, 0.0, strict=True)
        _number("seed", self.seed, int, 0, strict=False)
        if self.seed > 2**31 - 1:
            raise _bad(SolverError, "seed", self.seed, "an integer from 0 to 2**31 - 1")
        _number("workers", self.workers, int, 1, strict=False)
        if self.min_gain is not None:
            _number("min_gain", self.min_gain, float, 0.0, strict=False)
        _number("measure_rounds", self.measure_rounds, int, 0, strict=False)
        model = self.cost_model
        if model is not None and not isinstance(model, str) and not hasattr(model, "estimate"):
            raise _bad(CostModelError, "cost_model", model,
                       "a cost model name or an object with estimate(model, node, device)")


def _shapes(value: object) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise _bad(ShapeError, "input_shapes", value, "a mapping of input name to dimensions")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, dims in value.items():
        if (not isinstance(name, str) or isinstance(dims, str) or not isinstance(dims, Sequence)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in dims)):
            raise ShapeError(f"CompileOptions input_shapes[{name!r}]={dims!r}: expected a "
                             "list of non-negative integers")
        shapes[name] = tuple(dims)
    return shapes


@dataclass(frozen=True)
class Compilation:
    """Everything one compilation produced, for the CLI, the plan writer and reports."""

    analysed: AnalysedModel
    cluster: Cluster
    costs: CostTable
    problem: Problem
    report: SolveReport
    plan: Plan


def resolve_cluster(cluster: Cluster | str, devices: Sequence[str] | None = None) -> Cluster:
    """Load ``cluster`` (preset, ``local``, ``local-cores`` or TOML path) and restrict it.

    Raises:
        ClusterError: a device named in ``devices`` is not in the cluster (all are listed).
    """
    resolved = load_cluster(cluster) if isinstance(cluster, str) else cluster
    if not devices:
        return resolved
    unknown = [d for d in devices if d not in resolved.device_ids]
    if unknown:
        raise ClusterError(
            f"--devices: {', '.join(unknown)} not in cluster {resolved.name!r} "
            f"(devices: {', '.join(resolved.device_ids)})"
        )
    return resolved.restricted_to(list(devices))


def _cost_model(choice: str | CostModel | None) -> CostModel | None:
    if isinstance(choice, str):
        return get_cost_model(choice)
    return choice


def compile_model(
    model: ModelInput,
    cluster: Cluster | str,
    options: CompileOptions | None = None,
    *,
    progress: Callable[[float, float], None] | None = None,
    cost_progress: Callable[[int, int], None] | None = None,
) -> Compilation:
    """Compile ``model`` for ``cluster`` and return every intermediate product.

    Args:
        model: ONNX path, ModelProto, or an already analysed model.
        cluster: A Cluster or a cluster spec string (``local``, preset name, TOML path).
        options: What to optimise and under which constraints (defaults: ``CompileOptions()``).
        progress: Called with (best objective, bound) as the solver improves.
        cost_progress: Called with (done, total) while costs are measured.

    Returns:
        The compilation; ``.plan`` is what gets written and run.

    Raises:
        PartitionerError: the model, cluster or options are invalid (each error names the
            offending file, node, device or option), or no placement is feasible.
    """
    opts = options if options is not None else CompileOptions()
    analysed = model if isinstance(model, AnalysedModel) else analyse(model, opts.input_shapes)
    resolved = resolve_cluster(cluster, opts.devices)
    if opts.devices:
        left_out = [spec for spec in opts.pins
                    if spec.rpartition("=")[2].strip() not in opts.devices]
        if left_out:
            raise ClusterError(f"--pin {', '.join(map(repr, left_out))}: the device is not "
                               f"among --devices ({', '.join(opts.devices)})")
    costs = build_cost_table(analysed, resolved, _cost_model(opts.cost_model),
                             progress=cost_progress)
    problem = build_problem(
        analysed.facts,
        resolved,
        costs,
        pins=opts.pins,
        forbidden=opts.forbidden,
        objective=opts.objective,
        latency_target_s=opts.latency_target_s,
        max_partitions=opts.max_partitions,
    )
    if measures(resolved, opts):
        problem, report, plan = _measured(analysed, resolved, costs, problem, opts, progress)
        return Compilation(analysed, resolved, costs, problem, report, plan)
    min_gain = opts.min_gain
    if min_gain is None:
        min_gain = MEASURED_MIN_GAIN if all(d.local for d in resolved.devices) else 0.0
    report = solve(
        problem, time_limit_s=opts.time_limit_s, seed=opts.seed, workers=opts.workers,
        progress=progress, min_gain=min_gain,
    )
    log.info("solved: %s objective=%.6g bound=%.6g", report.status, report.objective, report.bound)
    plan = build_plan(analysed, resolved, problem, report, costs)
    return Compilation(analysed, resolved, costs, problem, report, plan)


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
        t = self.measured.timing
        return MeasuredCandidate(
            self.name, self.round, _digest(self.report.assignment), len(self.plan.partitions),
            self.devices, float(self.report.evaluation.latency_s),
            MeasuredLatency(t.median_s, t.p10_s, t.p90_s, t.samples, t.noise_s),
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


def _measured(
    analysed: AnalysedModel, cluster: Cluster, costs: CostTable, problem: Problem,
    opts: CompileOptions, progress: Callable[[float, float], None] | None,
) -> tuple[Problem, SolveReport, Plan]:
    """The compile-time measurement loop (see ``CompileOptions.measure_rounds``)."""
    cache = ProfileCache()
    scaled = _Costs(costs, cluster)

    def problem_with(table: CostTable) -> Problem:
        return dataclasses.replace(problem, costs=table)

    def solved(r: int, prob: Problem) -> _Candidate:
        report = solve(prob, time_limit_s=opts.time_limit_s, seed=opts.seed,
                       workers=opts.workers, progress=progress, min_gain=0.0)
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
        if same is None:
            batch[current.name] = current.plan
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
        if same is not None or r + 1 >= opts.measure_rounds:
            break
        nxt = solved(r + 1, problem_with(scaled.table()))
        if _digest(nxt.report.assignment) in seen:  # stable
            break
        current = nxt
    return _choose(analysed, cluster, problem, opts, scaled, rounds, singles)


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
    problem_out, report, plan = _final(analysed, cluster, problem, scaled, chosen)
    singles_record = tuple(
        dataclasses.replace(singles[n].record(), measured=_latency(reference[n]),
                            cached=reference[n].cached)
        for n in singles if n in reference)
    record = CompileMeasurements(
        rounds=tuple(c.record() for c in rounds if c.measured is not None),
        singles=singles_record, chosen=chosen.name, min_gain=gain, min_gain_source=source,
        note=note)
    log.info("measured at compile: %s", note)
    return problem_out, report, dataclasses.replace(plan, measured=record)


def _latency(m: MeasuredPlan) -> MeasuredLatency:
    t = m.timing
    return MeasuredLatency(t.median_s, t.p10_s, t.p90_s, t.samples, t.noise_s)


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


def compile(  # noqa: A001 - the public API name the issue asks for
    model: ModelInput,
    cluster: Cluster | str,
    options: CompileOptions | None = None,
) -> Plan:
    """Compile ``model`` for ``cluster`` and return the plan.

    Args:
        model: ONNX path, in-memory ModelProto, or an already analysed model.
        cluster: A Cluster, or ``local``, ``local-cores``, a preset name or a TOML path.
        options: What to optimise and under which constraints (defaults: ``CompileOptions()``).

    Returns:
        The plan: ``partitioner.Session(plan)`` runs it, ``partitioner.write_plan(plan,
        model, plan_dir)`` writes it.

    Example:
        >>> opts = CompileOptions(objective="latency", time_limit_s=5)  # doctest: +SKIP
        >>> plan = compile("model.onnx", "cpu+l4", opts)                 # doctest: +SKIP
    """
    return compile_model(model, cluster, options).plan


def write_plan(
    plan: Plan,
    model: ModelInput,
    plan_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    annotate: bool = False,
) -> Path:
    """Write ``plan`` and its partitions into ``plan_dir``, cutting them from ``model``.

    The model may be given in any form ``compile`` takes; a path or ModelProto is analysed
    again with the plan's input shapes, and must hash to the model the plan was compiled
    from. Pass the ``AnalysedModel`` (``compile_model(...).analysed``) to skip the analysis.

    Args:
        plan: The plan (from ``compile``, ``compile_model`` or ``load_plan``).
        model: The model the plan was compiled from.
        plan_dir: Target directory; created when absent.
        overwrite: Replace an existing plan there (only its plan files are removed).
        annotate: Also write ``annotated.onnx`` (each node's device and partition).

    Returns:
        The path of ``plan.json``.

    Raises:
        PlanError: ``model`` is not the plan's model (SHA-256 differs), or the plan cannot
            be written (see ``partitioner.plan.io.write_plan``).
    """
    analysed = model if isinstance(model, AnalysedModel) else analyse(
        model, {t.name: t.shape for t in plan.model.inputs})
    actual = analysed.facts.model_sha256
    if actual != plan.model.sha256:
        raise PlanError(
            f"model {analysed.source} does not match the plan: sha256 {actual[:12]}... but "
            f"the plan was compiled for {plan.model.sha256[:12]}... ({plan.model.name})")
    return plan_io.write_plan(
        plan, analysed, Path(plan_dir), overwrite=overwrite, annotate=annotate)

