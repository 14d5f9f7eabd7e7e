"""Build the solver's plain-data Problem from graph facts, a cluster, costs and user pins."""

from __future__ import annotations

from collections.abc import Sequence

from partitioner.cluster.types import Cluster
from partitioner.costing.types import CostTable
from partitioner.errors import SolverError
from partitioner.graph.types import GraphFacts
from partitioner.solver.problem import OBJECTIVES, Problem, ProblemEdge, ProblemNode


def build_problem(
    facts: GraphFacts,
    cluster: Cluster,
    costs: CostTable,
    *,
    pins: Sequence[str] = (),
    forbidden: Sequence[str] = (),
    objective: str = "latency",
    latency_target_s: float | None = None,
    max_partitions: int | None = None,
) -> Problem:
    """Turn analysed graph facts into a placement Problem.

    Args:
        facts: Analysed graph (nodes in topological order, node-to-node edges).
        cluster: Devices and links; device order is the priority order.
        costs: Cost of every (node, device) pair.
        pins: ``"NODE_OR_OP_TYPE=DEVICE"`` strings; a pin by node name wins over one by op
            type (``domain::Op`` or plain ``Op``); two different devices for one node at the
            same level are a conflict.
        forbidden: ``"NODE_OR_OP_TYPE=DEVICE"`` strings the placement must avoid.
        objective: ``latency``, ``throughput`` or ``cost``.
        latency_target_s: Latency bound, required by the ``cost`` objective.
        max_partitions: Upper bound on runner calls per inference, or None.

    Returns:
        The problem.

    Raises:
        SolverError: Unknown objective, missing or non-positive latency target, bad
            max_partitions, conflicting pins, or pins naming unknown nodes/op types/devices
            (all listed at once).
    """
    if objective not in OBJECTIVES:
        raise SolverError(
            f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if objective == "cost" and latency_target_s is None:
        raise SolverError("objective 'cost' needs a latency target (--latency-target MS)")
    if latency_target_s is not None and not latency_target_s > 0:
        raise SolverError(f"latency target must be positive, got {latency_target_s!r} s")
    if max_partitions is not None and max_partitions < 1:
        raise SolverError(f"max_partitions must be at least 1, got {max_partitions}")
    nodes = tuple(
        ProblemNode(
            name=n.name,
            op_type=n.qualified_op,
            weight_bytes=n.weight_bytes,
            output_bytes=n.bytes_written,
            members=(n.name,),
        )
        for n in facts.nodes
    )
    edges = tuple(ProblemEdge(e.src, e.dst, e.nbytes, e.tensor) for e in facts.edges)
    pin_map = _resolve(pins, "--pin", nodes, cluster)
    ban_map = _resolve(forbidden, "--forbid", nodes, cluster)
    pinned: dict[str, str] = {}
    conflicts = []
    for node, entries in pin_map.items():
        by_name = [d for d, named in entries if named]
        devs = sorted(set(by_name or [d for d, _ in entries]))
        if len(devs) > 1:
            conflicts.append(f"{node} pinned to {' and '.join(devs)}")
        pinned[node] = devs[0]
    if conflicts:
        raise SolverError("conflicting pins: " + "; ".join(conflicts[:10]))
    return Problem(
        nodes=nodes,
        edges=edges,
        cluster=cluster,
        costs=costs,
        pins=pinned,
        forbidden={n: tuple(dict.fromkeys(d for d, _ in e)) for n, e in ban_map.items()},
        objective=objective,
        latency_target_s=latency_target_s,
        max_partitions=max_partitions,
    )


def _resolve(specs: Sequence[str], flag: str, nodes: Sequence[ProblemNode],
             cluster: Cluster) -> dict[str, list[tuple[str, bool]]]:
    """Resolve ``NODE_OR_OP_TYPE=DEVICE`` specs to node -> [(device, named by node name)].

    Raises:
        SolverError: Listing every malformed spec, unknown node/op type and unknown device.
    """
    names = {n.name for n in nodes}
    by_op: dict[str, list[str]] = {}
    for n in nodes:
        by_op.setdefault(n.op_type, []).append(n.name)
        plain = n.op_type.rpartition("::")[2]
        if plain != n.op_type:
            by_op.setdefault(plain, []).append(n.name)
    devices = set(cluster.device_ids)
    out: dict[str, list[tuple[str, bool]]] = {}
    problems = []
    for spec in specs:
        key, sep, device = spec.rpartition("=")
        key, device = key.strip(), device.strip()
        if not sep or not key or not device:
            problems.append(f"{flag} {spec!r}: expected NODE_OR_OP_TYPE=DEVICE")
            continue
        if device not in devices:
            problems.append(f"{flag} {spec!r}: unknown device {device!r} "
                            f"(cluster has {', '.join(cluster.device_ids)})")
        named = key in names
        if named:
            targets = [key]
        elif key in by_op:
            targets = by_op[key]
        else:
            problems.append(f"{flag} {spec!r}: no node or op type named {key!r}")
            continue
        if device in devices:
            for t in targets:
                out.setdefault(t, []).append((device, named))
    if problems:
        raise SolverError(f"{len(problems)} bad {flag} value(s): " + "; ".join(problems))
    return out
