"""``hetpart report`` (terminal or HTML report of a plan) and ``hetpart explain`` (one node)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from partitioner.errors import ReportError
from partitioner.report import build_report, read_report_inputs, render_text
from partitioner.report.explain import explain
from partitioner.report.generation import (
    is_generation_plan_dir,
    read_generation,
    render_generation_html,
    render_generation_text,
)
from partitioner.report.html import GENERATOR_MARK, render_html
from partitioner.report.text import DEFAULT_TOP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="show where every operator of a plan runs, and why")
    p.add_argument("plan_dir", metavar="PLAN_DIR")
    p.add_argument("-o", "--output", metavar="REPORT.html", help="write the HTML report here")
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")
    p.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        metavar="N",
        help=f"nodes listed in the terminal report (default {DEFAULT_TOP})",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite REPORT.html even if it is not an earlier hetpart report",
    )
    p.set_defaults(func=run_report)

    e = sub.add_parser("explain", help="why one node of a plan runs where it does")
    e.add_argument("plan_dir", metavar="PLAN_DIR")
    e.add_argument("node", metavar="NODE_NAME")
    e.set_defaults(func=run_explain)


def use_color(no_color: bool) -> bool:
    """Colour only on a terminal, and never with ``--no-color`` or ``NO_COLOR`` set."""
    return not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite a file that is not an earlier hetpart report (unless ``force``)."""
    if path.is_dir():
        raise ReportError(f"-o {path}: is a directory; give a file name such as report.html")
    if not path.exists() or force:
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError as exc:
        raise ReportError(f"-o {path}: cannot read the existing file: {exc}") from None
    if GENERATOR_MARK not in head:
        raise ReportError(
            f"-o {path}: exists and is not a hetpart report; pass --force to overwrite it"
        )


def run_report(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise ReportError(f"--top {args.top}: must be zero or positive")
    if is_generation_plan_dir(args.plan_dir):
        return _report_generation(args)
    inputs = read_report_inputs(args.plan_dir)
    report = build_report(inputs.plan, inputs.measurements, inputs.detail)
    if args.output:
        out = Path(args.output)
        check_writable(out, args.force)
        try:
            out.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"-o {out}: cannot write the report: {exc}") from None
        print(f"HTML report written to {out}")
        return 0
    sys.stdout.write(render_text(report, color=use_color(args.no_color), top=args.top))
    return 0


def _report_generation(args: argparse.Namespace) -> int:
    """A generation plan: per-phase placement, KV per device, the Pareto front, the why."""
    from partitioner.report.html import CSP

    doc = read_generation(args.plan_dir)
    if args.output:
        out = Path(args.output)
        check_writable(out, args.force)
        try:
            out.write_text(render_generation_html(doc, GENERATOR_MARK, CSP), encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"-o {out}: cannot write the report: {exc}") from None
        print(f"HTML report written to {out}")
        return 0
    sys.stdout.write(render_generation_text(doc))
    return 0


def run_explain(args: argparse.Namespace) -> int:
    inputs = read_report_inputs(args.plan_dir)
    sys.stdout.write(explain(inputs.plan, args.node, inputs.detail))
    return 0
