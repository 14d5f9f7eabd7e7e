"""The HTML report: self-contained, deterministic, complete, escaped; large graphs by partition."""

from __future__ import annotations

import dataclasses
import re

from test_report_fixtures import chain_plan, small_detail, small_measurements, small_plan

from partitioner.report import build_report
from partitioner.report.html import GENERATOR_MARK, render_html
from partitioner.report.svg import MAX_DRAWN_NODES


def _html(measured: bool = True, plan=None) -> str:
    plan = plan or small_plan()
    return render_html(
        build_report(plan, small_measurements() if measured else None, small_detail())
    )


def test_html_is_deterministic() -> None:
    assert _html() == _html()
    assert _html(measured=False) == _html(measured=False)


def test_html_is_self_contained() -> None:
    html = _html()
    assert html.startswith("<!DOCTYPE html>") and GENERATOR_MARK in html
    lowered = html.lower()
    for forbidden in ("http://", "https://", "<script src", "<link", "@import", "src="):
        assert forbidden not in lowered, forbidden
    assert not re.search(r"url\((?!#)", lowered)  # only in-document references (#arrow)
    assert lowered.count("<script>") == 1  # the one inline script (sorting, error capture)
    assert "content=\"default-src 'none'" in html  # the browser may fetch nothing at all
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d", html)  # no dates or timestamps


def test_html_shows_devices_partitions_nodes_and_numbers() -> None:
    html = _html()
    for device in ("cpu", "gpu", "npu"):
        assert f"{device}</td>" in html or f"</span>{device}" in html
    for index in range(3):
        assert f"<td data-v=\"{index}\">p{index}</td>" in html
    for node in ("embed", "side", "mm1", "relu1", "mm2", "softmax", "join", "head"):
        assert f"<td>{node}</td>" in html
    assert "+19.7%" in html  # prediction error of the run
    assert "6.9%" in html  # proven gap
    assert "proven bound 70 µs" in html  # bound line of the baselines chart
    assert html.count('<g class="node">') == 8  # the graph, node by node
    assert "Softmax not in npu table" in html  # why softmax cannot run on the npu


def test_html_cost_objective_compares_prices() -> None:
    html = _html(measured=False, plan=small_plan("cost"))
    assert "Predicted price per 1k inferences of each placement" in html
    assert "Saving &gt; 1 means the plan is cheaper" in html
    assert '<th class="n">price / 1k</th><th class="n">plan saving</th>' in html
    assert '<td class="n" data-v="5e-05">5e-05</td>' in html  # single:gpu's price
    assert '<td class="n good" data-v="2.63736">2.64x</td>' in html  # its price / the plan's
    assert '<td class="warn">over the 100 µs latency target</td>' in html
    assert 'aria-label="predicted price of the plan and each baseline"' in html
    assert "<title>single:cpu: 1.67e-05; over the latency target</title>" in html
    assert "proven bound 1.8e-05" in html  # the price bound, on the price axis
    # The card compares with the cheapest baseline that meets the target: heft, not single:cpu.
    assert 'Saving vs best baseline</div><div class="v">1.00x</div>' in html
    assert "over heft (predicted)" in html
    latency = _html(measured=False)
    assert "price / 1k" not in latency and "Speedup &gt; 1 means the plan is faster" in latency


def test_html_timeline_has_measured_rows_only_with_a_run() -> None:
    assert ">measured</text>" in _html(measured=True)
    assert ">measured</text>" not in _html(measured=False)
    assert "cpu → gpu" in _html(measured=False)  # link lane of the transfer


def test_html_escapes_names() -> None:
    plan = small_plan()
    evil = dataclasses.replace(plan, model=dataclasses.replace(plan.model, name="<img src=x>"))
    html = _html(plan=evil)
    assert "<img src=x>" not in html and "&lt;img src=x&gt;" in html


def test_large_graph_is_drawn_by_partition_and_listed_in_full() -> None:
    plan = chain_plan(MAX_DRAWN_NODES + 100)
    html = render_html(build_report(plan))
    assert "nodes are too many to draw one by one" in html
    assert html.count('<g class="node">') == len(plan.partitions)
    assert "coarsened the graph into 1 groups" in html
    assert html.count("<td>n0") == MAX_DRAWN_NODES + 100
