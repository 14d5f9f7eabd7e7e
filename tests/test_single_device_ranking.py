"""The predicted ranking of single devices matches the measured one (issue 19).

On a cluster measured here, a compiled plan predicts each device's whole-model time from the
times it measured at compile time (``plan.measured.singles``), so the order in which its
baselines rank the devices must be the measured order, for every model. (Whether that order
still holds minutes later, under other load, is measured by ``make bench``'s cost-accuracy
section, not asserted here: tests check correctness, not timings.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from partitioner.cluster.local import detect_local_cluster
from partitioner.compiler import CompileOptions, compile_model

pytestmark = [pytest.mark.zoo, pytest.mark.openvino]

MODELS = {
    "mlp": {"layers": 2, "width": 64},
    "resnet": {"blocks": 1, "channels": 8, "image": 16},
    "bert": {"layers": 1, "d_model": 32, "heads": 2, "seq_len": 8},
}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETPART_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plan_ranks_single_devices_as_measured(name: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("openvino")
    from models import zoo

    cluster = detect_local_cluster().restricted_to(["ort-cpu", "ov-cpu"])
    plan = compile_model(str(zoo.build(name, MODELS[name])), cluster,
                         CompileOptions(time_limit_s=2, measure_rounds=1)).plan
    assert plan.measured is not None
    measured = {c.devices[0]: c.measured.median_s for c in plan.measured.singles}
    predicted = {d: plan.baselines[f"single:{d}"].latency_s for d in measured}
    assert set(measured) == {"ort-cpu", "ov-cpu"}
    assert sorted(predicted, key=predicted.__getitem__) == sorted(measured,
                                                                   key=measured.__getitem__)
    fastest = min(measured, key=measured.__getitem__)
    assert plan.baselines["best_single"].note == f"= single:{fastest}"
