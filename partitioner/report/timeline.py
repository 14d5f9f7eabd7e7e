"""Timeline bars (Gantt) for devices and links: predicted from the plan, measured from a run.

Predicted bars are the plan's partition start/end times; a transfer is drawn ending where its
consumer partition starts (or at its producer's end plus its predicted time, if earlier).
When a run recorded no start offsets, measured bars replay the measured partition and copy
durations the way the executor dispatches them: in partition order, one call at a time per
device, each call starting when its device is free and its inputs have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

from partitioner.plan.types import Plan
from partitioner.report.inputs import Measurements


@dataclass(frozen=True)
class Bar:
    """One bar on a lane: a partition on a device lane, or a transfer on a link lane."""

    lane: str
    kind: str
    label: str
    start_s: float
    end_s: float
    partition: int


def link_lane(src: str, dst: str) -> str:
    """The lane name of the link from ``src`` to ``dst``."""
    return f"{src} → {dst}"


def predicted_timeline(plan: Plan) -> tuple[Bar, ...]:
    """Partition bars (call overhead included) per device and transfer bars per link."""
    parts = {p.index: p for p in plan.partitions}
    bars = [
        Bar(
            p.device,
            "partition",
            f"p{p.index}",
            max(0.0, p.predicted_end_s - plan.predicted_call_s(p)),
            p.predicted_end_s,
            p.index,
        )
        for p in plan.partitions
    ]
    for t in plan.transfers:
        src, dst = parts[t.src_partition], parts[t.dst_partition]
        latest = max(dst.predicted_start_s, src.predicted_start_s)
        end = min(src.predicted_end_s + t.predicted_s, latest)
        start = max(src.predicted_start_s, end - t.predicted_s)
        bars.append(
            Bar(
                link_lane(t.src_device, t.dst_device),
                "transfer",
                t.tensor,
                start,
                end,
                t.dst_partition,
            )
        )
    return tuple(bars)


def measured_timeline(plan: Plan, measurements: Measurements) -> tuple[Bar, ...]:
    """Measured partition and copy bars (recorded start offsets, or a replay of durations)."""
    copies: dict[int, list[tuple[str, int, float]]] = {}
    for t in measurements.transfers:
        copies.setdefault(t.dst_partition, []).append((t.tensor, t.src_partition, t.seconds))
    devices = {p.index: p.device for p in plan.partitions}
    free: dict[str, float] = {}
    end: dict[int, float] = {}
    bars: list[Bar] = []
    for p in plan.partitions:
        duration = measurements.partition_s.get(p.index)
        if duration is None:
            continue
        ready = 0.0
        copy_bars = []
        for tensor, src, seconds in copies.get(p.index, ()):
            left = end.get(src, 0.0)
            copy_bars.append(
                Bar(
                    link_lane(devices.get(src, "?"), p.device),
                    "transfer",
                    tensor,
                    left,
                    left + seconds,
                    p.index,
                )
            )
            ready = max(ready, left + seconds)
        for i in p.inputs:
            if i.from_partition is not None:
                ready = max(ready, end.get(i.from_partition, 0.0))
        start = measurements.partition_start_s.get(p.index, max(ready, free.get(p.device, 0.0)))
        end[p.index] = start + duration
        free[p.device] = end[p.index]
        bars.append(Bar(p.device, "partition", f"p{p.index}", start, end[p.index], p.index))
        bars.extend(copy_bars)
    return tuple(bars)


def lanes(plan_devices: tuple[str, ...], bars: tuple[Bar, ...]) -> list[str]:
    """Lane order: every device (cluster order), then links that carry a transfer (sorted)."""
    links = sorted({b.lane for b in bars if b.kind == "transfer"})
    return [*plan_devices, *links]
