"""Plan <-> JSON-ready dict conversion (stable key order, no pickle) and the plan's digest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from partitioner.cluster.types import Cluster, DeviceSpec, Link
from partitioner.plan.types import (
    BaselineSummary,
    CompileMeasurements,
    MeasuredCandidate,
    ModelRef,
    NodeCost,
    NodePlacement,
    PartitionInput,
    PartitionOutput,
    Plan,
    PlanPartition,
    SolverStats,
    TensorSpec,
    Tolerance,
    Transfer,
)
from partitioner.profiling.timing import Timing


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready plain data (the ``plan.json`` document)."""
    data: dict[str, Any] = {
        "format_version": plan.format_version,
        "created_by": plan.created_by,
        "model": {
            "path": plan.model.path,
            "sha256": plan.model.sha256,
            "name": plan.model.name,
            "inputs": [_tensor(t) for t in plan.model.inputs],
            "outputs": [_tensor(t) for t in plan.model.outputs],
        },
        "cluster": cluster_to_dict(plan.cluster),
        "objective": {
            "name": plan.objective,
            "latency_target_s": plan.latency_target_s,
            "max_partitions": plan.max_partitions,
        },
        "partitions": [
            {
                "index": p.index,
                "device": p.device,
                "file": p.file,
                "nodes": list(p.nodes),
                "inputs": [
                    {"name": i.name, "bytes": i.nbytes, "from_partition": i.from_partition}
                    for i in p.inputs
                ],
                "outputs": [
                    {
                        "name": o.name,
                        "bytes": o.nbytes,
                        "to_partitions": list(o.to_partitions),
                        "graph_output": o.graph_output,
                    }
                    for o in p.outputs
                ],
                "predicted_start_s": p.predicted_start_s,
                "predicted_end_s": p.predicted_end_s,
            }
            for p in plan.partitions
        ],
        "transfers": [
            {
                "tensor": t.tensor,
                "bytes": t.nbytes,
                "from_device": t.src_device,
                "to_device": t.dst_device,
                "from_partition": t.src_partition,
                "to_partition": t.dst_partition,
                "predicted_s": t.predicted_s,
            }
            for t in plan.transfers
        ],
        "solver": {
            **{k: v for k, v in vars(plan.solver).items()
               if k not in ("devices_used", "clock_stopped_stages")},
            "devices_used": list(plan.solver.devices_used),
            "busy_s": dict(plan.solver.busy_s),
            "peak_memory": dict(plan.solver.peak_memory),
            # Only when the clock decided: plans of a reproducible solve stay as they were.
            **({"clock_stopped_stages": list(plan.solver.clock_stopped_stages)}
               if plan.solver.clock_stopped_stages else {}),
        },
        "baselines": {
            name: {
                "latency_s": b.latency_s,
                "stage_s": b.stage_s,
                "cost_per_1k": b.cost_per_1k,
                "note": b.note,
            }
            for name, b in plan.baselines.items()
        },
        "placement": {
            name: {
                "device": n.device,
                "op_type": n.op_type,
                "partition": n.partition,
                "start_s": n.start_s,
                "end_s": n.end_s,
                "costs": {d: _cost(c) for d, c in n.costs.items()},
                "weight_bytes": n.weight_bytes,
            }
            for name, n in plan.placement.items()
        },
        "groups": {k: list(v) for k, v in plan.groups.items()},
        "pins": dict(plan.pins),
        "forbidden": {k: list(v) for k, v in plan.forbidden.items()},
    }
    if plan.compiled_with:  # absent rather than empty: older plans rewrite byte for byte
        data["compiled_with"] = dict(plan.compiled_with)
    if plan.measured is not None:  # absent when not measured: older plans stay byte-identical
        data["measured"] = measurements_to_dict(plan.measured)
    if plan.tolerance is not None:  # absent when not given: older plans stay byte-identical
        data["tolerance"] = {"atol": plan.tolerance.atol, "rtol": plan.tolerance.rtol}
    return data


def measurements_to_dict(m: CompileMeasurements) -> dict[str, Any]:
    """The ``measured`` block of ``plan.json``."""
    return {
        "rounds": [_candidate(c) for c in m.rounds],
        "singles": [_candidate(c) for c in m.singles],
        "chosen": m.chosen,
        "min_gain": m.min_gain,
        "min_gain_source": m.min_gain_source,
        "note": m.note,
    }


def measurements_from_dict(d: dict[str, Any]) -> CompileMeasurements:
    return CompileMeasurements(
        rounds=tuple(_candidate_from(c) for c in d["rounds"]),
        singles=tuple(_candidate_from(c) for c in d["singles"]),
        chosen=d["chosen"],
        min_gain=d["min_gain"],
        min_gain_source=d["min_gain_source"],
        note=d.get("note", ""),
    )


def _candidate(c: MeasuredCandidate) -> dict[str, Any]:
    return {"name": c.name, "round": c.round, "assignment": c.assignment,
            "partitions": c.partitions, "devices": list(c.devices),
            "predicted_s": c.predicted_s, "measured": dict(vars(c.measured)),
            "cached": c.cached}


def _candidate_from(c: dict[str, Any]) -> MeasuredCandidate:
    return MeasuredCandidate(c["name"], c["round"], c["assignment"], c["partitions"],
                             tuple(c["devices"]), c["predicted_s"],
                             Timing(**c["measured"]), c.get("cached", False))


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Rebuild a Plan from a schema-valid ``plan.json`` document."""
    model = data["model"]
    objective = data["objective"]
    costs_seen: dict[tuple[Any, ...], NodeCost] = {}  # equal costs share one frozen object
    return Plan(
        format_version=data["format_version"],
        created_by=data.get("created_by", ""),
        model=ModelRef(
            path=model["path"],
            sha256=model["sha256"],
            name=model["name"],
            inputs=tuple(_tensor_from(t) for t in model["inputs"]),
            outputs=tuple(_tensor_from(t) for t in model["outputs"]),
        ),
        cluster=cluster_from_dict(data["cluster"]),
        objective=objective["name"],
        latency_target_s=objective.get("latency_target_s"),
        max_partitions=objective.get("max_partitions"),
        partitions=tuple(
            PlanPartition(
                index=p["index"],
                device=p["device"],
                file=p["file"],
                nodes=tuple(p["nodes"]),
                inputs=tuple(
                    PartitionInput(i["name"], i["bytes"], i["from_partition"]) for i in p["inputs"]
                ),
                outputs=tuple(
                    PartitionOutput(
                        o["name"], o["bytes"], tuple(o["to_partitions"]), o["graph_output"]
                    )
                    for o in p["outputs"]
                ),
                predicted_start_s=p["predicted_start_s"],
                predicted_end_s=p["predicted_end_s"],
            )
            for p in data["partitions"]
        ),
        transfers=tuple(
            Transfer(
                t["tensor"],
                t["bytes"],
                t["from_device"],
                t["to_device"],
                t["from_partition"],
                t["to_partition"],
                t["predicted_s"],
            )
            for t in data["transfers"]
        ),
        solver=SolverStats(
            **{**data["solver"], "devices_used": tuple(data["solver"]["devices_used"]),
               "clock_stopped_stages": tuple(data["solver"].get("clock_stopped_stages", ()))}
        ),
        baselines={
            k: BaselineSummary(
                v["latency_s"], v["stage_s"], v.get("note", ""), v.get("cost_per_1k")
            )
            for k, v in data["baselines"].items()
        },
        placement={
            name: NodePlacement(
                device=n["device"],
                op_type=n["op_type"],
                partition=n["partition"],
                start_s=n["start_s"],
                end_s=n["end_s"],
                costs={d: _cost_from(c, costs_seen) for d, c in n["costs"].items()},
                weight_bytes=n.get("weight_bytes", 0),
            )
            for name, n in data["placement"].items()
        },
        groups={k: tuple(v) for k, v in data.get("groups", {}).items()},
        pins=dict(data.get("pins", {})),
        forbidden={k: tuple(v) for k, v in data.get("forbidden", {}).items()},
        compiled_with=dict(data.get("compiled_with", {})),
        measured=(measurements_from_dict(data["measured"]) if data.get("measured") is not None
                  else None),
        tolerance=(Tolerance(data["tolerance"]["atol"], data["tolerance"]["rtol"])
                   if data.get("tolerance") is not None else None),
    )


def cluster_to_dict(cluster: Cluster) -> dict[str, Any]:
    """Serialise a cluster with every device field (plans must run without the preset)."""
    return {
        "name": cluster.name,
        "host_copy_bandwidth": cluster.host_copy_bandwidth,
        "fallback_device": cluster.fallback_device,
        "devices": [_device(d) for d in cluster.devices],
        "links": [link_to_dict(lk) for lk in cluster.links],
    }


def link_to_dict(lk: Link) -> dict[str, Any]:
    """A link as JSON-ready plain data (``copy_engine`` only when the link overrides)."""
    out: dict[str, Any] = {"src": lk.src, "dst": lk.dst, "bandwidth": lk.bandwidth,
                           "latency_s": lk.latency_s}
    if lk.copy_engine is not None:  # only an override is written: older plans stay as they were
        out["copy_engine"] = lk.copy_engine
    return out


def _device(d: DeviceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(DeviceSpec):
        value = getattr(d, f.name)
        if f.name in ("precision", "host") and value == f.default:
            continue  # f32 devices and devices without a host stay as older plans wrote them
        out[f.name] = (
            list(value)
            if isinstance(value, tuple)
            else (dict(value) if isinstance(value, dict) else value)
        )
    return out


def cluster_from_dict(data: dict[str, Any]) -> Cluster:
    """Inverse of :func:`cluster_to_dict`."""
    known = {f.name for f in dataclasses.fields(DeviceSpec)}
    devices = []
    for d in data["devices"]:
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known
        }
        devices.append(DeviceSpec(**fields))
    links = tuple(Link(**lk) for lk in data.get("links", ()))
    return Cluster(
        data["name"],
        tuple(devices),
        links,
        data["host_copy_bandwidth"],
        data.get("fallback_device"),
    )


def plan_json(plan: Plan) -> str:
    """The canonical ``plan.json`` text: sorted keys, indent 2, trailing newline."""
    return json.dumps(plan_to_dict(plan), indent=2, sort_keys=True, allow_nan=False) + "\n"


def plan_digest(plan: Plan) -> str:
    """SHA-256 of the canonical plan text; run results carry it so reports match them."""
    return hashlib.sha256(plan_json(plan).encode()).hexdigest()


def _tensor(t: TensorSpec) -> dict[str, Any]:
    return {
        "name": t.name,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "value_range": list(t.value_range) if t.value_range else None,
    }


def _tensor_from(t: dict[str, Any]) -> TensorSpec:
    rng = t.get("value_range")
    return TensorSpec(t["name"], tuple(t["shape"]), t["dtype"], tuple(rng) if rng else None)


def _cost(c: NodeCost) -> dict[str, Any]:
    if c.unsupported is not None:
        return {"unsupported": c.unsupported}
    return {"latency_s": c.latency_s, "memory_bytes": c.memory_bytes, "source": c.source}


def _cost_from(c: dict[str, Any], seen: dict[tuple[Any, ...], NodeCost]) -> NodeCost:
    """The NodeCost of a ``costs`` entry, shared with equal entries seen before: a large plan
    holds few distinct costs (one per operator signature and device) among its node x device
    entries, and building a frozen dataclass per entry took much of the time of loading it."""
    unsupported = c.get("unsupported")
    key = (c.get("latency_s"), c.get("memory_bytes", 0), c.get("source", ""), unsupported)
    cost = seen.get(key)
    if cost is None:
        if unsupported is not None:
            cost = NodeCost(unsupported=unsupported)
        else:
            cost = NodeCost(c["latency_s"], c.get("memory_bytes", 0), c.get("source", ""))
        seen[key] = cost
    return cost
