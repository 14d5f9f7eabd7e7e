"""``build_plan``: a solved problem (assignment, cut, schedule) -> the Plan artifact."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import onnx

from partitioner.cluster.types import Cluster
from partitioner.costing.types import CostTable, Supported
from partitioner.errors import PlanError
from partitioner.plan.types import (
    FORMAT_VERSION,
    BaselineSummary,
    ModelRef,
    NodeCost,
    NodePlacement,
    PartitionInput,
    PartitionOutput,
    Plan,
    PlanPartition,
    SolverStats,
    TensorSpec,
    Transfer,
    partition_file_name,
)
from partitioner.solver.partitioning import Partition
from partitioner.solver.problem import BaselineResult, Problem, SolveReport
from partitioner.versions import toolchain_versions

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel
    from partitioner.graph.types import NodeInfo

logger = logging.getLogger(__name__)


def _consumed_names(node: onnx.NodeProto) -> list[str]:
    """Inputs of ``node`` plus outer-scope names its subgraphs reference, in order."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        graphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        for graph in graphs:
            local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
            for sub in graph.node:
                for name in _consumed_names(sub):
                    if name not in local and name not in names:
                        names.append(name)
                local.update(sub.output)
    return names


def _value_ranges(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """Index bounds for graph inputs used directly as Gather indices into an initializer."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}
    ranges: dict[str, tuple[int, int]] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] in graph_inputs:
            dims = inits.get(node.input[0])
            if dims:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                high = dims[axis]
                prev = ranges.get(node.input[1], (0, high))
                ranges[node.input[1]] = (0, min(prev[1], high))
    return ranges


def _tensor_specs(facts_tensors: tuple, ranges: Mapping[str, tuple[int, int]]) -> tuple:
    return tuple(
        TensorSpec(t.name, tuple(t.shape), t.dtype, ranges.get(t.name)) for t in facts_tensors
    )


def build_plan(
    analysed: AnalysedModel,
    cluster: Cluster,
    problem: Problem,
    report: SolveReport,
    costs: CostTable,
) -> Plan:
    """Assemble the plan of ``report.assignment``, cut as ``report.evaluation`` was.

    Args:
        analysed: The analysed model (normalised ModelProto and its facts).
        cluster: The cluster the problem was solved for.
        problem: The problem (objective and targets are recorded).
        report: The solver's (or a baseline's) report; ``evaluation.partitions`` are the
            runner calls and ``evaluation.schedule`` the predicted start and end of every
            node.
        costs: Per (node, device) costs, recorded per node for reports.

    Returns:
        The plan; write it with ``partitioner.plan.io.write_plan``.

    Raises:
        PlanError: the assignment leaves a node unplaced or names a device not in the cluster.
    """
    facts = analysed.facts
    assignment = dict(report.assignment)
    _check_assignment([n.name for n in facts.nodes], assignment, cluster)
    cut = _evaluated_cut(report, assignment)
    part_of = {name: p.index for p in cut for name in p.nodes}
    producer: dict[str, str] = {out: n.name for n in facts.nodes for out in n.outputs}
    inputs, consumers = _partition_inputs(analysed, cut, part_of, producer)
    schedule = report.evaluation.schedule if report.evaluation else {}
    partitions, transfers = _partitions(
        analysed, cluster, cut, part_of, producer, inputs, consumers, schedule
    )
    placement = {
        node.name: _node_placement(node, assignment[node.name], part_of[node.name], schedule,
                                   costs, cluster)
        for node in facts.nodes
    }
    stats = _solver_stats(report, partitions)
    baselines = {name: _baseline_summary(b) for name, b in sorted(report.baselines.items())}
    return Plan(
        format_version=FORMAT_VERSION,
        model=_model_ref(analysed),
        cluster=cluster,
        objective=problem.objective,
        latency_target_s=problem.latency_target_s,
        max_partitions=problem.max_partitions,
        partitions=tuple(partitions),
        transfers=tuple(transfers),
        solver=stats,
        baselines=baselines,
        placement=placement,
        groups={k: tuple(v) for k, v in sorted(report.groups.items())},
        pins={n: problem.pins[n] for n in sorted(problem.pins)},
        forbidden={n: tuple(problem.forbidden[n]) for n in sorted(problem.forbidden)},
        compiled_with=toolchain_versions(),
    )


def _check_assignment(order: list[str], assignment: Mapping[str, str], cluster: Cluster) -> None:
    """Refuse an assignment that leaves a node of ``order`` unplaced or names a device not in
    ``cluster`` (PlanError naming the first few of each)."""
    missing = [n for n in order if n not in assignment]
    unknown = sorted({d for d in assignment.values() if d not in cluster.device_ids})
    if missing or unknown:
        raise PlanError(
            "cannot build a plan: "
            + (f"nodes never placed: {missing[:10]}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"devices not in cluster {cluster.name!r}: {unknown}" if unknown else "")
        )


def _tensor_bytes(analysed: AnalysedModel) -> dict[str, int]:
    """Bytes of every tensor the facts size: tensors first, then edges and graph inputs and
    outputs for names the tensors lack."""
    facts = analysed.facts
    nbytes = {name: t.nbytes for name, t in facts.tensors.items()}
    for edge in facts.edges:
        nbytes.setdefault(edge.tensor, edge.nbytes)
    for t in (*facts.inputs, *facts.outputs):
        nbytes.setdefault(t.name, t.nbytes)
    return nbytes


def _partition_inputs(
    analysed: AnalysedModel,
    cut: list[Partition],
    part_of: Mapping[str, int],
    producer: Mapping[str, str],
) -> tuple[dict[int, list[str]], dict[str, set[int]]]:
    """Inputs of each partition, in first-use order (tensors from other partitions and graph
    inputs; initializers travel inside the partition file), and the partitions consuming
    each produced tensor."""
    protos = {n.name: n for n in analysed.model.graph.node}
    graph_inputs = {t.name for t in analysed.facts.inputs}
    inputs: dict[int, list[str]] = {p.index: [] for p in cut}
    consumers: dict[str, set[int]] = {}
    for p in cut:
        for node_name in p.nodes:
            for name in _consumed_names(protos[node_name]):
                src = producer.get(name)
                if src is not None and part_of[src] == p.index:
                    continue
                if src is None and name not in graph_inputs:
                    continue  # initializer (weights travel inside the partition file)
                if name not in inputs[p.index]:
                    inputs[p.index].append(name)
                if src is not None:
                    consumers.setdefault(name, set()).add(p.index)
    return inputs, consumers


def _partitions(
    analysed: AnalysedModel,
    cluster: Cluster,
    cut: list[Partition],
    part_of: Mapping[str, int],
    producer: Mapping[str, str],
    inputs: Mapping[int, list[str]],
    consumers: Mapping[str, set[int]],
    schedule: Mapping[str, tuple[str, float, float]],
) -> tuple[list[PlanPartition], list[Transfer]]:
    """The plan's partitions, in cut order, and the transfers between devices, in the order
    the partitions read them."""
    facts = analysed.facts
    graph_outputs = {o.name for o in facts.outputs}
    nbytes = _tensor_bytes(analysed)
    partitions: list[PlanPartition] = []
    transfers: list[Transfer] = []
    for p in cut:
        outs = [
            PartitionOutput(
                out, nbytes.get(out, 0), tuple(sorted(consumers.get(out, ()))), out in graph_outputs
            )
            for node_name in p.nodes
            for out in facts.node(node_name).outputs
            if out in consumers or out in graph_outputs
        ]
        ins = []
        for name in inputs[p.index]:
            src_part = part_of[producer[name]] if name in producer else None
            ins.append(PartitionInput(name, nbytes.get(name, 0), src_part))
            if src_part is not None and cut[src_part].device != p.device:
                transfers.append(_transfer(cluster, cut, name, nbytes.get(name, 0), src_part, p))
        times = [schedule[n][1:] for n in p.nodes if n in schedule]
        partitions.append(
            PlanPartition(
                index=p.index,
                device=p.device,
                file=partition_file_name(p.index, p.device),
                nodes=p.nodes,
                inputs=tuple(ins),
                outputs=tuple(outs),
                predicted_start_s=min((t[0] for t in times), default=0.0),
                predicted_end_s=max((t[1] for t in times), default=0.0),
            )
        )
    return partitions, transfers


def _transfer(cluster: Cluster, cut: list[Partition], name: str, size: int, src_part: int,
              dst: Partition) -> Transfer:
    """The copy of tensor ``name`` from partition ``src_part`` to ``dst`` (on another
    device), timed by the cluster's link."""
    src_device = cut[src_part].device
    return Transfer(
        name,
        size,
        src_device,
        dst.device,
        src_part,
        dst.index,
        cluster.transfer_time(src_device, dst.device, size),
    )


def _node_placement(
    node: NodeInfo,
    device: str,
    partition: int,
    schedule: Mapping[str, tuple[str, float, float]],
    costs: CostTable,
    cluster: Cluster,
) -> NodePlacement:
    """Where ``node`` runs and when (0 when the schedule lacks it), with its cost on every
    device of the cluster."""
    start, end = schedule.get(node.name, (None, 0.0, 0.0))[1:]
    return NodePlacement(
        device=device,
        op_type=node.qualified_op,
        partition=partition,
        start_s=float(start),
        end_s=float(end),
        costs={d: _node_cost(costs, node.name, d) for d in cluster.device_ids},
        weight_bytes=int(node.weight_bytes),
    )


def _solver_stats(report: SolveReport, partitions: list[PlanPartition]) -> SolverStats:
    """The solver's outcome and the evaluation's predictions; warns when the evaluator
    counted a different number of runner calls than the plan has partitions."""
    ev = report.evaluation
    stats = SolverStats(
        status=report.status,
        objective=float(report.objective),
        bound=float(report.bound),
        gap=float(report.gap),
        solve_time_s=float(report.solve_time_s),
        seed=int(report.seed),
        workers=int(report.workers),
        time_limit_s=float(report.time_limit_s),
        predicted_latency_s=float(ev.latency_s),
        predicted_stage_s=float(ev.stage_s),
        cost_per_1k=float(ev.cost_per_1k),
        energy_j=float(ev.energy_j),
        num_partitions=len(partitions),
        devices_used=tuple(sorted({p.device for p in partitions})),
        busy_s={d: float(ev.busy_s[d]) for d in sorted(ev.busy_s)},
        peak_memory={d: int(ev.peak_memory[d]) for d in sorted(ev.peak_memory)},
        clock_stopped_stages=tuple(report.clock_stopped_stages),
    )
    if ev.num_partitions != len(partitions):
        logger.warning(
            "evaluator counted %d partitions, the plan has %d", ev.num_partitions, len(partitions)
        )
    return stats


def _model_ref(analysed: AnalysedModel) -> ModelRef:
    """The model's path, hash, name and interface (inputs with Gather index ranges)."""
    facts = analysed.facts
    return ModelRef(
        path=str(analysed.source),
        sha256=facts.model_sha256,
        name=facts.model_name,
        inputs=_tensor_specs(facts.inputs, _value_ranges(analysed.model)),
        outputs=_tensor_specs(facts.outputs, {}),
    )


def _evaluated_cut(report: SolveReport, assignment: Mapping[str, str]) -> list[Partition]:
    """The runner calls the evaluation scheduled (its predicted times belong to this cut)."""
    cut = list(report.evaluation.partitions)
    placed = {name: p.device for p in cut for name in p.nodes}
    if placed != dict(assignment):
        raise PlanError("the report's evaluation does not cut its own assignment into "
                        "partitions (evaluate the assignment with partitioner.solver.evaluate)")
    return cut


def _baseline_summary(baseline: BaselineResult) -> BaselineSummary:
    ev = baseline.evaluation
    if ev is None:
        return BaselineSummary(None, None, baseline.note)
    return BaselineSummary(
        float(ev.latency_s), float(ev.stage_s), baseline.note, float(ev.cost_per_1k)
    )


def _node_cost(costs: CostTable, node: str, device: str) -> NodeCost:
    cost = costs.get(node, device)
    if isinstance(cost, Supported):
        return NodeCost(float(cost.latency_s), int(cost.memory_bytes), cost.source)
    return NodeCost(unsupported=cost.reason)
