"""The HTML report (``render_html``): one self-contained, deterministic file.

Inline CSS and SVG, one small inline script (table sorting and error capture), no external
resources, no timestamps and no absolute paths: the same plan always gives the same bytes.
"""

from __future__ import annotations

from html import escape

from partitioner.report.fmt import (
    fmt_money,
    fmt_pct,
    fmt_ratio,
    fmt_signed_pct,
    fmt_time,
)
from partitioner.report.model import Report, comparison
from partitioner.report.style import CSS, SCRIPT
from partitioner.report.svg import baseline_chart, device_colors, gantt, graph
from partitioner.report.tables import (
    baselines_table,
    chip,
    devices_table,
    nodes_table,
    partitions_table,
    transfers_table,
)

#: Written into every report; ``hetpart report -o`` only overwrites files that carry it.
GENERATOR_MARK = '<meta name="generator" content="hetpart-report">'

#: Forbids every network request: only the inline style and script may run.
CSP = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
)


def _objective_value(objective: str, value: float) -> str:
    return fmt_money(value) if objective == "cost" else fmt_time(value)


def _cards(report: Report) -> str:
    s = report.summary
    compare = comparison(s.objective)
    rivals = [
        b for b in report.baselines if not b.is_plan and b.speedup is not None and not b.over_target
    ]
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
            f"{compare.ratio.capitalize()} vs best baseline",
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
        f"{chip(d.id, colors)} runs {d.num_nodes} node{'s' * (d.num_nodes != 1)} in "
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


def render_html(report: Report) -> str:
    """The HTML report as one self-contained document (deterministic for a given report)."""
    s = report.summary
    colors = device_colors(report.device_order)
    legend = (
        '<div class="legend">'
        + "".join(f"<span>{chip(d, colors)}</span>" for d in report.device_order)
        + "</div>"
    )
    graph_svg, graph_caption = graph(report, colors)
    nodes_html, nodes_note = nodes_table(report, colors)
    compare = comparison(s.objective)
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
        f"<h2>Plan against the baselines</h2><p class='note'>Predicted {compare.metric} of "
        "each placement under the same cost model; the dashed line is the solver's proven lower "
        f"bound. {compare.ratio.capitalize()} &gt; 1 means the plan is {compare.better}."
        + (
            " Baselines over the latency target are marked: they do not meet it."
            if s.objective == "cost"
            else ""
        )
        + "</p>",
        baseline_chart(report, colors),
        baselines_table(report),
        "<h2>Devices</h2><p class='note'>Memory = weights + largest workspace + peak live "
        "activations over the predicted schedule. Utilisation = busy time / predicted "
        "latency.</p>",
        devices_table(report, colors),
        f"<h2>Timeline</h2><p class='note'>{escape(timeline_note)}</p>",
        f'<div class="scroll">{gantt(report, colors)}</div>',
        f"<h2>Graph</h2><p class='note'>{escape(graph_caption)}</p>",
        f'<div class="scroll">{graph_svg}</div>',
        "<h2>Partitions</h2><p class='note'>Each partition is one runner call on one device, "
        "in execution order.</p>",
        partitions_table(report, colors),
    ]
    if report.transfers:
        parts += ["<h2>Transfers</h2>", transfers_table(report, colors)]
    parts += [
        f"<h2>Nodes</h2><p class='note'>{escape(nodes_note)} Cost on every device (bold: "
        "chosen); 'cheapest move' is a serial estimate of moving the node (own time + "
        "transfers + runner calls; positive = slower). Click a reason for the binding "
        "constraints; click a header to sort.</p>",
        nodes_html,
        "<footer>Generated by hetpart from plan.json"
        + (" and run.json" if s.measured_latency_s is not None else "")
        + ". Self-contained: no scripts or styles are loaded from anywhere.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"
