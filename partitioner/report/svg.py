"""Inline SVG for the HTML report: baselines bar chart, Gantt timeline, graph coloured by device.

Every function returns a self-contained ``<svg>`` string with escaped text and fixed-precision
coordinates, so the same report always renders to the same bytes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from html import escape

from partitioner.report.fmt import fmt_bytes, fmt_time
from partitioner.report.model import Report, comparison
from partitioner.report.timeline import Bar, lanes

#: Graphs with at most this many nodes are drawn node by node; larger ones by partition.
MAX_DRAWN_NODES = 300

#: Colour-blind-safe device colours (Okabe-Ito), then greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D31", "#999999")


def device_colors(devices: Sequence[str]) -> dict[str, str]:
    """A stable colour per device id, in cluster order."""
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(devices)}


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'


def _nice_ticks(top: float, count: int = 5) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(top / step) + 1)]


def baseline_chart(report: Report, colors: dict[str, str]) -> str:
    """Horizontal bars: what the objective compares (latency, stage time or price per 1k) of
    the plan and every baseline, with the solver's proven bound on the plan's value."""
    compare = comparison(report.summary.objective)
    rows = report.baselines
    bound = report.summary.bound
    values = [v for v in map(compare.value, rows) if v is not None] + ([bound] if bound else [])
    top = max(values, default=0.0) or 1.0
    left, width, row_h = 170, 520, 26
    height = 30 + row_h * len(rows) + 24
    out = [
        f'<svg class="chart" viewBox="0 0 {left + width + 110} {height}" '
        f'width="{left + width + 110}" height="{height}" role="img" '
        f'aria-label="predicted {"price" if compare.priced else "time"} of the plan and each '
        'baseline">'
    ]
    for i, b in enumerate(rows):
        y = 20 + i * row_h
        out.append(_text(left - 8, y + 15, b.name, "lbl" + (" strong" if b.is_plan else ""), "end"))
        value = compare.value(b)
        if value is None:  # no placement, or a price an older plan did not record
            out.append(
                _text(left + 4, y + 15, "infeasible" if b.latency_s is None else "-", "muted")
            )
            continue
        w = max(1.0, width * value / top)
        fill = "#1b5e20" if b.is_plan else ("#d8a39d" if b.over_target else "#9aa5b1")
        title = f"{b.name}: {compare.fmt(value)}"
        if b.over_target:
            title += "; over the latency target"
        out.append(
            f'<rect x="{left}" y="{y + 3}" width="{_f(w)}" height="{row_h - 8}" '
            f'rx="3" fill="{fill}"><title>{escape(title)}</title></rect>'
        )
        out.append(_text(left + w + 6, y + 15, compare.fmt(value), "val"))
    if bound:
        x = left + width * bound / top
        y1 = 14 + row_h * len(rows)
        out.append(f'<line x1="{_f(x)}" y1="12" x2="{_f(x)}" y2="{_f(y1)}" class="bound"/>')
        out.append(_text(x, y1 + 16, f"proven bound {compare.fmt(bound)}", "muted", "middle"))
    out.append("</svg>")
    return "\n".join(out)


def gantt(report: Report, colors: dict[str, str]) -> str:
    """Timeline per device and link; measured rows beside the predicted ones when present."""
    measured = bool(report.measured_bars)
    all_bars = (*report.predicted_bars, *report.measured_bars)
    order = lanes(report.device_order, all_bars)
    rows: list[tuple[str, str, tuple[Bar, ...]]] = []
    for lane in order:
        rows.append((lane, "predicted", tuple(b for b in report.predicted_bars if b.lane == lane)))
        if measured:
            rows.append(
                (lane, "measured", tuple(b for b in report.measured_bars if b.lane == lane))
            )
    top = max((b.end_s for b in all_bars), default=0.0) or 1e-9
    left, width, row_h = 190, 860, 24
    height = 34 + row_h * len(rows) + 30
    out = [
        f'<svg class="gantt" viewBox="0 0 {left + width + 20} {height}" '
        f'width="{left + width + 20}" height="{height}" role="img" '
        'aria-label="timeline of partitions per device and transfers per link">'
    ]
    ticks = _nice_ticks(top)
    scale = width / max(top, ticks[-1])
    y_axis = 24 + row_h * len(rows)
    for t in ticks:
        x = left + t * scale
        out.append(f'<line x1="{_f(x)}" y1="18" x2="{_f(x)}" y2="{_f(y_axis)}" class="grid"/>')
        out.append(_text(x, y_axis + 16, fmt_time(t), "muted", "middle"))
    for i, (lane, kind, bars) in enumerate(rows):
        y = 22 + i * row_h
        if kind == "predicted":
            out.append(_text(left - 10, y + 15, lane, "lbl strong", "end"))
        else:
            out.append(_text(left - 10, y + 15, "measured", "tiny", "end"))
        if i % (2 if measured else 1) == 0:
            span = row_h * (2 if measured else 1)
            out.append(
                f'<rect x="{left}" y="{_f(y)}" width="{width}" height="{span}" '
                f'class="{"band" if (i // (2 if measured else 1)) % 2 == 0 else "band2"}"/>'
            )
        for b in bars:
            x = left + b.start_s * scale
            w = max(1.5, (b.end_s - b.start_s) * scale)
            device = lane if b.kind == "partition" else lane.split(" → ")[0]
            fill = colors.get(device, "#777") if b.kind == "partition" else "#555"
            style = ' fill-opacity="0.55"' if kind == "measured" else ""
            tip = f"{b.label} ({kind}): {fmt_time(b.start_s)} .. {fmt_time(b.end_s)}"
            out.append(
                f'<rect x="{_f(x)}" y="{_f(y + 3)}" width="{_f(w)}" height="{row_h - 6}" '
                f'rx="2" fill="{fill}"{style}><title>{escape(tip)}</title></rect>'
            )
            if w > 8 * len(b.label) + 6 and b.kind == "partition":
                out.append(_text(x + w / 2, y + 16, b.label, "onbar", "middle"))
    out.append("</svg>")
    return "\n".join(out)


def _layers(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Nodes by topological depth; within a layer ordered by the mean position of parents."""
    preds: dict[str, list[str]] = defaultdict(list)
    known = set(names)
    for a, b in edges:
        if a in known and b in known and a != b:
            preds[b].append(a)
    depth: dict[str, int] = {}
    for n in names:  # names are in a topological order
        depth[n] = 1 + max((depth[p] for p in preds[n] if p in depth), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for n in names:
        layers[depth[n]].append(n)
    pos: dict[str, float] = {}
    for layer in layers:

        def key(n: str) -> float:
            ps = [pos[p] for p in preds[n] if p in pos]
            return sum(ps) / len(ps) if ps else 0.0

        layer.sort(key=key)  # stable: ties keep topological order
        for i, n in enumerate(layer):
            pos[n] = i - (len(layer) - 1) / 2
    return layers


def _draw_graph(
    names: Sequence[str],
    edges: Sequence[tuple[str, str, int]],
    labels: dict[str, str],
    tips: dict[str, str],
    device_of: dict[str, str],
    colors: dict[str, str],
    box_w: int,
) -> str:
    layers = _layers(names, [(a, b) for a, b, _ in edges])
    gap_x, row_h, box_h = 14, 58, 28
    widest = max((len(layer) for layer in layers), default=1)
    width = max(400, widest * (box_w + gap_x) + 40)
    height = len(layers) * row_h + 30
    xy: dict[str, tuple[float, float]] = {}
    for d, layer in enumerate(layers):
        span = len(layer) * (box_w + gap_x) - gap_x
        x0 = (width - span) / 2
        for i, n in enumerate(layer):
            xy[n] = (x0 + i * (box_w + gap_x), 16 + d * row_h)
    out = [
        f'<svg class="graph" viewBox="0 0 {_f(width)} {height}" width="{_f(width)}" '
        f'height="{height}" role="img" aria-label="model graph coloured by device">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#7b8794"/>'
        "</marker></defs>",
    ]
    for a, b, nbytes in edges:
        if a not in xy or b not in xy:
            continue
        (xa, ya), (xb, yb) = xy[a], xy[b]
        x1, y1, x2, y2 = xa + box_w / 2, ya + box_h, xb + box_w / 2, yb
        cross = device_of.get(a) != device_of.get(b)
        mid = (y1 + y2) / 2
        cls = "edge cross" if cross else "edge"
        tip = f"{labels.get(a, a)} → {labels.get(b, b)}" + (
            f": {fmt_bytes(nbytes)}" if nbytes else ""
        )
        out.append(
            f'<path d="M{_f(x1)},{_f(y1)} C{_f(x1)},{_f(mid)} {_f(x2)},{_f(mid)} '
            f'{_f(x2)},{_f(y2)}" class="{cls}" marker-end="url(#arrow)">'
            f"<title>{escape(tip)}</title></path>"
        )
    for n in names:
        x, y = xy[n]
        fill = colors.get(device_of.get(n, ""), "#777")
        label = labels[n] if len(labels[n]) <= box_w // 7 else labels[n][: box_w // 7 - 1] + "…"
        out.append(
            f'<g class="node"><title>{escape(tips[n])}</title>'
            f'<rect x="{_f(x)}" y="{_f(y)}" width="{box_w}" height="{box_h}" rx="5" '
            f'fill="{fill}"/>{_text(x + box_w / 2, y + 18, label, "onbar", "middle")}</g>'
        )
    out.append("</svg>")
    return "\n".join(out)


def graph(report: Report, colors: dict[str, str]) -> tuple[str, str]:
    """The graph coloured by device, and a caption saying what is drawn.

    Node by node when the plan has at most ``MAX_DRAWN_NODES`` nodes and the partition files
    gave the edges; otherwise one box per partition (runner call).
    """
    if (
        report.edges
        and len(report.nodes) <= MAX_DRAWN_NODES
        or (not report.partition_edges and len(report.nodes) <= MAX_DRAWN_NODES)
    ):
        names = [n.name for n in report.nodes]
        device_of = {n.name: n.device for n in report.nodes}
        labels = {n.name: n.op_type.split("::")[-1] for n in report.nodes}
        tips = {
            n.name: f"{n.name} ({n.op_type}) on {n.device}, p{n.partition}, "
            f"{fmt_time(n.latency_s)}: {n.why}"
            for n in report.nodes
        }
        edges = [(e.src, e.dst, e.nbytes) for e in report.edges]
        svg = _draw_graph(names, edges, labels, tips, device_of, colors, 96)
        caption = (
            f"All {len(names)} nodes by topological depth; boxes coloured by device, "
            "red dashed edges cross devices (a transfer)."
        )
        return svg, caption
    names = [f"p{p.index}" for p in report.partitions]
    device_of = {f"p{p.index}": p.device for p in report.partitions}
    labels = {f"p{p.index}": f"p{p.index} · {p.num_nodes} nodes" for p in report.partitions}
    tips = {
        f"p{p.index}": f"partition p{p.index} on {p.device}: {p.num_nodes} nodes, "
        f"predicted {fmt_time(p.predicted_s)}"
        for p in report.partitions
    }
    edges = [(f"p{a}", f"p{b}", n) for a, b, n in report.partition_edges]
    svg = _draw_graph(names, edges, labels, tips, device_of, colors, 140)
    caption = (
        f"{len(report.nodes)} nodes are too many to draw one by one: each box is a "
        f"partition (one runner call), {len(names)} in all"
        + (
            f"; the solver coarsened the graph into {len(report.groups)} groups."
            if report.groups
            else "."
        )
    )
    return svg, caption
