"""Whole-model calibration of per-node profiles: per-runner scales and a per-node dispatch cost.

A node timed alone misses what happens inside a runner's graph: operator fusion (OpenVINO
folds element-wise ops into convolutions and matmuls, so they cost almost nothing), layout
changes done once per graph instead of once per node, and the per-node dispatch cost that the
subtracted per-call overhead also removed. We model the whole-model time (per-call overhead
excluded) of a model with ``n`` nodes whose alone-measured latencies sum to ``T`` over tensor
ops (MatMul, Conv, ...) and ``O`` over all other ops as

    tensor_scale * T + other_scale * O + per_node_s * n

and fit the three non-negative coefficients per runner configuration by iteratively
reweighted least squares on the *relative* error of the whole-model time (an L1-like fit, so
one disturbed timing on a shared machine does not drag the rest), over calibration models:
models other than the one being predicted when ``exclude`` is given. With fewer than four
calibration models only one scale is fitted (the median ratio).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SCALE_RANGE = (0.02, 5.0)
MIN_MODELS_FOR_FULL_FIT = 4
IRLS_ITERATIONS = 30

#: One calibration: (tensor-op sum, other-op sum, measured - overhead, overhead, nodes).
CalibrationRow = tuple[float, float, float, float, int]


@dataclass(frozen=True)
class Correction:
    """In-graph latency of a node from its alone-measured latency, for one runner.

    Attributes:
        tensor_scale: Multiplier for tensor ops (MatMul, Gemm, Conv, ...).
        other_scale: Multiplier for every other op (fusion makes it small).
        per_node_s: Seconds added per node (in-graph dispatch not seen alone).
        models: Number of calibration models it was fitted on (0: identity).
    """

    tensor_scale: float = 1.0
    other_scale: float = 1.0
    per_node_s: float = 0.0
    models: int = 0

    def apply(self, latency_s: float, tensor_op: bool) -> float:
        scale = self.tensor_scale if tensor_op else self.other_scale
        return scale * latency_s + self.per_node_s

    def describe(self) -> str:
        if not self.models:
            return "no calibration (identity)"
        return (f"tensor ops x{self.tensor_scale:.2f}, other ops x{self.other_scale:.2f}, "
                f"+{self.per_node_s * 1e6:.1f} us/node (fitted on {self.models} models)")


def _clamp(value: float) -> float:
    return min(max(value, SCALE_RANGE[0]), SCALE_RANGE[1])


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares by trying every active set (3 unknowns at most)."""
    k = x.shape[1]
    best: tuple[float, np.ndarray] | None = None
    for mask in itertools.product((False, True), repeat=k):
        idx = [i for i in range(k) if mask[i]]
        if not idx:
            continue
        coef, *_ = np.linalg.lstsq(x[:, idx], y, rcond=None)
        if (coef < 0).any():
            continue
        full = np.zeros(k)
        full[idx] = coef
        residual = float(np.sum((x @ full - y) ** 2))
        if best is None or residual < best[0]:
            best = (residual, full)
    return best[1] if best is not None else np.zeros(k)


def fit_correction(calibrations: Mapping[str, CalibrationRow],
                   exclude: str | None = None) -> Correction:
    """Fit a Correction from ``model -> (tensor sum, other sum, measured, overhead, nodes)``.

    Args:
        calibrations: Rows from ``ProfileCache.calibrations``.
        exclude: A model id to leave out (the model being predicted, for honest accuracy).

    Returns:
        The fitted correction; identity with no usable rows.
    """
    rows = [r for model, r in calibrations.items()
            if model != exclude and r[2] > 0 and r[4] > 0 and r[0] + r[1] > 0]
    if not rows:
        return Correction()
    if len(rows) < MIN_MODELS_FOR_FULL_FIT:
        scale = _clamp(statistics.median(m / (t + o) for t, o, m, _, _ in rows))
        return Correction(scale, scale, 0.0, len(rows))
    x = np.array([[t, o, n] for t, o, _, _, n in rows])
    total = np.array([m + h for _, _, m, h, _ in rows])
    target = np.array([m for _, _, m, _, _ in rows])
    weights = 1.0 / total
    coef = _nnls(x * weights[:, None], target * weights)
    for _ in range(IRLS_ITERATIONS):
        relative = np.abs(x @ coef - target) / total
        reweighted = weights / np.sqrt(np.maximum(relative, 1e-3))
        coef = _nnls(x * reweighted[:, None], target * reweighted)
    return Correction(_clamp(coef[0]), _clamp(coef[1]), float(coef[2]), len(rows))
