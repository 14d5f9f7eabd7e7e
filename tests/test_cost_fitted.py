"""Fitted cost model: per-op regression predicts unmeasured signatures within its own error."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from cost_models.fitted import ALL_OPS, FittedCostModel, create, fit_records
from partitioner.errors import CostModelError
from partitioner.graph.types import NodeInfo
from partitioner.profiling.cache import ProfileCache, ProfileRecord


def law(flops: float, nbytes: float) -> float:
    """A made-up device: 2 us fixed + 50 GFLOP/s + 10 GB/s, as a power law."""
    return 2e-6 * (1 + flops) ** 0.6 * (1 + nbytes) ** 0.2 / 30


def samples(n: int, seed: int, noise: float = 0.05) -> list[ProfileRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        flops = float(10 ** rng.uniform(4, 9))
        nbytes = float(10 ** rng.uniform(3, 7))
        t = law(flops, nbytes) * math.exp(rng.normal(0, noise))
        out.append(ProfileRecord(f"s{seed}-{i}", "MatMul", flops, nbytes, t, 0.0, 5))
    return out


def node(flops: float, nbytes: float, op: str = "MatMul") -> NodeInfo:
    return NodeInfo("n", 0, "", op, ("x",), ("y",), (), int(flops), int(nbytes), 0, 0, "sig")


def test_fit_reports_leave_one_out_error() -> None:
    fit = fit_records("MatMul", samples(30, seed=1))
    assert fit.n == 30 and fit.coef is not None
    assert fit.loo_mape is not None and 0.0 < fit.loo_mape < 0.15
    a, b, c = fit.coef
    assert b == pytest.approx(0.6, abs=0.05) and c == pytest.approx(0.2, abs=0.08)


def test_predicts_unmeasured_signatures_within_reported_error(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path / "p.sqlite")
    for rec in samples(30, seed=2):
        cache.put("fp", rec)
    model = FittedCostModel(cache)
    fit = model.fits("fp")["MatMul"]
    assert fit.loo_mape is not None
    held_out = samples(40, seed=3)
    errors = []
    for rec in held_out:
        pred = model.predict("fp", node(rec.flops, rec.bytes))
        assert pred is not None
        errors.append(abs(pred - rec.median_s) / rec.median_s)
    # The reported leave-one-out error is an honest estimate of error on new signatures.
    assert statistics.median(errors) <= 2 * fit.loo_mape + 0.02


def test_few_samples_use_the_median_and_unknown_ops_the_global_fit(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path / "p.sqlite")
    for rec in samples(10, seed=4):
        cache.put("fp", rec)
    for i, t in enumerate((1e-6, 2e-6, 3e-6)):
        cache.put("fp", ProfileRecord(f"r{i}", "Relu", 10.0, 100.0, t, 0.0, 5))
    model = FittedCostModel(cache)
    assert model.predict("fp", node(1e9, 1e9, "Relu")) == pytest.approx(2e-6)
    fits = model.fits("fp")
    assert fits["Relu"].coef is None and ALL_OPS in fits
    assert model.predict("fp", node(1e6, 1e4, "Tanh")) == pytest.approx(
        fits[ALL_OPS].predict(1e6, 1e4))
    assert model.predict("other-fp", node(1.0, 1.0)) is None


def test_failed_samples_are_not_training_data(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path / "p.sqlite")
    cache.put("fp", ProfileRecord("bad", "Foo", 1.0, 1.0, 0.0, 0.0, 0, error="not registered"))
    assert FittedCostModel(cache).fits("fp") == {}


def test_create_options(tmp_path: Path) -> None:
    assert create(cache=tmp_path / "x.sqlite").name == "fitted"
    with pytest.raises(CostModelError, match="unknown options"):
        create(degree=3)
