"""Report data and the terminal report: numbers checked by hand, text against golden files."""

from __future__ import annotations

import dataclasses
import re

import pytest
from test_report_fixtures import (
    MIB,
    US,
    price_per_1k,
    small_detail,
    small_measurements,
    small_plan,
)

from partitioner.errors import ReportError
from partitioner.report import build_report, render_text
from partitioner.report.explain import explain
from partitioner.report.resources import busy_times, device_usage


def _without_evaluator_numbers(plan):
    """The plan as an older plan.json (no stored busy time or peak memory) reads."""
    solver = dataclasses.replace(plan.solver, busy_s={}, peak_memory={})
    return dataclasses.replace(plan, solver=solver)


def test_busy_time_is_the_stored_one_or_node_time_plus_call_overheads() -> None:
    plan = small_plan()
    assert busy_times(plan) == plan.solver.busy_s
    busy = busy_times(_without_evaluator_numbers(plan))
    # cpu: 4 + 6 + 4 + 0.5 + 4 node µs, two calls of 10 µs; gpu: 4.5 µs + one 20 µs call.
    assert busy["cpu"] == pytest.approx(38.5 * US)
    assert busy["gpu"] == pytest.approx(24.5 * US)
    assert busy["npu"] == 0.0


def test_device_rows_memory_utilisation_and_shares() -> None:
    report = build_report(small_plan(), None, small_detail())
    cpu, gpu, npu = report.devices
    assert (cpu.id, gpu.id, npu.id) == ("cpu", "gpu", "npu")
    assert cpu.weight_bytes == 3 << 20 and gpu.weight_bytes == 8 << 20
    assert cpu.workspace_bytes == 1024
    assert cpu.used_bytes == cpu.weight_bytes + cpu.workspace_bytes + cpu.activation_bytes
    assert cpu.utilisation == pytest.approx(38.5 / 75.2)
    price_cpu = 0.5 / 3600 * 38.5 * US * 1000
    price_gpu = 2.0 / 3600 * 24.5 * US * 1000
    assert cpu.price_share == pytest.approx(price_cpu / (price_cpu + price_gpu))
    assert npu.energy_share == 0.0 and npu.num_nodes == 0
    assert (cpu.num_nodes, cpu.num_partitions, gpu.num_partitions) == (5, 2, 1)


def test_memory_is_the_evaluator_peak_split_into_weights_workspace_activations() -> None:
    plan = small_plan()
    cpu, gpu, npu = device_usage(plan, None)
    assert gpu.used_bytes == plan.solver.peak_memory["gpu"]
    assert (gpu.weight_bytes, gpu.workspace_bytes, gpu.activation_bytes) == (
        8 * MIB, 1024, 2 * 65536)
    assert cpu.activation_bytes == 3 * 65536 and npu.used_bytes == 0
    assert {d.memory_source for d in (cpu, gpu, npu)} == {"evaluator"}
    older = device_usage(_without_evaluator_numbers(plan), None)
    assert older[1].used_bytes == 8 * MIB + 1024 and older[1].activation_bytes == 0
    assert older[1].memory_source == "lower bound"
    assert ">= 8 MiB / 16 GiB" in render_text(build_report(_without_evaluator_numbers(plan)))


def test_summary_baselines_and_prediction_error() -> None:
    report = build_report(small_plan(), small_measurements(), small_detail())
    s = report.summary
    assert s.prediction_error == pytest.approx(90 / 75.2 - 1)
    assert s.num_transfers == 2 and s.transfer_bytes == 2 * 65536
    rows = {b.name: b for b in report.baselines}
    assert rows["hetpart plan"].is_plan and report.baselines[0].is_plan
    assert rows["single:cpu"].speedup == pytest.approx(120 / 75.2)
    assert rows["single:npu"].speedup is None
    assert [p.measured_s for p in report.partitions] == [14 * US, 30 * US, 25 * US]
    # Predicted partition time includes its call overhead: gpu 4.5 µs of nodes + 20 µs.
    assert report.partitions[1].predicted_s == pytest.approx(24.5 * US)
    assert report.partitions[1].error == pytest.approx(30 / 24.5 - 1)
    assert {t.tensor: t.measured_s for t in report.transfers} == {"e": 12 * US, "m2": 11 * US}


def test_throughput_objective_compares_stage_times() -> None:
    report = build_report(small_plan("throughput"), None, small_detail())
    rows = {b.name: b for b in report.baselines}
    assert rows["single:gpu"].speedup == pytest.approx(60 / 45)


def test_node_rows_explain_the_choice() -> None:
    report = build_report(small_plan(), None, small_detail())
    nodes = {n.name: n for n in report.nodes}
    assert [n.name for n in report.nodes][:2] == ["embed", "side"]  # execution order
    assert "gpu is 6.00x faster" in nodes["side"].why and "transfers" in nodes["side"].why
    assert nodes["softmax"].why.startswith("kept with its neighbours: moving it to gpu looks 3 µs")
    assert any("cannot run on npu" in c for c in nodes["softmax"].constraints)
    # mm1 is faster on the npu, but 4 MiB of weights do not fit in its 1 MiB.
    assert "npu" in nodes["mm1"].why and "full" in nodes["mm1"].why
    move = {m.device: m for m in nodes["mm1"].moves}["npu"]
    assert not move.possible and move.memory_blocked
    assert move.own_delta_s == pytest.approx(-0.5 * US)
    # Moving mm2 (gpu, middle of nothing: last of p1) to cpu: own +10 µs; its input r now
    # crosses gpu->cpu (5 µs + 4.096 µs) and its output m2 no longer does.
    cpu_move = {m.device: m for m in nodes["mm2"].moves}["cpu"]
    assert cpu_move.own_delta_s == pytest.approx(10 * US)
    assert cpu_move.transfer_delta_s == pytest.approx(0.0, abs=1e-12)


def test_text_report_golden(golden) -> None:
    report = build_report(small_plan(), None, small_detail())
    golden("report_small.txt", render_text(report, color=False))


def test_text_report_with_run_golden(golden) -> None:
    report = build_report(small_plan(), small_measurements(), small_detail())
    golden("report_small_run.txt", render_text(report, color=False, top=3))


def test_text_report_colour_golden(golden) -> None:
    report = build_report(small_plan(), small_measurements(), small_detail())
    text = render_text(report, color=True, top=2)
    assert "\x1b[" in text
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert plain == render_text(report, color=False, top=2)
    golden("report_small_color.txt", text)


def test_text_report_truncates_nodes_with_a_note() -> None:
    text = render_text(build_report(small_plan(), None, small_detail()), top=3)
    assert "top 3 of 8 by predicted latency; all in the HTML report" in text
    assert "  side " in text and "  softmax " in text and "  relu1 " not in text


def test_explain_golden(golden) -> None:
    text = explain(small_plan(), "mm1", small_detail()) + "\n" + explain(
        small_plan(), "softmax", small_detail()
    )
    golden("explain_small.txt", text)


def test_explain_pinned_node() -> None:
    plan = dataclasses.replace(small_plan(), pins={"head": "cpu"})
    text = explain(plan, "head", small_detail())
    assert "why: pinned to cpu by the user" in text
    assert "constraints: pinned to cpu" in text


def test_explain_forbidden_device() -> None:
    plan = dataclasses.replace(small_plan(), forbidden={"side": ("gpu",)})
    text = explain(plan, "side", small_detail())
    assert "gpu" in text and "cannot run it: forbidden by the user (--forbid)" in text
    assert "cannot run on gpu: forbidden by the user" in text


def test_explain_unknown_node_lists_close_matches() -> None:
    with pytest.raises(ReportError, match=r"'mm3' is not in plan.*did you mean mm2, mm1"):
        explain(small_plan(), "mm3")
    with pytest.raises(ReportError, match=r"'zzz' is not in plan of tiny-attn \(8 nodes\)$"):
        explain(small_plan(), "zzz")


def test_report_without_detail_still_renders() -> None:
    report = build_report(small_plan())
    assert report.devices[0].weight_bytes == 3 * MIB  # stored in the plan, not the files
    assert "Summary" in render_text(report)


def test_cost_objective_shows_target_and_price_bound() -> None:
    text = render_text(build_report(small_plan("cost"), None, small_detail()))
    assert "objective  cost (latency target 100 µs)" in text
    assert "bound      1.8e-05 proven lower bound on 1.9e-05 (gap 5.1%)" in text


def test_cost_objective_compares_baselines_on_price() -> None:
    report = build_report(small_plan("cost"), None, small_detail())
    rows = {b.name: b for b in report.baselines}
    # Plan: cpu busy 38.5 µs at 0.5 per hour, gpu 24.5 µs at 2 per hour.
    mine = (0.5 * 38.5 + 2.0 * 24.5) * US / 3600 * 1000
    assert rows["hetpart plan"].cost_per_1k == pytest.approx(mine) == price_per_1k(38.5, 24.5)
    assert rows["single:gpu"].cost_per_1k == pytest.approx(2.0 * 90 * US / 3600 * 1000)
    assert rows["single:gpu"].speedup == pytest.approx(180 / 68.25)  # price ratio, not 90/75.2
    assert rows["single:cpu"].speedup == pytest.approx(60 / 68.25)  # cheaper than the plan...
    assert rows["single:cpu"].over_target and rows["memory_greedy"].over_target  # ...but slow
    assert not rows["heft"].over_target and not rows["priority_greedy"].over_target  # 100 µs
    assert rows["single:cpu"].note == "over the 100 µs latency target"
    assert rows["single:npu"].speedup is None and not rows["single:npu"].over_target
    text = render_text(report)
    assert "Baselines (plan saving in predicted price per 1k inferences)" in text
    assert "  placement           latency   stage  price / 1k  plan saving  note" in text
    assert "  single:gpu            90 µs   60 µs       5e-05        2.64x" in text
    assert "  hetpart plan        75.2 µs   45 µs     1.9e-05            -  FEASIBLE" in text
    assert (
        "  single:cpu           120 µs  120 µs    1.67e-05        0.88x  "
        "over the 100 µs latency target" in text
    )


def test_cost_report_golden(golden) -> None:
    report = build_report(small_plan("cost"), None, small_detail())
    golden("report_small_cost.txt", render_text(report, color=False, top=3))


def test_latency_objective_marks_no_baseline_over_target() -> None:
    rows = build_report(small_plan(), None, small_detail()).baselines
    assert not any(b.over_target for b in rows)
    assert "price / 1k" not in render_text(build_report(small_plan()))


def test_cost_report_of_a_plan_without_baseline_prices() -> None:
    plan = small_plan("cost")
    older = {k: dataclasses.replace(b, cost_per_1k=None) for k, b in plan.baselines.items()}
    report = build_report(dataclasses.replace(plan, baselines=older), None, small_detail())
    rows = {b.name: b for b in report.baselines}
    assert rows["single:gpu"].speedup is None and rows["single:cpu"].over_target
    assert "  single:gpu            90 µs   60 µs           -            -" in render_text(report)
