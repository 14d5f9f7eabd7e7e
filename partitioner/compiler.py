"""The compile pipeline: ONNX -> analysis -> costs -> problem -> baselines + CP-SAT -> Plan."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import onnx

from partitioner.cluster.file import load_cluster
from partitioner.cluster.types import Cluster
from partitioner.costing.table import build_cost_table
from partitioner.costing.types import CostTable
from partitioner.errors import ClusterError
from partitioner.graph.analysis import AnalysedModel, analyse
from partitioner.plan.build import build_plan
from partitioner.plan.types import Plan
from partitioner.protocols import CostModel
from partitioner.solver import solve
from partitioner.solver.build import build_problem
from partitioner.solver.problem import OBJECTIVES, Problem, SolveReport

log = logging.getLogger(__name__)


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


#: Default ``min_gain`` for clusters measured on this machine (``local``, ``local-cores``).
MEASURED_MIN_GAIN = 0.05


def compile_model(
    model: str | os.PathLike[str] | onnx.ModelProto | AnalysedModel,
    cluster: Cluster | str,
    *,
    objective: str = "latency",
    devices: Sequence[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    pins: Sequence[str] = (),
    forbidden: Sequence[str] = (),
    latency_target_s: float | None = None,
    max_partitions: int | None = None,
    time_limit_s: float = 30.0,
    seed: int = 0,
    workers: int = 2,
    cost_model: CostModel | None = None,
    progress: Callable[[float, float], None] | None = None,
    cost_progress: Callable[[int, int], None] | None = None,
    min_gain: float | None = None,
) -> Compilation:
    """Compile ``model`` for ``cluster`` and return every intermediate product.

    Args:
        model: ONNX path, ModelProto, or an already analysed model.
        cluster: A Cluster or a cluster spec string (``local``, preset name, TOML path).
        objective: ``latency``, ``throughput`` or ``cost``.
        devices: Restrict the cluster to these device ids (one id: single-device plan).
        input_shapes: Concrete shapes for inputs with symbolic dimensions.
        pins: ``NODE_OR_OP_TYPE=DEVICE`` placements the plan must respect.
        forbidden: ``NODE_OR_OP_TYPE=DEVICE`` placements the plan must avoid.
        latency_target_s: Latency bound for the ``cost`` objective.
        max_partitions: Upper bound on the number of partitions.
        time_limit_s: Wall-clock limit of the solve (search, bound, refinement); loading,
            analysis, costing and writing come on top.
        seed: CP-SAT random seed (same input and seed give the same plan, unless the clock
            ends a solver stage on a loaded machine: ``SolveReport.clock_stopped``).
        workers: CP-SAT search workers.
        cost_model: Cost model; defaults to the cluster's default one.
        progress: Called with (best objective, bound) as the solver improves.
        cost_progress: Called with (done, total) while costs are measured.
        min_gain: Smallest predicted gain over the best single device that justifies a
            plan on several devices (a fraction; see ``solver.solve``). Default: 0 on
            spec-sheet clusters, ``MEASURED_MIN_GAIN`` when every device is measured here,
            whose costs carry run-to-run noise of that order.

    Returns:
        The compilation; ``.plan`` is what gets written and run.
    """
    if objective not in OBJECTIVES:
        raise ClusterError(f"--objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    analysed = model if isinstance(model, AnalysedModel) else analyse(model, input_shapes)
    resolved = resolve_cluster(cluster, devices)
    if devices:
        left_out = [spec for spec in pins if spec.rpartition("=")[2].strip() not in devices]
        if left_out:
            raise ClusterError(f"--pin {', '.join(map(repr, left_out))}: the device is not "
                               f"among --devices ({', '.join(devices)})")
    costs = build_cost_table(analysed, resolved, cost_model, progress=cost_progress)
    problem = build_problem(
        analysed.facts,
        resolved,
        costs,
        pins=pins,
        forbidden=forbidden,
        objective=objective,
        latency_target_s=latency_target_s,
        max_partitions=max_partitions,
    )
    if min_gain is None:
        min_gain = MEASURED_MIN_GAIN if all(d.local for d in resolved.devices) else 0.0
    report = solve(
        problem, time_limit_s=time_limit_s, seed=seed, workers=workers, progress=progress,
        min_gain=min_gain,
    )
    log.info("solved: %s objective=%.6g bound=%.6g", report.status, report.objective, report.bound)
    plan = build_plan(analysed, resolved, problem, report, costs)
    return Compilation(analysed, resolved, costs, problem, report, plan)


def compile(  # noqa: A001 - the public API name the issue asks for
    model: str | os.PathLike[str] | onnx.ModelProto,
    cluster: Cluster | str,
    objective: str = "latency",
    **options: object,
) -> Plan:
    """Compile ``model`` for ``cluster`` and return the plan (see ``compile_model``)."""
    return compile_model(model, cluster, objective=objective, **options).plan  # type: ignore[arg-type]
