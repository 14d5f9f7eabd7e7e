"""The terminal report: aligned plain-text tables, ANSI colour on request (``render_text``)."""

from __future__ import annotations

from collections.abc import Sequence

from partitioner.plan.types import CompileMeasurements
from partitioner.report.fmt import (
    fmt_bytes,
    fmt_money,
    fmt_pct,
    fmt_ratio,
    fmt_signed_pct,
    fmt_time,
)
from partitioner.report.model import NodeRow, Report, comparison
from partitioner.report.resources import memory_lines
from partitioner.versions import format_versions

#: Default number of nodes the text report lists (the most expensive ones).
DEFAULT_TOP = 20

#: Partitions and transfers listed in the terminal (all of them are in the HTML report).
MAX_LISTED = 50

_RESET = "\x1b[0m"
_STYLES = {
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "good": "\x1b[32m",
    "warn": "\x1b[33m",
    "bad": "\x1b[31m",
}
_DEVICE_COLOURS = ("\x1b[36m", "\x1b[35m", "\x1b[34m", "\x1b[33m", "\x1b[32m", "\x1b[91m")

Cell = tuple[str, str]  # (text, style name or device id or "")


class _Painter:
    """Applies styles when colour is on; device ids get a stable colour each."""

    def __init__(self, color: bool, devices: Sequence[str]) -> None:
        self.color = color
        self.devices = {d: _DEVICE_COLOURS[i % len(_DEVICE_COLOURS)] for i, d in enumerate(devices)}

    def __call__(self, text: str, style: str) -> str:
        if not self.color or not style or not text:
            return text
        code = _STYLES.get(style) or self.devices.get(style)
        return f"{code}{text}{_RESET}" if code else text


def _table(
    paint: _Painter, header: Sequence[str], rows: Sequence[Sequence[Cell]], right: Sequence[bool]
) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def line(cells: Sequence[Cell]) -> str:
        parts = []
        last = len(cells) - 1
        for i, (text, style) in enumerate(cells):
            if right[i]:
                padded = text.rjust(widths[i])
            else:
                padded = text if i == last else text.ljust(widths[i])
            parts.append(paint(padded, style))
        return ("  " + "  ".join(parts)).rstrip()

    out = [line([(h, "bold") for h in header])]
    out.append("  " + "  ".join("-" * w for w in widths))
    out.extend(line(r) for r in rows)
    return out


def _error_style(error: float | None) -> str:
    if error is None:
        return ""
    return "good" if abs(error) <= 0.2 else ("warn" if abs(error) <= 1.0 else "bad")


def _summary(report: Report, paint: _Painter) -> list[str]:
    s = report.summary
    unit_s = s.objective != "cost"
    value = fmt_time if unit_s else fmt_money
    status = s.status + (" (proven optimal)" if s.gap <= 0 and s.status == "OPTIMAL" else "")
    lines = [
        f"  model      {s.model} (sha256 {s.model_sha256[:12]}), {s.num_nodes} nodes",
        f"  cluster    {s.cluster}: " + ", ".join(paint(d, d) for d in s.devices),
        f"  objective  {s.objective}"
        + (f" (latency target {fmt_time(s.latency_target_s)})" if s.latency_target_s else ""),
        f"  status     {paint(status, 'good' if s.gap <= 0.02 else 'warn')}",
        f"  predicted  {fmt_time(s.predicted_latency_s)} latency, {fmt_time(s.predicted_stage_s)} "
        f"stage, {fmt_money(s.cost_per_1k)} per 1k inferences, {s.energy_j:.3g} J per inference",
        f"  bound      {value(s.bound)} proven lower bound on {value(s.objective_value)} "
        f"(gap {paint(fmt_pct(s.gap), 'good' if s.gap <= 0.02 else 'warn')})",
        f"  solver     {s.solve_time_s:.2f} s (limit {s.time_limit_s:g} s), seed {s.seed}, "
        f"{s.workers} workers" + (f", {s.num_groups} coarsened groups" if s.num_groups else ""),
        *([f"  compiled   with {format_versions(s.compiled_with)}"] if s.compiled_with else []),
        f"  plan       {s.num_partitions} partitions on "
        + ", ".join(paint(d, d) for d in s.devices_used)
        + f"; {s.num_transfers} transfers ({fmt_bytes(s.transfer_bytes)})",
    ]
    if s.measured_latency_s is None:
        lines.append("  measured   no run saved (hetpart run PLAN_DIR --save)")
    else:
        err = fmt_signed_pct(s.prediction_error)
        lines.append(
            f"  measured   {fmt_time(s.measured_latency_s)} median of {s.repeat} run(s); "
            f"prediction error {paint(err, _error_style(s.prediction_error))}"
        )
        if s.measured_throughput_per_s:
            lines.append(f"  stream     {s.measured_throughput_per_s:.4g} inferences/s pipelined")
        if s.emulated:
            lines.append(
                "  emulated   "
                + ", ".join(sorted(s.emulated))
                + " (timings measured on a stand-in runner)"
            )
    lines.extend(_compile_measured(s.compile_measured))
    return lines


def _compile_measured(m: CompileMeasurements | None) -> list[str]:
    """The short "measured at compile" block: each candidate predicted beside measured."""
    if m is None:
        return []
    lines = ["  measured at compile (median, p10-p90; predicted before measuring):"]
    for c in (*m.singles, *m.rounds):
        t = c.measured
        label = c.name if c.round is None else f"{c.name} ({c.partitions} partitions)"
        lines.append(f"    {label:<24} {fmt_time(t.median_s)} ({fmt_time(t.p10_s)}-"
                     f"{fmt_time(t.p90_s)}), predicted {fmt_time(c.predicted_s)}"
                     + ("  cached" if c.cached else ""))
    gain = f"min gain {m.min_gain:.1%} ({m.min_gain_source})"
    lines.append(f"    chosen {m.chosen}, {gain}: {m.note}")
    return lines


def _baselines(report: Report, paint: _Painter) -> list[str]:
    compare = comparison(report.summary.objective)
    rows = []
    for b in report.baselines:
        style = "bold" if b.is_plan else ""
        speed_style = "" if b.speedup is None else ("good" if b.speedup >= 1.0 - 1e-9 else "bad")
        rows.append(
            [
                (b.name, style),
                (fmt_time(b.latency_s) if b.latency_s is not None else "infeasible", style),
                (fmt_time(b.stage_s), style),
                *([(fmt_money(b.cost_per_1k), style)] if compare.priced else []),
                ("-" if b.is_plan else fmt_ratio(b.speedup), speed_style),
                (b.note, "warn" if b.over_target else "dim"),
            ]
        )
    return _table(
        paint,
        [
            "placement",
            "latency",
            "stage",
            *(["price / 1k"] if compare.priced else []),
            f"plan {compare.ratio}",
            "note",
        ],
        rows,
        [False, True, True, *([True] if compare.priced else []), True, False],
    )


def _devices(report: Report, paint: _Painter) -> list[str]:
    rows = []
    for d in report.devices:
        rows.append(
            [
                (d.id, d.id),
                (f"{d.device_class}/{d.runner}", ""),
                (
                    ("" if d.memory_source == "evaluator" else ">= ")
                    + f"{fmt_bytes(d.used_bytes)} / {fmt_bytes(d.capacity_bytes)}",
                    "",
                ),
                (fmt_pct(d.used_fraction), "bad" if d.used_fraction > 0.95 else ""),
                (fmt_time(d.busy_s), ""),
                (fmt_pct(d.utilisation), ""),
                ("-" if d.measured_busy_s is None else fmt_time(d.measured_busy_s), ""),
                (f"{d.num_nodes}/{d.num_partitions}", ""),
                (fmt_pct(d.price_share), ""),
                (fmt_pct(d.energy_share), ""),
            ]
        )
    return _table(
        paint,
        [
            "device",
            "kind",
            "memory used / capacity",
            "mem",
            "busy",
            "util",
            "measured busy",
            "nodes/parts",
            "price share",
            "energy share",
        ],
        rows,
        [False, False, True, True, True, True, True, True, True, True],
    )


def _tensors(items: Sequence[tuple[str, int]], limit: int = 2) -> str:
    shown = [f"{n} ({fmt_bytes(b)})" for n, b in items[:limit]]
    if len(items) > limit:
        shown.append(f"+{len(items) - limit} more")
    return ", ".join(shown) or "-"


def _partitions(report: Report, paint: _Painter) -> list[str]:
    rows = []
    for p in report.partitions[:MAX_LISTED]:
        rows.append(
            [
                (f"p{p.index}", ""),
                (p.device, p.device),
                (str(p.num_nodes), ""),
                (_tensors([(t.name, t.nbytes) for t in p.inputs]), ""),
                (_tensors([(t.name, t.nbytes) for t in p.outputs]), ""),
                (f"{fmt_time(p.predicted_start_s)}..{fmt_time(p.predicted_end_s)}", "dim"),
                (fmt_time(p.predicted_s), ""),
                (fmt_time(p.measured_s), ""),
                (fmt_signed_pct(p.error), _error_style(p.error)),
            ]
        )
    return _table(
        paint,
        [
            "part",
            "device",
            "nodes",
            "inputs",
            "outputs",
            "predicted span",
            "predicted",
            "measured",
            "error",
        ],
        rows,
        [False, False, True, False, False, False, True, True, True],
    )


def _transfers(report: Report, paint: _Painter) -> list[str]:
    rows = [
        [
            (t.tensor, ""),
            (fmt_bytes(t.nbytes), ""),
            (f"p{t.src_partition} {t.src_device} -> p{t.dst_partition} {t.dst_device}", ""),
            (fmt_time(t.predicted_s), ""),
            (fmt_time(t.measured_s), ""),
        ]
        for t in report.transfers[:MAX_LISTED]
    ]
    return _table(
        paint,
        ["tensor", "bytes", "from -> to", "predicted", "measured"],
        rows,
        [False, True, False, True, True],
    )


def top_nodes(report: Report, top: int) -> list[NodeRow]:
    """The ``top`` nodes with the largest predicted latency (ties: plan order)."""
    order = {n.name: i for i, n in enumerate(report.nodes)}
    ranked = sorted(report.nodes, key=lambda n: (-(n.latency_s or 0.0), order[n.name]))
    return ranked[:top]


def _nodes(report: Report, paint: _Painter, top: int) -> list[str]:
    devices = list(report.device_order)
    rows = []
    for n in top_nodes(report, top):
        cells: list[Cell] = [(n.name, ""), (n.op_type, "dim"), (n.device, n.device)]
        for d in devices:
            cost = dict(n.costs).get(d)
            if cost is None:
                cells.append(("?", "dim"))
            elif cost.unsupported is not None:
                cells.append(("unsupported", "bad"))
            else:
                cells.append((fmt_time(cost.latency_s), "bold" if d == n.device else ""))
        cells.append((n.why, ""))
        rows.append(cells)
    return _table(
        paint,
        ["node", "op", "device", *devices, "why"],
        rows,
        [False, False, False, *([True] * len(devices)), False],
    )


def _listed(count: int) -> str:
    return f"; first {MAX_LISTED} of {count}, all in the HTML report" if count > MAX_LISTED else ""


def render_text(report: Report, color: bool = False, top: int = DEFAULT_TOP) -> str:
    """The terminal report.

    Args:
        report: From ``build_report``.
        color: Use ANSI colours (device ids, good/bad numbers, headings).
        top: How many nodes the per-node table lists (most expensive first).

    Returns:
        The report text, ending with a newline.
    """
    paint = _Painter(color, report.device_order)
    s = report.summary
    title = f"hetpart report: {s.model} on {s.cluster} ({s.objective})"
    out = [paint(title, "bold"), "=" * len(title), ""]

    def section(name: str, body: list[str]) -> None:
        out.extend([paint(name, "bold"), *body, ""])

    section("Summary", _summary(report, paint))
    compare = comparison(s.objective)
    section(
        f"Baselines (plan {compare.ratio} in predicted {compare.metric})",
        _baselines(report, paint),
    )
    section(
        "Devices (memory: weights + largest workspace + peak live activations)",
        _devices(report, paint),
    )
    memory = memory_lines(report.devices)
    if memory:  # a saved run measured memory
        section("Memory, predicted against measured (peak per device)", memory)
    section(
        "Partitions (runner calls, in execution order" + _listed(len(report.partitions)) + ")",
        _partitions(report, paint),
    )
    if report.transfers:
        section(
            f"Transfers ({len(report.transfers)}{_listed(len(report.transfers))})",
            _transfers(report, paint),
        )
    shown = min(top, len(report.nodes))
    note = (
        f"top {shown} of {len(report.nodes)} by predicted latency; all in the HTML report"
        if shown < len(report.nodes)
        else f"all {len(report.nodes)}"
    )
    section(
        f"Nodes ({note}; `hetpart explain PLAN_DIR NODE` for details)", _nodes(report, paint, top)
    )
    return "\n".join(out).rstrip() + "\n"
