"""Plans from a given node -> device assignment (no solver): tests, ONNX backend, benchmarks.

The schedule here is a simple list schedule over partitions (each partition starts when its
device is free and its inputs have arrived, pays its device's call overhead, then runs its
nodes back to back); it exists so a plan can be built without the CP-SAT solver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from partitioner.cluster.types import Cluster
from partitioner.costing.types import CostTable, Supported
from partitioner.errors import PlanError
from partitioner.plan.build import build_plan
from partitioner.plan.types import Plan
from partitioner.solver.partitioning import split_into_partitions
from partitioner.solver.problem import Evaluation, Problem, ProblemEdge, ProblemNode, SolveReport

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel
    from partitioner.graph.types import GraphFacts


def problem_from_facts(
    facts: GraphFacts, cluster: Cluster, costs: CostTable, objective: str = "latency"
) -> Problem:
    """A minimal Problem (one ProblemNode per node, one edge per tensor and consumer)."""
    nodes = tuple(
        ProblemNode(n.name, n.op_type, n.weight_bytes, n.bytes_written, (n.name,))
        for n in facts.nodes
    )
    edges = tuple(ProblemEdge(e.src, e.dst, e.nbytes, e.tensor) for e in facts.edges)
    return Problem(nodes, edges, cluster, costs, objective=objective)


def schedule_assignment(
    facts: GraphFacts, cluster: Cluster, assignment: Mapping[str, str], costs: CostTable
) -> Evaluation:
    """List-schedule ``assignment`` partition by partition (unsupported pairs cost 0)."""
    order = [n.name for n in facts.nodes]
    cut = split_into_partitions(
        order, [(e.src, e.dst) for e in facts.edges], assignment, cluster.concurrent
    )
    part_of = {name: p.index for p in cut for name in p.nodes}
    deps: dict[int, dict[int, int]] = {p.index: {} for p in cut}
    for e in facts.edges:
        a, b = part_of[e.src], part_of[e.dst]
        if a != b:
            deps[b][a] = deps[b].get(a, 0) + e.nbytes
    free: dict[str, float] = {}
    end_of: dict[int, float] = {}
    busy: dict[str, float] = {}
    schedule: dict[str, tuple[str, float, float]] = {}
    for p in cut:
        device = cluster.device(p.device)
        ready = max(
            (
                end_of[src] + cluster.transfer_time(cut[src].device, p.device, size)
                for src, size in deps[p.index].items()
            ),
            default=0.0,
        )
        t = max(ready, free.get(p.device, 0.0)) + device.call_overhead_s
        start_p = t
        for name in p.nodes:
            cost = costs.get(name, p.device)
            length = cost.latency_s if isinstance(cost, Supported) else 0.0
            schedule[name] = (p.device, t, t + length)
            t += length
        end_of[p.index] = t
        free[p.device] = t
        busy[p.device] = busy.get(p.device, 0.0) + (t - start_p) + device.call_overhead_s
    latency = max(end_of.values(), default=0.0)
    return Evaluation(
        latency_s=latency,
        stage_s=max(busy.values(), default=0.0),
        cost_per_1k=sum(
            cluster.device(d).price_per_hour / 3600 * b * 1000 for d, b in busy.items()
        ),
        energy_j=sum(cluster.device(d).power_w * b for d, b in busy.items()),
        busy_s=busy,
        peak_memory={},
        schedule=schedule,
        num_partitions=len(cut),
        partitions=tuple(cut),
    )


def plan_from_assignment(
    analysed: AnalysedModel,
    cluster: Cluster,
    assignment: Mapping[str, str],
    costs: CostTable | None = None,
    objective: str = "latency",
    status: str = "GIVEN",
) -> Plan:
    """Build a plan for a hand-made assignment (no solver involved).

    Args:
        analysed: The analysed model.
        cluster: Devices the assignment names.
        assignment: node name -> device id for every node.
        costs: Per (node, device) costs for the predicted schedule; empty when None.
        objective: Recorded objective name.
        status: Recorded solver status (``GIVEN`` says no solver ran).

    Raises:
        PlanError: a node is unassigned or a device is not in the cluster.
    """
    facts = analysed.facts
    missing = [n.name for n in facts.nodes if n.name not in assignment]
    unknown = sorted({d for d in assignment.values() if d not in cluster.device_ids})
    if missing or unknown:
        raise PlanError(
            f"assignment for {facts.model_name}: "
            + (f"nodes without a device: {missing[:10]} " if missing else "")
            + (f"devices not in cluster {cluster.name!r}: {unknown}" if unknown else "")
        )
    table = costs if costs is not None else CostTable()
    evaluation = schedule_assignment(facts, cluster, assignment, table)
    report = SolveReport(
        assignment=dict(assignment),
        evaluation=evaluation,
        status=status,
        objective=evaluation.latency_s,
        bound=0.0,
        gap=1.0 if evaluation.latency_s > 0 else 0.0,
        solve_time_s=0.0,
        seed=0,
        workers=0,
        time_limit_s=0.0,
    )
    problem = problem_from_facts(facts, cluster, table, objective)
    return build_plan(analysed, cluster, problem, report, table)
