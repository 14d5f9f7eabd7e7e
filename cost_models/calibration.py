"""Whole-model calibration of per-node profiles: a per-runner scale and per-node dispatch cost.

A node timed alone misses what happens inside a runner's graph: operator fusion (OpenVINO
folds element-wise ops into convolutions and matmuls, so they cost almost nothing) and the
per-node dispatch cost that the subtracted per-call overhead also removed. We model the
whole-model time (per-call overhead excluded) of a model with ``n`` nodes whose per-node
measurements sum to ``S`` as ``scale * S + per_node_s * n`` and fit ``scale`` and
``per_node_s`` (both non-negative) per runner configuration by least squares on *relative*
error over calibration models, i.e. models other than the ones being predicted when
``exclude`` is given.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

SCALE_RANGE = (0.05, 5.0)


@dataclass(frozen=True)
class Correction:
    """``latency = scale * measured_alone + per_node_s`` for every node on one runner.

    Attributes:
        scale: Multiplier of the alone-measured node latency (fusion makes it < 1).
        per_node_s: Seconds added per node (in-graph dispatch not seen alone).
        models: Number of calibration models it was fitted on (0: identity).
    """

    scale: float = 1.0
    per_node_s: float = 0.0
    models: int = 0

    def apply(self, latency_s: float) -> float:
        return self.scale * latency_s + self.per_node_s

    def describe(self) -> str:
        if not self.models:
            return "no calibration (identity)"
        return (f"x{self.scale:.3f} + {self.per_node_s * 1e6:.1f} us/node "
                f"(fitted on {self.models} model(s))")


def _residual(rows: list[tuple[float, float, int]], scale: float, per_node: float) -> float:
    return sum(((scale * p + per_node * n - m) / m) ** 2 for p, m, n in rows)


def fit_correction(calibrations: Mapping[str, tuple[float, float, int]],
                   exclude: str | None = None) -> Correction:
    """Fit a Correction from ``model -> (node sum, measured, nodes)`` rows.

    Args:
        calibrations: Rows from ``ProfileCache.calibrations``.
        exclude: A model id to leave out (the model being predicted, for honest accuracy).

    Returns:
        The fitted correction; identity with no usable rows, scale only with one row.
    """
    rows = [(p, m, n) for model, (p, m, n) in calibrations.items()
            if model != exclude and m > 0 and n > 0 and p >= 0]
    if not rows:
        return Correction()
    if len(rows) == 1:
        p, m, _ = rows[0]
        scale = m / p if p > 0 else 1.0
        return Correction(min(max(scale, SCALE_RANGE[0]), SCALE_RANGE[1]), 0.0, 1)
    # Weighted least squares on relative error: rows (p/m, n/m) -> 1.
    a11 = sum((p / m) ** 2 for p, m, _ in rows)
    a12 = sum(p * n / m**2 for p, m, n in rows)
    a22 = sum((n / m) ** 2 for _, m, n in rows)
    b1 = sum(p / m for p, m, _ in rows)
    b2 = sum(n / m for _, m, n in rows)
    candidates: list[tuple[float, float]] = []
    det = a11 * a22 - a12 * a12
    if det > 1e-12 * max(a11 * a22, 1e-300):
        candidates.append(((b1 * a22 - b2 * a12) / det, (a11 * b2 - a12 * b1) / det))
    if a11 > 0:
        candidates.append((b1 / a11, 0.0))
    if a22 > 0:
        candidates.append((SCALE_RANGE[0], max((b2 - SCALE_RANGE[0] * a12) / a22, 0.0)))
    best = min(
        ((min(max(s, SCALE_RANGE[0]), SCALE_RANGE[1]), max(c, 0.0))
         for s, c in itertools.chain(candidates, [(1.0, 0.0)])),
        key=lambda sc: _residual(rows, *sc),
    )
    return Correction(best[0], best[1], len(rows))
