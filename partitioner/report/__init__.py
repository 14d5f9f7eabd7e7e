"""Reports and explanations of plans: report data, terminal and HTML renderers, explain."""

from __future__ import annotations

from partitioner.report.explain import explain
from partitioner.report.html import render_html
from partitioner.report.inputs import (
    GraphDetail,
    Measurements,
    ReportInputs,
    read_graph_detail,
    read_measurements,
    read_report_inputs,
)
from partitioner.report.model import Report, build_report
from partitioner.report.text import render_text

__all__ = [
    "GraphDetail",
    "Measurements",
    "Report",
    "ReportInputs",
    "build_report",
    "explain",
    "read_graph_detail",
    "read_measurements",
    "read_report_inputs",
    "render_html",
    "render_text",
]
