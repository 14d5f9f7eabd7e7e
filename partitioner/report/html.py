"""The HTML report (``render_html``): one self-contained, deterministic file.

Inline CSS and SVG, one small inline script (table sorting and error capture), no external
resources, no timestamps and no absolute paths: the same plan always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from partitioner.report.fmt import (
    fmt_bytes,
    fmt_delta_time,
    fmt_money,
    fmt_pct,
    fmt_ratio,
    fmt_signed_pct,
    fmt_time,
)
from partitioner.report.model import Report
from partitioner.report.style import CSS, SCRIPT
from partitioner.report.svg import baseline_chart, device_colors, gantt, graph

#: Written into every report; ``hetpart report -o`` only overwrites files that carry it.
GENERATOR_MARK = '<meta name="generator" content="hetpart-report">'

#: Forbids every network request: only the inline style and script may run.
CSP = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
)

#: The per-node table lists at most this many nodes (the most expensive first beyond it).
MAX_NODE_ROWS = 20000


def _cell(text: str, cls: str = "", value: float | None = None, raw: bool = False) -> str:
    attrs = f' class="{cls}"' if cls else ""
    if value is not None:
        attrs += f' data-v="{value:.6g}"'
    return f"<td{attrs}>{text if raw else escape(text)}</td>"


def _table(
    header: Sequence[tuple[str, bool]], rows: Iterable[str], sortable: bool = False, cls: str = ""
) -> str:
    klass = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    head = "".join(
        f'<th class="n">{escape(h)}</th>' if num else f"<th>{escape(h)}</th>" for h, num in header
    )
    body = "\n".join(f"<tr>{r}</tr>" for r in rows)
    return (
        f'<table class="{klass}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'
    )


def _chip(device: str, colors: dict[str, str]) -> str:
    color = colors.get(device, "#777")
    return (
        f'<span class="dev"><span class="chip" style="background:{color}"></span>'
        f"{escape(device)}</span>"
    )


def _error_cls(error: float | None) -> str:
    if error is None:
        return ""
    return "good" if abs(error) <= 0.2 else ("warn" if abs(error) <= 1.0 else "bad")


def _objective_value(objective: str, value: float) -> str:
    return fmt_money(value) if objective == "cost" else fmt_time(value)


def _cards(report: Report) -> str:
    s = report.summary
    rivals = [b for b in report.baselines if not b.is_plan and b.speedup is not None]
    rival = min(rivals, key=lambda b: b.speedup or 0.0) if rivals else None
    cards = [
        (
            "Predicted latency",
            fmt_time(s.predicted_latency_s),
            f"stage {fmt_time(s.predicted_stage_s)} · {s.num_partitions} runner calls",
        ),
        (
            "Proven gap to optimal",
            fmt_pct(s.gap),
            f"{s.status}; bound {_objective_value(s.objective, s.bound)}",
        ),
        (
            "Measured latency",
            fmt_time(s.measured_latency_s) if s.measured_latency_s is not None else "not run",
            f"prediction error {fmt_signed_pct(s.prediction_error)}"
            if s.measured_latency_s is not None
            else "hetpart run PLAN_DIR --save",
        ),
        (
            "Speedup vs best baseline",
            fmt_ratio(rival.speedup) if rival else "-",
            f"over {rival.name} (predicted)" if rival else "no feasible baseline",
        ),
        (
            "Cost / energy",
            f"{fmt_money(s.cost_per_1k)} per 1k",
            f"{s.energy_j:.3g} J per inference",
        ),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
            f'<div class="s">{escape(sub)}</div></div>'
            for k, v, sub in cards
        )
        + "</div>"
    )


def _story(report: Report, colors: dict[str, str]) -> str:
    s = report.summary
    used = [d for d in report.devices if d.num_nodes]
    where = "; ".join(
        f"{_chip(d.id, colors)} runs {d.num_nodes} node{'s' * (d.num_nodes != 1)} in "
        f"{d.num_partitions} call{'s' * (d.num_partitions != 1)}, busy {escape(fmt_time(d.busy_s))}"
        f" ({escape(fmt_pct(d.utilisation))} of the time)"
        for d in used
    )
    proof = (
        "the solver proved that no placement is better under the cost model"
        if s.gap <= 1e-9
        else f"the solver proved it is at most {fmt_pct(s.gap)} worse than the best possible "
        f"placement under the cost model (status {s.status})"
    )
    if s.measured_latency_s is None:
        measured = (
            "It has not been run yet: <code>hetpart run PLAN_DIR --save</code> adds "
            "measurements to this report."
        )
    else:
        direction = "slower" if (s.prediction_error or 0) > 0 else "faster"
        measured = (
            f"Measured, it took {escape(fmt_time(s.measured_latency_s))} (median of "
            f"{s.repeat}), {escape(fmt_pct(abs(s.prediction_error or 0.0)))} {direction} "
            "than predicted."
        )
        if s.measured_throughput_per_s:
            measured += f" Pipelined, it sustained {s.measured_throughput_per_s:.4g} inferences/s."
        if s.emulated:
            measured += (
                " Devices "
                + escape(", ".join(sorted(s.emulated)))
                + " were emulated on a local runner, so their timings are stand-ins."
            )
    return (
        f'<div class="story"><p><strong>Where it runs.</strong> {where}.</p>'
        f"<p><strong>How good it is.</strong> Predicted {escape(fmt_time(s.predicted_latency_s))}"
        f"; {escape(proof)}.</p><p><strong>How the prediction held.</strong> {measured}</p>"
        "</div>"
    )


def _baselines(report: Report) -> str:
    rows = []
    for b in report.baselines:
        cls = "" if b.speedup is None else ("good" if b.speedup >= 1 - 1e-9 else "bad")
        name = f"<strong>{escape(b.name)}</strong>" if b.is_plan else escape(b.name)
        rows.append(
            _cell(name, raw=True)
            + _cell(
                fmt_time(b.latency_s) if b.latency_s is not None else "infeasible", "n", b.latency_s
            )
            + _cell(fmt_time(b.stage_s), "n", b.stage_s)
            + _cell("-" if b.is_plan else fmt_ratio(b.speedup), f"n {cls}", b.speedup)
            + _cell(b.note, "muted")
        )
    return _table(
        [
            ("placement", False),
            ("latency", True),
            ("stage", True),
            ("plan speedup", True),
            ("note", False),
        ],
        rows,
        sortable=True,
    )


def _devices(report: Report, colors: dict[str, str]) -> str:
    rows = []
    for d in report.devices:
        frac = min(1.0, d.used_fraction)
        bar = (
            f'<div class="bar" title="{escape(fmt_pct(d.used_fraction))}"><span style="width:'
            f'{frac * 100:.2f}%;background:{colors[d.id]}"></span></div>'
        )
        memory = (
            f"{escape(fmt_bytes(d.used_bytes))} of {escape(fmt_bytes(d.capacity_bytes))}"
            f" ({escape(fmt_pct(d.used_fraction))}){bar}<span class='muted'>weights "
            f"{escape(fmt_bytes(d.weight_bytes))}, workspace "
            f"{escape(fmt_bytes(d.workspace_bytes))}, activations "
            f"{escape(fmt_bytes(d.activation_bytes))}</span>"
        )
        rows.append(
            _cell(_chip(d.id, colors), raw=True)
            + _cell(f"{d.device_class} / {d.runner}")
            + _cell(memory, value=d.used_fraction, raw=True)
            + _cell(fmt_time(d.busy_s), "n", d.busy_s)
            + _cell(fmt_pct(d.utilisation), "n", d.utilisation)
            + _cell(fmt_time(d.measured_busy_s), "n", d.measured_busy_s)
            + _cell(str(d.num_nodes), "n", d.num_nodes)
            + _cell(str(d.num_partitions), "n", d.num_partitions)
            + _cell(fmt_pct(d.price_share), "n", d.price_share)
            + _cell(fmt_pct(d.energy_share), "n", d.energy_share)
        )
    return _table(
        [
            ("device", False),
            ("kind", False),
            ("memory used / capacity", False),
            ("busy", True),
            ("utilisation", True),
            ("measured busy", True),
            ("nodes", True),
            ("calls", True),
            ("price share", True),
            ("energy share", True),
        ],
        rows,
    )


def _tensor_list(items: Sequence[tuple[str, int, str]]) -> str:
    shown = [
        f"{escape(n)} <span class='muted'>{escape(fmt_bytes(b))}{escape(where)}</span>"
        for n, b, where in items[:4]
    ]
    if len(items) > 4:
        shown.append(f"<span class='muted'>+{len(items) - 4} more</span>")
    return "<br>".join(shown) or "-"


def _partitions(report: Report, colors: dict[str, str]) -> str:
    rows = []
    for p in report.partitions:
        ins = [
            (t.name, t.nbytes, " · model input" if t.graph_io else f" · from p{t.peers[0]}")
            for t in p.inputs
        ]
        outs = [
            (
                t.name,
                t.nbytes,
                (" · model output" if t.graph_io else "")
                + (" · to " + ", ".join(f"p{i}" for i in t.peers) if t.peers else ""),
            )
            for t in p.outputs
        ]
        rows.append(
            _cell(f"p{p.index}", value=p.index)
            + _cell(_chip(p.device, colors), raw=True)
            + _cell(str(p.num_nodes), "n", p.num_nodes)
            + _cell(_tensor_list(ins), raw=True)
            + _cell(_tensor_list(outs), raw=True)
            + _cell(
                f"{fmt_time(p.predicted_start_s)} .. {fmt_time(p.predicted_end_s)}",
                "n",
                p.predicted_start_s,
            )
            + _cell(fmt_time(p.predicted_s), "n", p.predicted_s)
            + _cell(fmt_time(p.measured_s), "n", p.measured_s)
            + _cell(fmt_signed_pct(p.error), f"n {_error_cls(p.error)}", p.error)
        )
    return _table(
        [
            ("partition", False),
            ("device", False),
            ("nodes", True),
            ("inputs", False),
            ("outputs", False),
            ("predicted span", True),
            ("predicted", True),
            ("measured", True),
            ("error", True),
        ],
        rows,
        sortable=True,
    )


def _transfers(report: Report, colors: dict[str, str]) -> str:
    rows = [
        _cell(t.tensor)
        + _cell(fmt_bytes(t.nbytes), "n", t.nbytes)
        + _cell(
            f"p{t.src_partition} {_chip(t.src_device, colors)} → p{t.dst_partition} "
            f"{_chip(t.dst_device, colors)}",
            raw=True,
        )
        + _cell(fmt_time(t.predicted_s), "n", t.predicted_s)
        + _cell(fmt_time(t.measured_s), "n", t.measured_s)
        for t in report.transfers
    ]
    return _table(
        [
            ("tensor", False),
            ("bytes", True),
            ("from → to", False),
            ("predicted", True),
            ("measured", True),
        ],
        rows,
        sortable=True,
    )


def _nodes(report: Report, colors: dict[str, str]) -> tuple[str, str]:
    devices = list(report.device_order)
    nodes = list(report.nodes)
    note = f"All {len(nodes)} nodes in execution order."
    if len(nodes) > MAX_NODE_ROWS:
        nodes = sorted(nodes, key=lambda n: -(n.latency_s or 0.0))[:MAX_NODE_ROWS]
        note = f"The {MAX_NODE_ROWS} most expensive of {len(report.nodes)} nodes."
    rows = []
    for n in nodes:
        costs = dict(n.costs)
        cells = [
            _cell(n.name),
            _cell(n.op_type, "muted"),
            _cell(_chip(n.device, colors), raw=True),
            _cell(f"p{n.partition}", value=n.partition),
        ]
        for d in devices:
            c = costs.get(d)
            if c is None:
                cells.append(_cell("?", "n muted"))
            elif c.unsupported is not None:
                cells.append(f'<td class="n bad" title="{escape(c.unsupported)}">unsupported</td>')
            else:
                cls = "n strong" if d == n.device else "n"
                cells.append(_cell(fmt_time(c.latency_s), cls, c.latency_s))
        possible = [m for m in n.moves if m.total_s is not None]
        best = min(possible, key=lambda m: m.total_s or 0.0) if possible else None
        cells.append(
            _cell(
                f"{fmt_delta_time(best.total_s)} to {best.device}" if best else "-",
                "n",
                best.total_s if best else None,
            )
        )
        detail = escape(n.why)
        if n.constraints:
            items = "".join(f"<li>{escape(c)}</li>" for c in n.constraints)
            detail = f"<details><summary>{detail}</summary><ul>{items}</ul></details>"
        cells.append(_cell(detail, raw=True))
        rows.append("".join(cells))
    header = [("node", False), ("op", False), ("device", False), ("call", False)]
    header += [(f"on {d}", True) for d in devices] + [("cheapest move", True), ("why", False)]
    return _table(header, rows, sortable=True), note


def render_html(report: Report) -> str:
    """The HTML report as one self-contained document (deterministic for a given report)."""
    s = report.summary
    colors = device_colors(report.device_order)
    legend = (
        '<div class="legend">'
        + "".join(f"<span>{_chip(d, colors)}</span>" for d in report.device_order)
        + "</div>"
    )
    graph_svg, graph_caption = graph(report, colors)
    nodes_table, nodes_note = _nodes(report, colors)
    metric = "stage time" if s.objective == "throughput" else "latency"
    timeline_note = (
        "Predicted schedule per device (partitions) and link (transfers)"
        + (
            "; the lighter row under each lane is the measured run (partition "
            "durations replayed in dependency order unless start times were recorded)"
            if report.measured_bars
            else "; no run saved, so no measured rows"
        )
        + ". Hover a bar for its times."
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        GENERATOR_MARK,
        CSP,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>hetpart report: {escape(s.model)} on {escape(s.cluster)}</title>",
        f"<style>{CSS}</style>",
        f"<script>{SCRIPT}</script>",
        "</head><body><main>",
        '<div id="js-errors"></div>',
        f"<h1>{escape(s.model)} on {escape(s.cluster)}</h1>",
        f'<p class="lead">Placement plan optimised for <strong>{escape(s.objective)}</strong>'
        + (
            f" under a {escape(fmt_time(s.latency_target_s))} latency target"
            if s.latency_target_s
            else ""
        )
        + f" · {s.num_nodes} nodes · devices: {escape(', '.join(s.devices))} · model sha256 "
        f"<code>{escape(s.model_sha256[:12])}</code> · solver {s.solve_time_s:.2f} s "
        f"(limit {s.time_limit_s:g} s), seed {s.seed}, {s.workers} workers</p>",
        legend,
        _cards(report),
        _story(report, colors),
        f"<h2>Plan against the baselines</h2><p class='note'>Predicted {metric} of each "
        "placement under the same cost model; the dashed line is the solver's proven lower "
        "bound. Speedup &gt; 1 means the plan is faster.</p>",
        baseline_chart(report, colors),
        _baselines(report),
        "<h2>Devices</h2><p class='note'>Memory = weights + largest workspace + peak live "
        "activations over the predicted schedule. Utilisation = busy time / predicted "
        "latency.</p>",
        _devices(report, colors),
        f"<h2>Timeline</h2><p class='note'>{escape(timeline_note)}</p>",
        f'<div class="scroll">{gantt(report, colors)}</div>',
        f"<h2>Graph</h2><p class='note'>{escape(graph_caption)}</p>",
        f'<div class="scroll">{graph_svg}</div>',
        "<h2>Partitions</h2><p class='note'>Each partition is one runner call on one device, "
        "in execution order.</p>",
        _partitions(report, colors),
    ]
    if report.transfers:
        parts += ["<h2>Transfers</h2>", _transfers(report, colors)]
    parts += [
        f"<h2>Nodes</h2><p class='note'>{escape(nodes_note)} Cost on every device (bold: "
        "chosen); 'cheapest move' is a serial estimate of moving the node (own time + "
        "transfers + runner calls; positive = slower). Click a reason for the binding "
        "constraints; click a header to sort.</p>",
        nodes_table,
        "<footer>Generated by hetpart from plan.json"
        + (" and run.json" if s.measured_latency_s is not None else "")
        + ". Self-contained: no scripts or styles are loaded from anywhere.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"
