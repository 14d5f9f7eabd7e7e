"""Reports of generation plans (``PLAN_DIR/generation.json``): text and HTML.

Read from the saved JSON only (the report layer sits below ``generation``): per-phase placement
of every layer group, the KV cache each decode device holds across the context, tokens/s
against $/Mtok over batch sizes (the Pareto front the planner kept, with an SVG chart in HTML),
for every group why it sits where it does in each phase, and the baselines.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from partitioner.errors import ReportError
from partitioner.report.fmt import fmt_bytes, fmt_time

GENERATION_FILE = "generation.json"
#: Fractions of the reserved context the KV table shows.
CONTEXT_STEPS = (0.125, 0.25, 0.5, 1.0)


def is_generation_plan_dir(plan_dir: str | Path) -> bool:
    return (Path(plan_dir) / GENERATION_FILE).is_file()


def read_generation(plan_dir: str | Path) -> dict[str, Any]:
    """``generation.json`` as a dict, checked for the planner's placement section."""
    path = Path(plan_dir) / GENERATION_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None
    placement = doc.get("placement") if isinstance(doc, dict) else None
    if not isinstance(placement, dict) or "groups" not in placement:
        raise ReportError(f"{path}: no per-group placement to report (a generation plan "
                          "written without the planner: `hetpart compile DECODER --workload`)")
    return doc


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = ["  " + line.rstrip(), "  " + "  ".join("-" * w for w in widths)]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]
    return out


def _value(objective: str, v: float | None) -> str:
    if v is None:
        return "-"
    return {"ttft": f"TTFT {fmt_time(v)}", "tpot": f"TPOT {fmt_time(v)}",
            "tokens-per-s": f"{v:.4g} tokens/s", "cost-per-mtok": f"{v:.4g} $/Mtok"}[objective]


def kv_rows(p: dict[str, Any], workload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """KV cache bytes each decode device holds at fractions of the context, with its memory
    and what else it holds (weights, the plan's total)."""
    batch, context = p["batch"], workload["context"]
    contexts = sorted({max(1, int(context * f)) for f in CONTEXT_STEPS})
    memory = {d["id"]: d["memory_bytes"] for d in p["devices"]}
    used = p["predicted"]["memory_bytes"]
    headers = ["device", *[f"ctx {c}" for c in contexts], "plan total", "memory"]
    rows = []
    for device, per_token in sorted(p["kv_bytes_by_device"].items()):
        rows.append([device, *[fmt_bytes(per_token * c * batch) for c in contexts],
                     fmt_bytes(used.get(device)), fmt_bytes(memory.get(device))])
    return headers, rows


def _pareto_rows(p: dict[str, Any]) -> list[list[str]]:
    """The best plan at each batch size tried, ``*`` marking those on the Pareto front."""
    front = {(c["batch"], c["tokens_per_s"], c["cost_per_mtok"]) for c in p.get("pareto", [])}
    rows = p.get("by_batch") or p.get("pareto", [])
    return [[str(c["batch"]), f"{c['tokens_per_s']:.4g}", f"{c['cost_per_mtok']:.4g}",
             fmt_time(c["ttft_s"]), fmt_time(c["tpot_s"]),
             "co-located" if c["colocated"] else "disaggregated",
             "*" if (c["batch"], c["tokens_per_s"], c["cost_per_mtok"]) in front else "",
             c["origin"]]
            for c in rows]


def _why_lines(p: dict[str, Any]) -> list[str]:
    lines = []
    for g in p.get("explain", []):
        for phase in ("prefill", "decode"):
            e = g[phase]
            head = (f"  {g['group']:<26} {phase:<7} on {e['device']} "
                    f"({fmt_time(e['time_s'])}{'/step' if phase == 'decode' else ''})")
            faster = e["faster_devices"]
            if not faster:
                lines.append(head + ": the fastest device for it")
                continue
            lines.append(head + ": faster elsewhere, but")
            lines += [f"      {f['device']} ({fmt_time(f['time_s'])}): {f['why_not']}"
                      for f in faster]
    return lines


def render_generation_text(doc: dict[str, Any]) -> str:
    p = doc["placement"]
    w = p["workload"]
    pred = p["predicted"]
    objective = p["objective"]
    runnable = doc.get("runnable", True)
    gap = "-" if p["gap"] is None else f"{p['gap']:.2%}"
    out = [
        f"Generation plan: {p['model']} on {p['cluster']}"
        + ("" if runnable else " (plan only: no runnable phase plans)"),
        f"  workload   prompt={w['prompt']} new={w['new']} batch={w['batch']} "
        f"context={w['context']}; planned at batch {p['batch']}",
        f"  objective  {objective}: {_value(objective, pred[_KEY[objective]])}; proven bound "
        f"{_value(objective, p['bound'])} (gap {gap}); solved in {p['solve_time_s']:.2f} s",
        f"  predicted  TTFT {fmt_time(pred['ttft_s'])}, TPOT {fmt_time(pred['tpot_s'])} "
        f"(last step {fmt_time(pred['tpot_worst_s'])}), {pred['tokens_per_s']:.4g} tokens/s, "
        f"{pred['cost_per_mtok']:.4g} $/Mtok at {pred['price_per_hour']:.4g} $/h",
        f"  choice     {p['choice']}",
        "",
        "Placement per layer group and phase",
    ]
    rows = []
    for g, e in zip(p["groups"], p.get("explain", [{}] * len(p["groups"])), strict=True):
        rows.append([g["label"], g["prefill"],
                     fmt_time(e["prefill"]["time_s"]) if e else "-", g["decode"],
                     fmt_time(e["decode"]["time_s"]) if e else "-",
                     "" if g["prefill"] == g["decode"] else "KV hand-off"])
    out += _table(["group", "prefill on", "prefill", "decode on", "decode/step", ""], rows)
    out += ["", f"KV cache per device across the context (batch {p['batch']}, "
            f"{p['kv_bytes_per_token']:.6g} bytes per token per sequence in all)"]
    headers, kv = kv_rows(p, w)
    out += _table(headers, kv)
    out += ["", "Tokens/s against $/Mtok across batch sizes (best plan per batch for the "
            "objective; * on the Pareto front of every placement scored)"]
    out += _table(["batch", "tokens/s", "$/Mtok", "TTFT", "TPOT", "phases", "Pareto", "from"],
                  _pareto_rows(p))
    out += ["", "Baselines (each at its best batch)"]
    brows = []
    for name, b in p["baselines"].items():
        if b is None:
            brows.append([name, "-", "-", "-", "-", p["baseline_notes"].get(name, "none")])
        else:
            brows.append([name, f"{b['tokens_per_s']:.4g}", f"{b['cost_per_mtok']:.4g}",
                          fmt_time(b["ttft_s"]), fmt_time(b["tpot_s"]),
                          f"batch {b['batch']}, {b['origin']}"])
    out += _table(["baseline", "tokens/s", "$/Mtok", "TTFT", "TPOT", ""], brows)
    out += ["", "Why each group sits where it does"] + _why_lines(p)
    return "\n".join(out) + "\n"


_KEY = {"ttft": "ttft_s", "tpot": "tpot_s", "tokens-per-s": "tokens_per_s",
        "cost-per-mtok": "cost_per_mtok"}


def pareto_svg(p: dict[str, Any], width: int = 560, height: int = 300) -> str:
    """Tokens/s (x) against $/Mtok (y) of the Pareto front and the baselines."""
    points = [(c["tokens_per_s"], c["cost_per_mtok"], f"batch {c['batch']}", "front")
              for c in p.get("pareto", [])]
    points += [(c["tokens_per_s"], c["cost_per_mtok"], f"batch {c['batch']}", "batch")
               for c in p.get("by_batch", [])]
    points += [(b["tokens_per_s"], b["cost_per_mtok"], name, "baseline")
               for name, b in p["baselines"].items() if b is not None]
    if not points:
        return ""
    xmax = max(x for x, *_ in points) * 1.1 or 1.0
    ymax = max(y for _, y, *_ in points) * 1.1 or 1.0
    left, bottom, top, right = 60, 40, 20, 20

    def sx(x: float) -> float:
        return left + (width - left - right) * x / xmax

    def sy(y: float) -> float:
        return height - bottom - (height - bottom - top) * y / ymax

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'role="img" aria-label="tokens per second against dollars per million tokens">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
             f'y2="{height - bottom}" stroke="#888"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>',
             f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">tokens/s '
             f'(0-{xmax:.3g})</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
             f'text-anchor="middle">$/Mtok (0-{ymax:.3g})</text>']
    front = sorted((pt for pt in points if pt[3] == "front"), key=lambda pt: pt[0])
    if len(front) > 1:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, *_ in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#2a7" stroke-width="2"/>')
    for x, y, label, kind in points:
        color = {"front": "#2a7", "batch": "#27c"}.get(kind, "#c44")
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{color}">'
                     f'<title>{escape(label)}: {x:.4g} tokens/s, {y:.4g} $/Mtok</title>'
                     '</circle>')
        parts.append(f'<text x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}" font-size="10">'
                     f'{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_generation_html(doc: dict[str, Any], generator_mark: str, csp: str) -> str:
    """The same sections as the text report, as a standalone page with the Pareto chart."""
    p = doc["placement"]
    text = render_generation_text(doc)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', generator_mark, csp,
        f"<title>hetpart generation report: {escape(p['model'])} on {escape(p['cluster'])}"
        "</title>",
        "<style>body{font-family:sans-serif;margin:2em}pre{font-size:12px}</style>",
        "</head><body><main>",
        f"<h1>{escape(p['model'])} on {escape(p['cluster'])}: generation plan</h1>",
        "<h2>Tokens/s against $/Mtok</h2>",
        "<p>Green: the Pareto front (placements no other beats on both); blue: the best plan "
        "at each batch size; red: the baselines. Hover a point for its numbers.</p>",
        pareto_svg(p),
        "<h2>Plan</h2>",
        f"<pre>{escape(text)}</pre>",
        "</main></body></html>",
    ]) + "\n"
