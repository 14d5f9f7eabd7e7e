"""The compile-time measurement loop (issue 19): whole-model single-device plans and the
compiled plan timed as they run, fed back and re-solved; a split only when it measures faster
than the best single device by more than the noise; timings cached; preset clusters untouched.

No timing thresholds: the assertions are on what the compile recorded and decided.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_plan_fixtures import branchy_model, cluster, device

import partitioner.compile_measured as compile_measured
import partitioner.compiler as compiler
import partitioner.profiling.timing as timing_module
import partitioner.runtime.measure as measure_module
from partitioner.compiler import CompileOptions, compile_model
from partitioner.costing.types import Supported
from partitioner.plan.check import check_plan, validate_plan_document
from partitioner.plan.codec import plan_from_dict, plan_json, plan_to_dict
from partitioner.profiling.cache import ProfileCache
from partitioner.profiling.timing import OthersLoad, Timing
from partitioner.runtime.measure import MeasuredPlan


class SplitCosts:
    """Branch ``a`` is cheap on device ``a``, branch ``b`` on device ``b``: the solver splits."""

    name = "toy"

    def estimate(self, model, node, dev):  # noqa: ANN001, ANN201 - the CostModel protocol
        if node.name.startswith(("a_", "b_")):
            fast = node.name[0] == dev.id
            return Supported(1e-6 if fast else 1e-3, 0, "toy")
        return Supported(1e-6, 0, "toy")


def two_local() -> object:
    return cluster(dataclasses.replace(device("a"), local=True),
                   dataclasses.replace(device("b"), local=True), name="two-local")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HETPART_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "profiles.sqlite"


def _options(**kw: object) -> CompileOptions:
    return CompileOptions(time_limit_s=1, cost_model=SplitCosts(), **kw)  # type: ignore[arg-type]


def _round_trips(plan) -> None:  # noqa: ANN001
    data = plan_to_dict(plan)
    validate_plan_document(data, "test")
    check_plan(plan, "test")
    again = plan_from_dict(data)
    assert again.measured == plan.measured and plan_json(again) == plan_json(plan)


def test_records_rounds_and_singles_and_never_keeps_a_slower_split() -> None:
    plan = compile_model(branchy_model(), two_local(), _options()).plan
    m = plan.measured
    assert m is not None and m.rounds and m.rounds[0].round == 0
    assert m.rounds[0].devices == ("a", "b")  # the toy costs make the first solve split
    assert {s.name for s in m.singles} == {"single:a", "single:b"}
    for c in (*m.rounds, *m.singles):
        assert c.measured.samples > 0 and c.measured.p10_s <= c.measured.median_s
        assert c.measured.median_s <= c.measured.p90_s and c.predicted_s > 0
    best_single = min(s.measured.median_s for s in m.singles)
    chosen = next(c for c in (*m.rounds, *m.singles) if c.name == m.chosen)
    if len(chosen.devices) > 1:  # a split is kept only when it beat the best single + noise
        assert chosen.measured.median_s * (1 + m.min_gain) < best_single
        assert len({p.device for p in plan.partitions}) > 1
    else:
        assert m.chosen.startswith("single:") and len(plan.partitions) == 1
        # The single device's predicted latency is its measured one.
        assert plan.solver.predicted_latency_s == pytest.approx(chosen.measured.median_s)
    assert m.min_gain_source == "noise"
    _round_trips(plan)


def _fake(split_s: float, single_s: float, calls: list[set[str]]):  # noqa: ANN202
    def measure(analysed, plans, cache=None, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(set(plans))
        out = {}
        for name, plan in plans.items():
            seconds = single_s if name.startswith("single:") else split_s
            out[name] = MeasuredPlan(Timing(seconds, seconds * 0.9, seconds * 1.1, 20,
                                            seconds * 0.02),
                                     {p.index: seconds / len(plan.partitions)
                                      for p in plan.partitions}, False, name)
        return out
    return measure


@pytest.mark.parametrize(("split_s", "single_s", "split_wins"),
                         [(1e-3, 2e-3, True), (1e-3, 1.01e-3, False), (2e-3, 1e-3, False)])
def test_a_split_must_beat_the_best_single_device_by_more_than_the_noise(
        monkeypatch: pytest.MonkeyPatch, split_s: float, single_s: float,
        split_wins: bool) -> None:
    calls: list[set[str]] = []
    monkeypatch.setattr(compile_measured, "measure_plans", _fake(split_s, single_s, calls))
    plan = compile_model(branchy_model(), two_local(), _options()).plan
    m = plan.measured
    assert m is not None and calls and all({"single:a", "single:b"} <= c for c in calls)
    assert len({c.round for c in m.rounds}) <= compiler.MEASURE_ROUNDS
    # noise 2 % of each figure: the gain needed is the larger noise over the split's time
    assert m.min_gain == pytest.approx(max(split_s, single_s) * 0.02 / split_s)
    if split_wins:
        assert m.chosen.startswith("round ") and len(plan.solver.devices_used) == 2
    else:
        assert m.chosen.startswith("single:") and len(plan.solver.devices_used) == 1
        assert plan.solver.status == "SINGLE_DEVICE"
        assert plan.solver.predicted_latency_s == pytest.approx(single_s)


def test_each_cut_is_measured_both_ways_and_a_faster_alternative_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside a split, the plans with one of its partitions moved whole to the other device
    are timed in the same batch; their partition times become costs, and the fastest
    measured candidate is the plan."""
    fake = _fake(2e-3, 3e-3, calls := [])

    def measure(analysed, plans, cache=None, **kw):  # noqa: ANN001, ANN003, ANN202
        out = fake(analysed, plans, cache)
        for name in plans:  # the alternatives measure fastest
            if ": p" in name:
                t = Timing(1e-3, 0.9e-3, 1.1e-3, 20, 2e-5)
                out[name] = MeasuredPlan(t, {p.index: 1e-3 / len(plans[name].partitions)
                                             for p in plans[name].partitions}, False, name)
        return out

    class BranchOnB:
        """Only branch ``b`` is cheap on device ``b``: at least three partitions, a-b-a."""

        name = "toy"

        def estimate(self, model, node, dev):  # noqa: ANN001, ANN201 - the CostModel protocol
            fast = (dev.id == "b") == node.name.startswith("b_")
            return Supported(1e-6 if fast else 1e-3, 0, "toy")

    monkeypatch.setattr(compile_measured, "measure_plans", measure)
    options = CompileOptions(time_limit_s=1, cost_model=BranchOnB())  # type: ignore[arg-type]
    plan = compile_model(branchy_model(), two_local(), options).plan
    m = plan.measured
    assert m is not None
    first = calls[0]
    assert [c.partitions for c in m.rounds if c.name == "round 0"][0] >= 3
    alternatives = sorted(n for n in first if n.startswith("round 0: p"))
    assert alternatives and all(n.endswith((" on a", " on b")) for n in alternatives)
    recorded = {c.name for c in m.rounds}
    assert set(alternatives) <= recorded
    assert ": p" in m.chosen and len(plan.solver.devices_used) == 2
    assert plan.solver.predicted_latency_s == pytest.approx(1e-3, rel=0.05)
    _round_trips(plan)


def test_explicit_min_gain_overrides_the_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_measured, "measure_plans", _fake(1e-3, 1.5e-3, []))
    plan = compile_model(branchy_model(), two_local(), _options(min_gain=0.6)).plan
    assert plan.measured is not None and plan.measured.min_gain_source == "option"
    assert plan.measured.min_gain == 0.6 and plan.measured.chosen.startswith("single:")


def test_second_compile_hits_the_partition_cache(_cache: Path) -> None:
    # Caching as such (conftest lifts the load policy); the policy is tested below.
    first = compile_model(branchy_model(), two_local(), _options()).plan
    rows = ProfileCache(_cache).plan_timing_count()
    assert rows >= 3  # the split and both singles
    second = compile_model(branchy_model(), two_local(), _options()).plan
    assert second.measured is not None and first.measured is not None
    assert all(c.cached for c in (*second.measured.rounds, *second.measured.singles))
    assert not any(c.cached for c in first.measured.singles)
    assert ProfileCache(_cache).plan_timing_count() == rows
    assert second.measured.chosen == first.measured.chosen


def test_timings_taken_while_others_hold_the_cpu_are_not_cached(
        _cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Busy(OthersLoad):
        def __exit__(self, *exc: object) -> None:
            self.share = 0.9  # others took 90% of the machine during the timing

    monkeypatch.setattr(measure_module, "OthersLoad", Busy)
    monkeypatch.setattr(timing_module, "CACHE_OTHERS_SHARE", 0.25)
    plan = compile_model(branchy_model(), two_local(), _options()).plan
    assert plan.measured is not None and plan.measured.singles  # measured and used...
    assert ProfileCache(_cache).plan_timing_count() == 0  # ...but not cached


def test_preset_clusters_are_untouched_by_the_loop() -> None:
    opts = CompileOptions(time_limit_s=1, cost_model="roofline")
    with_loop = compile_model(branchy_model(), "cpu+l4", opts).plan
    without = compile_model(branchy_model(), "cpu+l4",
                            dataclasses.replace(opts, measure_rounds=0)).plan
    assert with_loop.measured is None
    a, b = plan_to_dict(with_loop), plan_to_dict(without)
    for d in (a, b):
        d["solver"].pop("solve_time_s")
    assert a == b and "measured" not in a


def test_measure_rounds_zero_turns_the_loop_off() -> None:
    plan = compile_model(branchy_model(), two_local(), _options(measure_rounds=0)).plan
    assert plan.measured is None


def test_report_and_compile_summary_show_the_rounds(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    from partitioner.cli.compile_cmd import format_summary, summarise
    from partitioner.report.model import build_report
    from partitioner.report.text import render_text

    monkeypatch.setattr(compile_measured, "measure_plans", _fake(1e-3, 2e-3, []))
    result = compile_model(branchy_model(), two_local(), _options())
    text = render_text(build_report(result.plan))
    assert "measured at compile" in text and "single:a" in text and "round 0" in text
    assert "chosen round 0" in text
    summary = format_summary(summarise(result), tmp_path)
    assert "measured at compile" in summary and "chosen           round 0" in summary
    assert summarise(result)["measured"]["chosen"] == "round 0"
