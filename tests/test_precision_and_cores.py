"""Issue 19: precision as a choice (bf16 devices only when allowed, the plan records the
tolerance) and ``local-cores`` with an ``all-cores`` device that never runs beside a core."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_plan_fixtures import branchy_model, cluster, device

from partitioner.cluster import local
from partitioner.cluster.precision import device_precision
from partitioner.cluster.types import Cluster
from partitioner.compiler import CompileOptions, compile_model, parse_tolerance, spanning_devices
from partitioner.errors import ClusterError, PartitionerError
from partitioner.plan.codec import plan_json, plan_to_dict
from partitioner.plan.io import load_plan, write_plan
from partitioner.plan.types import Tolerance
from partitioner.registry import cost_models


def _spec(device_id: str, **changes: object):  # a device priced by the roofline, not measured
    return dataclasses.replace(device(device_id), local=False, **changes)


def _options(**kwargs: object) -> CompileOptions:
    return CompileOptions(time_limit_s=2, cost_model=cost_models.create("roofline"),
                          measure_rounds=0, **kwargs)


def _mixed() -> Cluster:
    """An f32 device and a faster bf16 one on the same processor."""
    return cluster(_spec("f32", processor="cpu0"),
                   _spec("fast-bf16", processor="cpu0", precision="bf16",
                         peak_flops={"float32": 1e12}, memory_bandwidth=1e12))


# --- detection ---------------------------------------------------------------------------

def test_bf16_detection_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local.ASSUME_BF16_ENV, "1")
    assert local.cpu_has_native_bf16()
    monkeypatch.setenv(local.ASSUME_BF16_ENV, "0")
    assert not local.cpu_has_native_bf16()


@pytest.mark.openvino
def test_bf16_detection_asks_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    openvino = pytest.importorskip("openvino")
    monkeypatch.delenv(local.ASSUME_BF16_ENV, raising=False)
    caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert local.cpu_has_native_bf16() == ("BF16" in caps)


@pytest.mark.openvino
def test_ov_cpu_bf16_is_offered_only_where_bf16_is_native() -> None:
    pytest.importorskip("openvino")
    offered = {c[0]: c for c in local._candidates(bf16=True)}
    assert "ov-cpu-bf16" in offered and "ov-cpu" in offered
    _, cls, runner, options, proc = offered["ov-cpu-bf16"]
    assert (cls, runner, options, proc) == ("cpu", "openvino",
                                            {"device": "CPU", "precision": "bf16"}, "cpu0")
    assert "ov-cpu-bf16" not in {c[0] for c in local._candidates(bf16=False)}


def test_detected_devices_carry_their_precision() -> None:
    facts = {"peak_flops_float32": 1e9, "memory_bandwidth": 1e9, "call_overhead_s": 1e-5}
    bf16 = local._device("ov-cpu-bf16", "cpu", "openvino", {"device": "CPU", "precision": "bf16"},
                         facts, 1 << 30, "cpu0", "x")
    f32 = local._device("ov-cpu", "cpu", "openvino", {"device": "CPU"}, facts, 1 << 30, "cpu0", "x")
    assert (bf16.precision, f32.precision) == ("bf16", "f32")


def test_an_openvino_precision_option_makes_a_device_lower_precision() -> None:
    ov = _spec("ov", runner="openvino", runner_options={"device": "CPU", "precision": "bf16"})
    assert device_precision(ov) == "bf16"
    assert device_precision(_spec("plain")) == "f32"
    assert device_precision(_spec("half", precision="f16")) == "f16"


# --- the compiler ------------------------------------------------------------------------

def test_lower_precision_devices_are_left_out_unless_allowed() -> None:
    model = branchy_model()
    result = compile_model(model, _mixed(), _options())
    assert result.cluster.device_ids == ("f32",)
    assert set(result.plan.assignment.values()) == {"f32"}
    assert result.plan.tolerance is None
    assert len(result.notes) == 1 and "fast-bf16 (bf16)" in result.notes[0]
    for allowed in (_options(precision="bf16"), _options(tolerance="atol=1e-2,rtol=1e-2")):
        result = compile_model(model, _mixed(), allowed)
        assert result.cluster.device_ids == ("f32", "fast-bf16") and not result.notes
        assert "fast-bf16" in set(result.plan.assignment.values())  # 100x faster: used
    # f16 allows f16 but not bf16.
    assert compile_model(model, _mixed(), _options(precision="f16")).cluster.device_ids == (
        "f32",)


def test_allowing_bf16_where_no_device_has_it_says_so() -> None:
    plain = cluster(_spec("a"), _spec("b"))
    result = compile_model(branchy_model(), plain, _options(precision="bf16"))
    assert result.cluster.device_ids == ("a", "b")
    assert result.notes == ("no device of cluster 'test' computes below f32: the plan is f32 "
                            "throughout",)


def test_only_lower_precision_devices_is_an_error_naming_the_way_out() -> None:
    only = cluster(_spec("x", precision="bf16"))
    with pytest.raises(ClusterError, match="--precision bf16 or --tolerance"):
        compile_model(branchy_model(), only, _options())
    with pytest.raises(ClusterError, match="computes below f32"):
        compile_model(branchy_model(), _mixed(), _options(pins=["stem=fast-bf16"]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"precision": "fp8"}, "precision='fp8': expected one of f32, f16, bf16"),
    ({"tolerance": "atol=x"}, "expected atol a finite number >= 0"),
    ({"tolerance": "atol=-1"}, "expected atol a finite number >= 0"),
    ({"tolerance": "btol=1"}, "unknown: btol"),
    ({"tolerance": "1e-3"}, "'atol=A,rtol=R'"),
    ({"tolerance": ""}, "'atol=A,rtol=R'"),
    ({"tolerance": 0.1}, "'atol=A,rtol=R'"),
    ({"tolerance": {"rtol": float("inf")}}, "rtol a finite number"),
])
def test_bad_precision_or_tolerance_is_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(PartitionerError, match=message.replace("(", r"\(")) as info:
        CompileOptions(**kwargs)
    assert "\n" not in str(info.value)


def test_tolerance_forms_and_precision_aliases() -> None:
    assert parse_tolerance("atol=1e-3, rtol=0.01") == Tolerance(1e-3, 0.01)
    assert parse_tolerance("rtol=0.5") == Tolerance(0.0, 0.5)
    assert parse_tolerance({"atol": 1}) == Tolerance(1.0, 0.0)
    assert CompileOptions(precision="bfloat16").precision == "bf16"
    assert CompileOptions().allowed_precision == "f32"
    assert CompileOptions(tolerance="atol=1").allowed_precision == "bf16"
    assert CompileOptions(tolerance="atol=1", precision="f16").allowed_precision == "f16"


def test_the_plan_records_its_tolerance_and_round_trips(tmp_path: Path) -> None:
    model = branchy_model()
    result = compile_model(model, _mixed(), _options(tolerance="atol=1e-2,rtol=1e-3"))
    assert result.plan.tolerance == Tolerance(1e-2, 1e-3)
    write_plan(result.plan, result.analysed, tmp_path / "plan")
    data = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert data["tolerance"] == {"atol": 1e-2, "rtol": 1e-3}
    devices = {d["id"]: d for d in data["cluster"]["devices"]}
    assert devices["fast-bf16"]["precision"] == "bf16" and "precision" not in devices["f32"]
    loaded = load_plan(tmp_path / "plan")
    assert loaded.tolerance == Tolerance(1e-2, 1e-3)
    assert loaded.cluster.device("fast-bf16").precision == "bf16"
    assert plan_json(loaded) == (tmp_path / "plan" / "plan.json").read_text()


def test_plans_without_tolerance_have_no_such_key() -> None:
    result = compile_model(branchy_model(), cluster(_spec("a")), _options())
    data = plan_to_dict(result.plan)
    assert "tolerance" not in data
    assert all("precision" not in d for d in data["cluster"]["devices"])


# --- local-cores: all-cores ----------------------------------------------------------------

def _cores(n: int, all_cores_speed: float) -> Cluster:
    cores = [_spec(f"core{i}", processor=f"core{i}") for i in range(n)]
    whole = _spec("all-cores", processor="+".join(f"core{i}" for i in range(n)),
                  peak_flops={"float32": 1e10 * all_cores_speed},
                  memory_bandwidth=1e10 * all_cores_speed)
    return cluster(*cores, whole, name="local-cores")


def test_all_cores_shares_a_processor_with_every_core_but_cores_do_not() -> None:
    c = _cores(3, 3.0)
    assert spanning_devices(c) == ["all-cores"]
    for i in range(3):
        assert c.shares_processor("all-cores", f"core{i}")
        assert not c.concurrent("all-cores", f"core{i}")
    assert not c.shares_processor("core0", "core1")


@pytest.mark.parametrize("speed", [0.5, 3.0, 100.0])
def test_all_cores_never_runs_beside_a_core(speed: float) -> None:
    result = compile_model(branchy_model(), _cores(2, speed), _options())
    used = set(result.plan.assignment.values())
    assert "all-cores" not in used or used == {"all-cores"}
    assert "single:all-cores" in result.report.baselines
    # Never worse than the plain session alone.
    single = result.report.baselines["single:all-cores"].evaluation
    assert single is not None
    assert result.report.evaluation.latency_s <= single.latency_s * (1 + 1e-9)
    if speed == 100.0:
        assert used == {"all-cores"} and result.report.status == "SINGLE_DEVICE"
        assert result.report.bound <= result.report.objective


def test_local_cores_offers_all_cores(tmp_path: Path) -> None:
    from partitioner.profiling.cache import ProfileCache

    c = local.detect_local_cluster(cores=True, cache=ProfileCache(tmp_path / "p.sqlite"))
    cpus = local.usable_cpus()
    whole = c.device("all-cores")
    assert whole.runner_options == {"provider": "CPUExecutionProvider", "threads": len(cpus)}
    assert whole.processor == "+".join(f"core{cpu}" for cpu in cpus)
    for cpu in cpus:
        assert c.shares_processor("all-cores", f"core{cpu}")
    assert c.fallback_device == f"core{cpus[0]}"
