"""The compile pipeline: ONNX -> analysis -> costs -> problem -> baselines + CP-SAT -> Plan.

``CompileOptions`` is the typed set of choices one compilation takes; ``compile_model``
returns every intermediate product (for the CLI, benchmarks and reports) and ``compile``
only the plan. ``write_plan`` writes a plan from any of the model forms ``compile`` accepts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from partitioner.cluster.file import load_cluster
from partitioner.cluster.precision import (
    PRECISIONS,
    device_precision,
    precision_name,
    rank,
    restrict_precision,
)
from partitioner.cluster.types import (
    DEFAULT_NETWORK_BANDWIDTH,
    DEFAULT_NETWORK_LATENCY_S,
    Cluster,
)
from partitioner.compile_measured import measured_compile, measures
from partitioner.costing.table import build_cost_table
from partitioner.costing.types import CostTable
from partitioner.errors import ClusterError, CostModelError, PlanError, ShapeError, SolverError
from partitioner.graph.analysis import AnalysedModel, analyse
from partitioner.plan import io as plan_io
from partitioner.plan.build import build_plan
from partitioner.plan.types import (
    Plan,
    Tolerance,
)
from partitioner.protocols import CostModel
from partitioner.registry import get_cost_model
from partitioner.solver import solve
from partitioner.solver.baselines import best_baseline, run_baselines
from partitioner.solver.build import build_problem
from partitioner.solver.evaluate import objective_value
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
def parse_tolerance(value: object) -> Tolerance:
    """``Tolerance``, ``{"atol": A, "rtol": R}`` or ``"atol=A,rtol=R"`` (either may be left
    out: 0) as a Tolerance; a one-line ``SolverError`` naming what is wrong otherwise."""
    if isinstance(value, Tolerance):
        fields: Mapping[str, object] = {"atol": value.atol, "rtol": value.rtol}
    elif isinstance(value, Mapping):
        fields = value
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or any("=" not in p for p in parts):
            raise _bad(SolverError, "tolerance", value, "'atol=A,rtol=R' (either may be left out)")
        fields = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in parts)}
    else:
        raise _bad(SolverError, "tolerance", value, "'atol=A,rtol=R' or {'atol': A, 'rtol': R}")
    unknown = sorted(set(fields) - {"atol", "rtol"})
    if unknown or not fields:
        raise _bad(SolverError, "tolerance", value, "keys atol and/or rtol"
                   + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else ""))
    out: dict[str, float] = {}
    for key, raw in fields.items():
        try:
            number = float(raw) if isinstance(raw, int | float | str) and not isinstance(
                raw, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not (math.isfinite(number) and number >= 0):
            raise _bad(SolverError, "tolerance", value, f"{key} a finite number >= 0")
        out[str(key)] = number
    return Tolerance(**out)


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
        precision: The lowest compute precision a device may have (``PRECISIONS``: ``f32``,
            ``f16``, ``bf16``); devices below it are left out of the problem. None: ``f32``,
            or every precision when ``tolerance`` is given.
        tolerance: The numeric tolerance the outputs may have, ``"atol=A,rtol=R"``, a mapping
            or a ``Tolerance``; allows lower-precision devices and is recorded in the plan
            (``Plan.tolerance``).
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
    precision: str | None = None
    tolerance: Tolerance | Mapping[str, float] | str | None = None

    @property
    def allowed_precision(self) -> str:
        """The lowest precision a device may compute in (see ``precision``)."""
        if self.precision is not None:
            return self.precision
        return PRECISIONS[-1] if self.tolerance is not None else PRECISIONS[0]

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
        if self.precision is not None:
            name = precision_name(self.precision)
            if name is None:
                raise _bad(SolverError, "precision", self.precision,
                           f"one of {', '.join(PRECISIONS)}")
            object.__setattr__(self, "precision", name)
        if self.tolerance is not None:
            object.__setattr__(self, "tolerance", parse_tolerance(self.tolerance))
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
    #: What the compiler decided for the user to read (devices left out, and why).
    notes: tuple[str, ...] = ()


def _precision_notes(full: Cluster, below: Mapping[str, str], opts: CompileOptions) -> list[str]:
    allowed = opts.allowed_precision
    if below:
        listed = ", ".join(f"{i} ({p})" for i, p in below.items())
        return [f"left out {listed}: below {allowed}; allow with --precision "
                f"{max(below.values(), key=rank)} or --tolerance atol=A,rtol=R"]
    if allowed == PRECISIONS[0] or any(device_precision(d) != PRECISIONS[0]
                                       for d in full.devices):
        return []
    note = f"no device of cluster {full.name!r} computes below f32: the plan is f32 throughout"
    if full.name == "local" and allowed == "bf16":
        from partitioner.cluster.local import cpu_has_native_bf16

        if not cpu_has_native_bf16():
            note += " (this CPU has no native bf16, so local offers no ov-cpu-bf16)"
    return [note]


def _network_notes(cluster: Cluster) -> list[str]:
    """Host pairs the plan's devices span that no link joins: their transfers are priced
    with the default network."""
    def host(device_id: str) -> str:
        return cluster.device(device_id).host or f"{device_id} (no host)"

    pairs = sorted({tuple(sorted((host(a), host(b)))) for a, b in cluster.unlinked_host_pairs})
    if not pairs:
        return []
    listed = ", ".join(f"{a} <-> {b}" for a, b in pairs)
    return [f"no [[link]] between hosts {listed}: priced as a "
            f"{DEFAULT_NETWORK_BANDWIDTH * 8 / 1e9:g} Gb/s network with "
            f"{DEFAULT_NETWORK_LATENCY_S * 1e3:g} ms per transfer (measure it: hetpart profile "
            "--links --ray ADDRESS --cluster FILE)"]


def spanning_devices(cluster: Cluster) -> list[str]:
    """Devices spanning several processors (``processor = "core0+core1"``, e.g. ``all-cores``
    of ``local-cores``). The solver's processor groups are disjoint, so it never sees them
    beside the devices they share: they compete as single-device plans (``_solve``)."""
    return [d.id for d in cluster.devices if d.processor and "+" in d.processor]


def _solve(problem: Problem, opts: CompileOptions, min_gain: float,
           progress: Callable[[float, float], None] | None) -> SolveReport:
    """``solve``, with devices spanning several processors each run alone: the problem is
    solved without them, and each one's single-device plan replaces that solution when it
    is better (a split must beat it by ``min_gain``), so a spanning device never runs at the
    same time as a device it shares a processor with."""
    def run(p: Problem) -> SolveReport:
        return solve(p, time_limit_s=opts.time_limit_s, seed=opts.seed, workers=opts.workers,
                     progress=progress, min_gain=min_gain)

    cluster = problem.cluster
    span = spanning_devices(cluster)
    if not span:
        return run(problem)
    singles = {}
    for s in span:
        alone = dataclasses.replace(problem, cluster=cluster.restricted_to([s]))
        singles[f"single:{s}"] = run_baselines(alone)[f"single:{s}"]
    rest = [d for d in cluster.device_ids if d not in span]
    pinned_to_span = any(d in span for d in problem.pins.values())
    report = None
    if rest and not pinned_to_span:
        report = run(dataclasses.replace(problem, cluster=cluster.restricted_to(rest)))
    best = best_baseline(problem, singles)
    if best is None or best.evaluation is None:
        if report is None:
            why = "; ".join(f"{k}: {v.note}" for k, v in singles.items())
            raise SolverError(f"no feasible placement: {why}")
        return dataclasses.replace(report, baselines={**report.baselines, **singles})
    value = objective_value(problem, best.evaluation)
    if report is not None:
        split = len(set(report.assignment.values())) > 1
        keep = report.objective * (1 + min_gain) < value if split else report.objective <= value
        if keep:
            bound = min(report.bound, value)
            return dataclasses.replace(
                report, bound=bound, baselines={**report.baselines, **singles},
                gap=(report.objective - bound) / report.objective if report.objective else 0.0)
    base = report.baselines if report is not None else {}
    bound = min(value, report.bound) if report is not None else value
    return SolveReport(
        assignment=dict(best.assignment), evaluation=best.evaluation, status="SINGLE_DEVICE",
        objective=value, bound=bound, gap=(value - bound) / value if value else 0.0,
        solve_time_s=report.solve_time_s if report is not None else 0.0, seed=opts.seed,
        workers=opts.workers, time_limit_s=opts.time_limit_s,
        baselines={**base, **singles},
        groups=report.groups if report is not None else {},
        clock_stopped=report.clock_stopped if report is not None else False,
        clock_stopped_stages=report.clock_stopped_stages if report is not None else ())


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
    full = resolve_cluster(cluster, opts.devices)
    resolved, below = restrict_precision(full, opts.allowed_precision)
    notes = _precision_notes(full, below, opts)
    for note in notes:
        log.info("%s", note)
    pinned_below = [spec for spec in opts.pins if spec.rpartition("=")[2].strip() in below]
    if pinned_below:
        raise ClusterError(f"--pin {', '.join(map(repr, pinned_below))}: the device computes "
                           f"below {opts.allowed_precision} (allow it with --precision or "
                           "--tolerance)")
    forbidden = [spec for spec in opts.forbidden
                 if spec.rpartition("=")[2].strip() not in below]
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
        forbidden=forbidden,
        objective=opts.objective,
        latency_target_s=opts.latency_target_s,
        max_partitions=opts.max_partitions,
    )
    if measures(resolved, opts):
        problem, report, plan = measured_compile(
            analysed, resolved, costs, problem, opts,
            lambda prob: _solve(prob, opts, 0.0, progress))
    else:
        min_gain = opts.min_gain
        if min_gain is None:
            min_gain = MEASURED_MIN_GAIN if all(d.local for d in resolved.devices) else 0.0
        report = _solve(problem, opts, min_gain, progress)
        log.info("solved: %s objective=%.6g bound=%.6g", report.status, report.objective,
                 report.bound)
        plan = build_plan(analysed, resolved, problem, report, costs)
    if opts.tolerance is not None:
        plan = dataclasses.replace(plan, tolerance=parse_tolerance(opts.tolerance))
    used = set(plan.partition_devices().values())
    notes += _network_notes(resolved.restricted_to([d.id for d in resolved.devices
                                                    if d.id in used]))
    return Compilation(analysed, resolved, costs, problem, report, plan, tuple(notes))


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
    compiled = compile_model(model, cluster, options)
    if isinstance(model, str | os.PathLike):  # Session reads (and hash-checks) the file
        return compiled.plan
    return dataclasses.replace(compiled.plan, source=compiled.analysed)


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

