"""HTML tables of the report (baselines, devices, partitions, transfers, nodes) and chips."""

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
from partitioner.report.model import Report, comparison
from partitioner.report.resources import MEMORY_METHODS, measured_memory

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


def chip(device: str, colors: dict[str, str]) -> str:
    color = colors.get(device, "#777")
    return (
        f'<span class="dev"><span class="chip" style="background:{color}"></span>'
        f"{escape(device)}</span>"
    )


def error_cls(error: float | None) -> str:
    if error is None:
        return ""
    return "good" if abs(error) <= 0.2 else ("warn" if abs(error) <= 1.0 else "bad")


def baselines_table(report: Report) -> str:
    compare = comparison(report.summary.objective)
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
            + (_cell(fmt_money(b.cost_per_1k), "n", b.cost_per_1k) if compare.priced else "")
            + _cell("-" if b.is_plan else fmt_ratio(b.speedup), f"n {cls}", b.speedup)
            + _cell(b.note, "warn" if b.over_target else "muted")
        )
    return _table(
        [
            ("placement", False),
            ("latency", True),
            ("stage", True),
            *([("price / 1k", True)] if compare.priced else []),
            (f"plan {compare.ratio}", True),
            ("note", False),
        ],
        rows,
        sortable=True,
    )


def devices_table(report: Report, colors: dict[str, str]) -> str:
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
        if d.memory_source != "evaluator":
            memory = "&ge; " + memory  # the plan has no peak: weights + workspace only
        if d.measured_peak_bytes is not None:  # a saved run measured it: show it beside
            how = MEMORY_METHODS.get(str(d.measured_memory_method), "")
            memory = (
                f'predicted {memory}<br><span title="{escape(how)}">'
                f"{escape(measured_memory(d))}</span>"
            )
        rows.append(
            _cell(chip(d.id, colors), raw=True)
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


def partitions_table(report: Report, colors: dict[str, str]) -> str:
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
            + _cell(chip(p.device, colors), raw=True)
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
            + _cell(fmt_signed_pct(p.error), f"n {error_cls(p.error)}", p.error)
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


def transfers_table(report: Report, colors: dict[str, str]) -> str:
    rows = [
        _cell(t.tensor)
        + _cell(fmt_bytes(t.nbytes), "n", t.nbytes)
        + _cell(
            f"p{t.src_partition} {chip(t.src_device, colors)} → p{t.dst_partition} "
            f"{chip(t.dst_device, colors)}",
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


def nodes_table(report: Report, colors: dict[str, str]) -> tuple[str, str]:
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
            _cell(chip(n.device, colors), raw=True),
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
