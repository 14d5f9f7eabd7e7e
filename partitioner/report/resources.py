"""Per-device resource use of a plan: memory against capacity, busy time, price and energy.

The plan records the schedule but not the evaluator's per-device busy time or peak memory, so
they are derived here with the evaluator's own rules (``partitioner.solver.evaluate``):

* busy time = the device's node times (``end_s - start_s``) + its call overhead once per
  partition on it;
* memory = weights of its nodes (read from the partition files) + the largest workspace of a
  node on it + the peak of live activations, swept over the predicted schedule: a tensor lives
  on its producer's device from the producer's start until its last local consumer ends (or
  its copies have left), on a consumer's device from its arrival until the last consumer there
  ends; model outputs live until the makespan.

When a plan carries the evaluator's numbers (``solver.busy_s`` / ``solver.peak_memory``), those
are used instead and ``memory_source`` says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from partitioner.plan import Plan
from partitioner.report.inputs import GraphDetail, Measurements


@dataclass(frozen=True)
class DeviceRow:
    """One device: memory against capacity, busy time, utilisation, price and energy share."""

    id: str
    device_class: str
    runner: str
    capacity_bytes: int
    weight_bytes: int
    workspace_bytes: int
    activation_bytes: int
    used_bytes: int
    used_fraction: float
    busy_s: float
    utilisation: float
    num_nodes: int
    num_partitions: int
    price_per_hour: float
    cost_per_1k: float
    price_share: float | None
    energy_j: float
    energy_share: float | None
    measured_busy_s: float | None
    memory_source: str


def busy_times(plan: Plan) -> dict[str, float]:
    """Predicted busy seconds per device id (node time plus per-call overhead)."""
    stored = getattr(plan.solver, "busy_s", None)
    if isinstance(stored, dict) and stored:
        return {d: float(stored.get(d, 0.0)) for d in plan.cluster.device_ids}
    busy = dict.fromkeys(plan.cluster.device_ids, 0.0)
    for node in plan.placement.values():
        busy[node.device] += max(0.0, node.end_s - node.start_s)
    for p in plan.partitions:
        busy[p.device] += plan.cluster.device(p.device).call_overhead_s
    return busy


def activation_peaks(plan: Plan, detail: GraphDetail) -> dict[str, int]:
    """Peak bytes of live activations per device over the predicted schedule."""
    place = plan.placement
    makespan = max((n.end_s for n in place.values()), default=0.0)
    graph_outputs = {o.name for p in plan.partitions for o in p.outputs if o.graph_output}
    by_tensor: dict[tuple[str, str], list[str]] = defaultdict(list)
    nbytes: dict[str, int] = {}
    for e in detail.edges:
        by_tensor[(e.src, e.tensor)].append(e.dst)
        nbytes[e.tensor] = e.nbytes
    events: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for (src, tensor), consumers in by_tensor.items():
        size = nbytes[tensor]
        if size <= 0 or src not in place:
            continue
        home = place[src].device
        local_end = place[src].end_s
        remote: dict[str, tuple[float, float]] = {}
        for dst in consumers:
            if dst not in place:
                continue
            there = place[dst].device
            if there == home:
                local_end = max(local_end, place[dst].end_s)
                continue
            arrive = place[src].end_s + plan.cluster.transfer_time(home, there, size)
            local_end = max(local_end, arrive)
            first, last = remote.get(there, (arrive, arrive))
            remote[there] = (first, max(last, place[dst].end_s))
        if tensor in graph_outputs:
            local_end = makespan
        events[home] += [(place[src].start_s, size), (local_end, -size)]
        for there, (arrive, last) in remote.items():
            events[there] += [(arrive, size), (last, -size)]
    peaks = {}
    for device in plan.cluster.device_ids:
        live = best = 0
        for _, delta in sorted(events.get(device, ())):
            live += delta
            best = max(best, live)
        peaks[device] = best
    return peaks


def device_usage(
    plan: Plan, detail: GraphDetail, measurements: Measurements | None
) -> tuple[DeviceRow, ...]:
    """One row per cluster device, in cluster (priority) order."""
    busy = busy_times(plan)
    makespan = plan.solver.predicted_latency_s
    peaks = activation_peaks(plan, detail)
    stored_peak = getattr(plan.solver, "peak_memory", None)
    weights: dict[str, int] = defaultdict(int)
    workspace: dict[str, int] = defaultdict(int)
    nodes: dict[str, int] = defaultdict(int)
    for name, node in plan.placement.items():
        weights[node.device] += detail.weight_bytes.get(name, 0)
        cost = node.costs.get(node.device)
        if cost is not None:
            workspace[node.device] = max(workspace[node.device], cost.memory_bytes)
        nodes[node.device] += 1
    parts: dict[str, int] = defaultdict(int)
    for p in plan.partitions:
        parts[p.device] += 1
    measured: dict[str, float] = defaultdict(float)
    if measurements:
        for p in plan.partitions:
            measured[p.device] += measurements.partition_s.get(p.index, 0.0)
    prices = {d.id: d.price_per_hour / 3600.0 * busy[d.id] * 1000.0 for d in plan.cluster.devices}
    energies = {d.id: d.power_w * busy[d.id] for d in plan.cluster.devices}
    total_price, total_energy = sum(prices.values()), sum(energies.values())
    rows = []
    for d in plan.cluster.devices:
        if isinstance(stored_peak, dict) and d.id in stored_peak:
            used, source = int(stored_peak[d.id]), "evaluator"
        else:
            used, source = weights[d.id] + workspace[d.id] + peaks[d.id], "derived"
        rows.append(
            DeviceRow(
                id=d.id,
                device_class=d.device_class,
                runner=d.runner,
                capacity_bytes=d.memory_bytes,
                weight_bytes=weights[d.id],
                workspace_bytes=workspace[d.id],
                activation_bytes=peaks[d.id],
                used_bytes=used,
                used_fraction=used / d.memory_bytes if d.memory_bytes > 0 else 0.0,
                busy_s=busy[d.id],
                utilisation=busy[d.id] / makespan if makespan > 0 else 0.0,
                num_nodes=nodes[d.id],
                num_partitions=parts[d.id],
                price_per_hour=d.price_per_hour,
                cost_per_1k=prices[d.id],
                price_share=prices[d.id] / total_price if total_price > 0 else None,
                energy_j=energies[d.id],
                energy_share=energies[d.id] / total_energy if total_energy > 0 else None,
                measured_busy_s=measured[d.id] if measurements else None,
                memory_source=source,
            )
        )
    return tuple(rows)
