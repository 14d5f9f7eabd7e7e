"""Fitted cost model: per (op type, runner) regression on profiled samples, with its own error.

Model: ``log t = a + b log(1 + flops) + c log(1 + bytes)`` by least squares (a small ridge keeps
it stable) when an op has at least ``MIN_SAMPLES`` samples; with fewer, the op's median time; an
op never seen on that runner uses a fit over all its samples. The fit error is the median
absolute percentage error under leave-one-out cross-validation, per op and overall.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from cost_models.roofline import RooflineCostModel
from partitioner.cluster.types import DeviceSpec
from partitioner.costing.types import Cost, Supported
from partitioner.graph.types import NodeInfo
from partitioner.profiling.cache import ProfileCache, ProfileRecord, runner_fingerprint

MIN_SAMPLES = 4
RIDGE = 1e-3
ALL_OPS = "*"


@dataclass(frozen=True)
class Fit:
    """One regression: coefficients (or a constant), its sample count and LOO error."""

    op_type: str
    n: int
    coef: tuple[float, ...] | None
    constant_s: float
    loo_mape: float | None

    def predict(self, flops: float, nbytes: float) -> float:
        if self.coef is None:
            return self.constant_s
        a, b, c = self.coef
        return math.exp(a + b * math.log1p(flops) + c * math.log1p(nbytes))


def _features(records: list[ProfileRecord]) -> np.ndarray:
    return np.array([[1.0, math.log1p(r.flops), math.log1p(r.bytes)] for r in records])


def _solve(x: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    reg = RIDGE * np.eye(x.shape[1])
    reg[0, 0] = 0.0
    coef = np.linalg.solve(x.T @ x + reg, x.T @ y)
    return tuple(float(v) for v in coef)


def fit_records(op_type: str, records: list[ProfileRecord], statistic: str = "median") -> Fit:
    """Fit one op's samples (all positive latencies); leave-one-out error when n >= 5."""
    times = [max(r.latency(statistic), 1e-9) for r in records]
    if len(records) < MIN_SAMPLES:
        return Fit(op_type, len(records), None, statistics.median(times), None)
    x, y = _features(records), np.log(np.array(times))
    coef = _solve(x, y)
    errors = []
    if len(records) >= MIN_SAMPLES + 1:
        for i in range(len(records)):
            keep = np.arange(len(records)) != i
            a, b, c = _solve(x[keep], y[keep])
            pred = math.exp(a + b * x[i, 1] + c * x[i, 2])
            errors.append(abs(pred - times[i]) / times[i])
    loo = statistics.median(errors) if errors else None
    return Fit(op_type, len(records), coef, statistics.median(times), loo)


class FittedCostModel:
    """Predicts latencies of unmeasured signatures from a runner's profiled samples."""

    name = "fitted"

    def __init__(self, cache: ProfileCache | None = None, statistic: str = "median") -> None:
        self.cache = cache or ProfileCache()
        self.statistic = statistic
        self._fits: dict[str, dict[str, Fit]] = {}
        self.roofline = RooflineCostModel()

    def fits(self, fingerprint: str) -> dict[str, Fit]:
        """Per-op fits (and ``"*"`` over all ops) for one runner fingerprint (memoised)."""
        if fingerprint not in self._fits:
            usable = [r for r in self.cache.records(fingerprint)
                      if r.error is None and r.latency(self.statistic) > 0]
            by_op: dict[str, list[ProfileRecord]] = {}
            for r in usable:
                by_op.setdefault(r.op_type, []).append(r)
            fits = {op: fit_records(op, recs, self.statistic)
                    for op, recs in sorted(by_op.items())}
            if usable:
                fits[ALL_OPS] = fit_records(ALL_OPS, usable, self.statistic)
            self._fits[fingerprint] = fits
        return self._fits[fingerprint]

    def refresh(self) -> None:
        """Forget memoised fits (after new samples were measured)."""
        self._fits.clear()

    def predict(self, fingerprint: str, node: NodeInfo) -> float | None:
        """Predicted latency of ``node`` on the runner ``fingerprint`` (None with no samples)."""
        fits = self.fits(fingerprint)
        fit = fits.get(node.qualified_op) or fits.get(ALL_OPS)
        if fit is None:
            return None
        return fit.predict(float(node.flops), float(node.bytes_read + node.bytes_written))

    def report(self, fingerprint: str) -> list[Fit]:
        """Every fit for ``fingerprint`` with its leave-one-out median abs % error."""
        return list(self.fits(fingerprint).values())

    def estimate(self, model: Any, node: NodeInfo, device: DeviceSpec) -> Cost:
        """Fitted latency for local devices with samples; the roofline otherwise."""
        if device.local:
            from partitioner.registry import get_runner

            runner = get_runner(device.runner)
            fp = runner_fingerprint(device.runner, runner.version(), device.runner_options)
            predicted = self.predict(fp, node)
            if predicted is not None:
                unsupported = self.roofline.estimate(model, node, device)
                if not isinstance(unsupported, Supported):
                    return unsupported
                return Supported(predicted, unsupported.memory_bytes, self.name)
        return self.roofline.estimate(model, node, device)


def create(**options: Any) -> FittedCostModel:
    """Registry entry point: optional ``cache`` (a ProfileCache or a path), ``statistic``."""
    cache = options.pop("cache", None)
    statistic = str(options.pop("statistic", "median"))
    if options:
        from partitioner.errors import CostModelError

        raise CostModelError(f"fitted cost model: unknown options {sorted(options)}")
    if cache is not None and not isinstance(cache, ProfileCache):
        cache = ProfileCache(cache)
    return FittedCostModel(cache, statistic)
