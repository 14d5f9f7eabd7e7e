"""Report data: plain dataclasses built by pure functions of a Plan and optional measurements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from partitioner.plan.types import BaselineSummary, CompileMeasurements, NodeCost, Plan
from partitioner.report.fmt import fmt_money, fmt_time
from partitioner.report.inputs import GraphDetail, Measurements, NodeEdge
from partitioner.report.moves import MoveEstimate, NodeContext, analyse_node
from partitioner.report.resources import DeviceRow, device_usage
from partitioner.report.timeline import Bar, measured_timeline, predicted_timeline


@dataclass(frozen=True)
class Summary:
    """The headline numbers: what was compiled, how good it is proven to be, how it measured.

    ``objective_value`` and ``bound`` are in seconds for the latency and throughput
    objectives and in price per 1,000 inferences for ``cost``. ``prediction_error`` is
    ``measured / predicted - 1`` (positive: slower than predicted).
    """

    model: str
    model_sha256: str
    cluster: str
    devices: tuple[str, ...]
    objective: str
    latency_target_s: float | None
    status: str
    objective_value: float
    bound: float
    gap: float
    solve_time_s: float
    time_limit_s: float
    seed: int
    workers: int
    predicted_latency_s: float
    predicted_stage_s: float
    cost_per_1k: float
    energy_j: float
    num_nodes: int
    num_partitions: int
    num_transfers: int
    transfer_bytes: int
    devices_used: tuple[str, ...]
    num_groups: int
    measured_latency_s: float | None = None
    prediction_error: float | None = None
    repeat: int = 0
    emulated: dict[str, str] = field(default_factory=dict)
    measured_throughput_per_s: float | None = None
    compiled_with: dict[str, str | None] = field(default_factory=dict)
    #: The compile-time measurement rounds (``Plan.measured``); None when not measured.
    compile_measured: CompileMeasurements | None = None


@dataclass(frozen=True)
class BaselineRow:
    """A baseline (or the plan itself, ``is_plan``) and the plan's speedup over it.

    ``speedup`` is the baseline's value over the plan's in the objective's
    :class:`Comparison` (for ``cost``: the plan's saving in price). ``over_target``: its
    latency exceeds the cost objective's latency target, so it is no feasible answer to it.
    """

    name: str
    latency_s: float | None
    stage_s: float | None
    note: str
    speedup: float | None
    is_plan: bool = False
    cost_per_1k: float | None = None
    over_target: bool = False


@dataclass(frozen=True)
class Comparison:
    """What the plan and its baselines are compared on, and the words the renderers use."""

    metric: str  # "latency", "stage time", "price per 1k inferences"
    field: str  # the BaselineRow attribute compared: latency_s, stage_s or cost_per_1k
    ratio: str  # "speedup" or "saving": baseline value / plan value
    better: str  # what a ratio above 1 means the plan is: "faster" or "cheaper"
    fmt: Callable[[float | None], str]

    @property
    def priced(self) -> bool:
        """Compared on price per 1k inferences (the reports then show a price column)."""
        return self.field == "cost_per_1k"

    def value(self, row: BaselineRow | BaselineSummary) -> float | None:
        """The compared value of a baseline (None: infeasible, or not recorded)."""
        value: float | None = getattr(row, self.field)
        return value


_COMPARISONS = {
    "latency": Comparison("latency", "latency_s", "speedup", "faster", fmt_time),
    "throughput": Comparison("stage time", "stage_s", "speedup", "faster", fmt_time),
    "cost": Comparison("price per 1k inferences", "cost_per_1k", "saving", "cheaper", fmt_money),
}


def comparison(objective: str) -> Comparison:
    """How baselines are compared for ``objective`` (unknown ones: on latency)."""
    return _COMPARISONS.get(objective, _COMPARISONS["latency"])


@dataclass(frozen=True)
class TensorRow:
    """A boundary tensor of a partition; ``peer`` is the other partition (None: model I/O)."""

    name: str
    nbytes: int
    peers: tuple[int, ...]
    graph_io: bool


@dataclass(frozen=True)
class PartitionRow:
    """One runner call: device, size, boundary tensors, predicted against measured time."""

    index: int
    device: str
    num_nodes: int
    first_nodes: tuple[str, ...]
    inputs: tuple[TensorRow, ...]
    outputs: tuple[TensorRow, ...]
    input_bytes: int
    output_bytes: int
    predicted_start_s: float
    predicted_end_s: float
    predicted_s: float  # the whole call: its nodes plus the device's per-call overhead
    measured_s: float | None
    error: float | None


@dataclass(frozen=True)
class TransferRow:
    """A cross-device copy, predicted and (when saved) measured."""

    tensor: str
    nbytes: int
    src_device: str
    dst_device: str
    src_partition: int
    dst_partition: int
    predicted_s: float
    measured_s: float | None


@dataclass(frozen=True)
class NodeRow:
    """One node: where it runs, its cost everywhere, what moving it would cost, and why."""

    name: str
    op_type: str
    device: str
    partition: int
    start_s: float
    end_s: float
    latency_s: float | None
    costs: tuple[tuple[str, NodeCost], ...]
    moves: tuple[MoveEstimate, ...]
    constraints: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Report:
    """Everything the renderers show; a pure function of the plan and its inputs."""

    summary: Summary
    baselines: tuple[BaselineRow, ...]
    devices: tuple[DeviceRow, ...]
    partitions: tuple[PartitionRow, ...]
    transfers: tuple[TransferRow, ...]
    nodes: tuple[NodeRow, ...]
    edges: tuple[NodeEdge, ...]
    partition_edges: tuple[tuple[int, int, int], ...]
    groups: dict[str, tuple[str, ...]]
    predicted_bars: tuple[Bar, ...]
    measured_bars: tuple[Bar, ...]
    device_order: tuple[str, ...]


def _speedup(base: float | None, mine: float) -> float | None:
    if base is None:
        return None
    if mine <= 0:
        return float("inf") if base > 0 else 1.0
    return base / mine


def _over_target(plan: Plan, latency_s: float | None) -> bool:
    """A baseline too slow for the cost objective's latency target (none: it cannot be)."""
    target = plan.latency_target_s
    if plan.objective != "cost" or target is None or latency_s is None:
        return False
    return latency_s > target


def _baselines(plan: Plan) -> tuple[BaselineRow, ...]:
    compare = comparison(plan.objective)
    s = plan.solver
    plan_row = BaselineRow(
        "hetpart plan",
        s.predicted_latency_s,
        s.predicted_stage_s,
        s.status,
        1.0,
        is_plan=True,
        cost_per_1k=s.cost_per_1k,
    )
    mine = compare.value(plan_row) or 0.0
    rows = []
    for name, b in sorted(plan.baselines.items()):
        late = _over_target(plan, b.latency_s)
        late_note = f"over the {fmt_time(plan.latency_target_s)} latency target" if late else ""
        rows.append(
            BaselineRow(
                name,
                b.latency_s,
                b.stage_s,
                "; ".join(n for n in (b.note, late_note) if n),
                _speedup(compare.value(b), mine),
                cost_per_1k=b.cost_per_1k,
                over_target=late,
            )
        )
    rows.sort(key=lambda r: (r.latency_s is None, -(r.speedup or 0.0), r.name))
    return (plan_row, *rows)


def _summary(plan: Plan, measurements: Measurements | None) -> Summary:
    s = plan.solver
    measured = measurements.latency_s if measurements else None
    error = None
    if measured is not None and s.predicted_latency_s > 0:
        error = measured / s.predicted_latency_s - 1.0
    return Summary(
        model=plan.model.name,
        model_sha256=plan.model.sha256,
        cluster=plan.cluster.name,
        devices=plan.cluster.device_ids,
        objective=plan.objective,
        latency_target_s=plan.latency_target_s,
        status=s.status,
        objective_value=s.objective,
        bound=s.bound,
        gap=s.gap,
        solve_time_s=s.solve_time_s,
        time_limit_s=s.time_limit_s,
        seed=s.seed,
        workers=s.workers,
        predicted_latency_s=s.predicted_latency_s,
        predicted_stage_s=s.predicted_stage_s,
        cost_per_1k=s.cost_per_1k,
        energy_j=s.energy_j,
        num_nodes=len(plan.placement),
        num_partitions=len(plan.partitions),
        num_transfers=len(plan.transfers),
        transfer_bytes=sum(t.nbytes for t in plan.transfers),
        devices_used=s.devices_used,
        num_groups=len(plan.groups),
        measured_latency_s=measured,
        prediction_error=error,
        repeat=measurements.repeat if measurements else 0,
        emulated=dict(measurements.emulated) if measurements else {},
        measured_throughput_per_s=measurements.throughput_per_s if measurements else None,
        compiled_with=dict(plan.compiled_with),
        compile_measured=plan.measured,
    )


def _partitions(plan: Plan, measurements: Measurements | None) -> tuple[PartitionRow, ...]:
    rows = []
    for p in plan.partitions:
        measured = measurements.partition_s.get(p.index) if measurements else None
        predicted = plan.predicted_call_s(p)
        error = measured / predicted - 1.0 if measured is not None and predicted > 0 else None
        rows.append(
            PartitionRow(
                index=p.index,
                device=p.device,
                num_nodes=len(p.nodes),
                first_nodes=p.nodes[:3],
                inputs=tuple(
                    TensorRow(
                        i.name,
                        i.nbytes,
                        () if i.from_partition is None else (i.from_partition,),
                        i.from_partition is None,
                    )
                    for i in p.inputs
                ),
                outputs=tuple(
                    TensorRow(o.name, o.nbytes, o.to_partitions, o.graph_output) for o in p.outputs
                ),
                input_bytes=sum(i.nbytes for i in p.inputs),
                output_bytes=sum(o.nbytes for o in p.outputs),
                predicted_start_s=p.predicted_start_s,
                predicted_end_s=p.predicted_end_s,
                predicted_s=predicted,
                measured_s=measured,
                error=error,
            )
        )
    return tuple(rows)


def _transfers(plan: Plan, measurements: Measurements | None) -> tuple[TransferRow, ...]:
    measured: dict[tuple[str, int, int], float] = {}
    if measurements:
        for t in measurements.transfers:
            measured[(t.tensor, t.src_partition, t.dst_partition)] = t.seconds
    return tuple(
        TransferRow(
            t.tensor,
            t.nbytes,
            t.src_device,
            t.dst_device,
            t.src_partition,
            t.dst_partition,
            t.predicted_s,
            measured.get((t.tensor, t.src_partition, t.dst_partition)),
        )
        for t in plan.transfers
    )


def _partition_edges(plan: Plan) -> tuple[tuple[int, int, int], ...]:
    """(from partition, to partition, bytes) summed over the tensors between them."""
    total: dict[tuple[int, int], int] = {}
    for p in plan.partitions:
        for i in p.inputs:
            if i.from_partition is not None:
                key = (i.from_partition, p.index)
                total[key] = total.get(key, 0) + i.nbytes
    return tuple((a, b, n) for (a, b), n in sorted(total.items()))


def execution_order(plan: Plan) -> list[str]:
    """Node names partition by partition (a topological order; plan.json sorts its keys)."""
    order = [n for p in plan.partitions for n in p.nodes]
    seen = set(order)
    return order + sorted(n for n in plan.placement if n not in seen)


def build_report(
    plan: Plan,
    measurements: Measurements | None = None,
    detail: GraphDetail | None = None,
) -> Report:
    """Assemble the report data.

    Args:
        plan: The plan.
        measurements: A saved run of this plan (already hash-checked), if any.
        detail: Node edges from the partition files; without it, move estimates ignore
            transfers.

    Returns:
        The report; render it with ``render_text`` or ``render_html``.
    """
    detail = detail or GraphDetail()
    devices = device_usage(plan, measurements)
    free = {d.id: d.capacity_bytes - d.used_bytes for d in devices}
    context = NodeContext.build(plan, detail, free)
    nodes = []
    for name in execution_order(plan):
        analysis = analyse_node(context, name)
        placed = plan.placement[name]
        chosen = placed.costs.get(placed.device)
        nodes.append(
            NodeRow(
                name=name,
                op_type=placed.op_type,
                device=placed.device,
                partition=placed.partition,
                start_s=placed.start_s,
                end_s=placed.end_s,
                latency_s=chosen.latency_s if chosen else None,
                costs=tuple(
                    (d, placed.costs[d]) for d in plan.cluster.device_ids if d in placed.costs
                ),
                moves=analysis.moves,
                constraints=analysis.constraints,
                why=analysis.why,
            )
        )
    return Report(
        summary=_summary(plan, measurements),
        baselines=_baselines(plan),
        devices=devices,
        partitions=_partitions(plan, measurements),
        transfers=_transfers(plan, measurements),
        nodes=tuple(nodes),
        edges=detail.edges,
        partition_edges=_partition_edges(plan),
        groups=dict(plan.groups),
        predicted_bars=predicted_timeline(plan),
        measured_bars=measured_timeline(plan, measurements) if measurements else (),
        device_order=plan.cluster.device_ids,
    )
