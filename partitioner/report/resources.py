"""Per-device resource use of a plan: memory against capacity, busy time, price and energy.

Busy time and peak memory are the evaluator's numbers stored in the plan (``solver.busy_s``,
``solver.peak_memory``); weights per device add up ``placement[n].weight_bytes`` and the
workspace is the largest ``memory_bytes`` of a node on the device, so the activation share is
what the evaluator's peak holds beyond those two. Plans without the stored numbers (older
plans; ``peak_memory`` is empty for hand-made assignments) fall back to: busy = node times +
one call overhead per partition; memory = weights + workspace, flagged as a lower bound
(``memory_source == "lower bound"``).

A saved run that measured memory (``hetpart run --save``) adds each device's measured peak
and its method (``rss``: process RSS attributed to the device; ``allocator``: the runtime's
statistics) beside the prediction; :func:`memory_lines` words them for terminal reports.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from partitioner.plan.types import Plan
from partitioner.report.fmt import fmt_bytes
from partitioner.report.inputs import Measurements


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
    measured_peak_bytes: int | None = None
    measured_memory_method: str | None = None


def busy_times(plan: Plan) -> dict[str, float]:
    """Predicted busy seconds per device id (node time plus per-call overhead)."""
    stored = plan.solver.busy_s
    if stored:
        return {d: float(stored.get(d, 0.0)) for d in plan.cluster.device_ids}
    busy = dict.fromkeys(plan.cluster.device_ids, 0.0)
    for node in plan.placement.values():
        busy[node.device] += max(0.0, node.end_s - node.start_s)
    for p in plan.partitions:
        busy[p.device] += plan.cluster.device(p.device).call_overhead_s
    return busy


def device_usage(plan: Plan, measurements: Measurements | None) -> tuple[DeviceRow, ...]:
    """One row per cluster device, in cluster (priority) order."""
    busy = busy_times(plan)
    makespan = plan.solver.predicted_latency_s
    stored_peak = plan.solver.peak_memory
    weights: dict[str, int] = defaultdict(int)
    workspace: dict[str, int] = defaultdict(int)
    nodes: dict[str, int] = defaultdict(int)
    for node in plan.placement.values():
        weights[node.device] += node.weight_bytes
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
        memory = measurements.memory.get(d.id) if measurements else None
        fixed = weights[d.id] + workspace[d.id]
        if stored_peak:
            used, source = int(stored_peak.get(d.id, 0)), "evaluator"
        else:
            used, source = fixed, "lower bound"
        rows.append(
            DeviceRow(
                id=d.id,
                device_class=d.device_class,
                runner=d.runner,
                capacity_bytes=d.memory_bytes,
                weight_bytes=weights[d.id],
                workspace_bytes=workspace[d.id],
                activation_bytes=max(0, used - fixed),
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
                measured_peak_bytes=memory.peak_bytes if memory else None,
                measured_memory_method=memory.method if memory else None,
            )
        )
    return tuple(rows)


#: What each memory method label means, for the reports' footnotes.
MEMORY_METHODS = {
    "rss": "process RSS attributed to the device (growth while preparing its partitions "
    "plus the peak during its calls; runtime libraries excluded)",
    "allocator": "the runtime's own allocator statistics for the device",
}


def measured_memory(row: DeviceRow) -> str:
    """``"1.2 MiB measured (rss)"``, or ``"-"`` when the saved run did not measure it."""
    if row.measured_peak_bytes is None:
        return "-"
    return f"{fmt_bytes(row.measured_peak_bytes)} measured ({row.measured_memory_method})"


def memory_lines(rows: tuple[DeviceRow, ...]) -> list[str]:
    """Terminal lines, one per device that ran: predicted peak beside measured, with method;
    [] when no saved run measured memory."""
    measured = [r for r in rows if r.measured_peak_bytes is not None]
    if not measured:
        return []
    width = max(len(r.id) for r in measured)
    lines = []
    for r in measured:
        predicted = ("" if r.memory_source == "evaluator" else ">= ") + fmt_bytes(r.used_bytes)
        lines.append(f"  {r.id:<{width}}  {predicted} predicted, {measured_memory(r)}")
    methods = sorted({str(r.measured_memory_method) for r in measured})
    lines += [f"  {m}: {MEMORY_METHODS.get(m, m)}" for m in methods]
    return lines
