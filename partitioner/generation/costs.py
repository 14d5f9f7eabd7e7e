"""Per-phase costs of a layer group on a device: seconds for prefill and for a decode step.

* Prefill is compute-bound: ``max(FLOPs / (peak x efficiency), bytes / bandwidth)``.
* A decode step is memory-bound: ``weights / bandwidth + KV bytes read / bandwidth`` (the
  roofline's compute roof still applies: a CPU decoding a large batch can be compute-bound).
* The per-call overhead (``DeviceSpec.call_overhead_s``) is paid once per run of consecutive
  groups on a device, by the placement model, not here.

Spec-sheet devices use the datasheet numbers at the efficiencies of ``cost_models/roofline.py``
(0.6 of peak FLOPs on dense matrix products, 0.8 of bandwidth); the core may not import that
plug-in, so the figures are restated here. Devices on this machine (``DeviceSpec.local``) use
measured decode steps instead: :class:`DecodeFit` is the curve through steps timed at several
context lengths, ``seconds = a + kv(past)``, and :func:`measured_rates` turns ``a`` into the
device's effective bandwidth for weights and charges each group its share of the KV bytes
times ``kv(past)``, so a group's share of the measured step follows its share of the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from partitioner.cluster.types import DeviceSpec
from partitioner.errors import CostModelError
from partitioner.generation.phases import GroupWork

#: Fraction of datasheet peak FLOPs reached by prefill's large matrix products.
COMPUTE_EFFICIENCY = 0.6
#: Fraction of datasheet bandwidth reached by streaming weights and KV.
MEMORY_EFFICIENCY = 0.8


def compute_dtype(weight_bytes_per_param: float) -> str:
    """The peak-FLOPs key a model of this weight width computes in."""
    return {2: "float16", 1: "int8"}.get(int(weight_bytes_per_param), "float32")


@dataclass(frozen=True)
class DecodeFit:
    """Measured decode steps as a curve over the cached tokens: linear between the measured
    points, extended by the end segments' slopes beyond them.

    A single line does not fit every runner: OpenVINO's step grows faster than linearly once
    the KV cache outgrows the caches (docs/benchmarks.md), so a least-squares line missed its
    own points by 7-10% at both ends. The curve goes through the measured medians, made
    non-decreasing (reading more cache never makes a step faster; a dip is noise).

    Attributes:
        batch: Sequences per step when measured.
        points: ``(past tokens, seconds)`` as measured, by past.
        intercept_s: The step with no cache (the curve extended to past 0): weights and call.
        slope_s: The mean cost per cached token over the measured range.
    """

    batch: int
    points: tuple[tuple[int, float], ...]
    intercept_s: float
    slope_s: float

    @classmethod
    def from_points(cls, points: Sequence[tuple[int, float]], batch: int = 1) -> DecodeFit:
        by_past: dict[int, list[float]] = {}
        for past, seconds in points:
            by_past.setdefault(int(past), []).append(float(seconds))
        if len(by_past) < 2:
            raise CostModelError("decode fit: needs steps measured at two or more context "
                                 f"lengths, got {list(points)!r}")
        pasts = sorted(by_past)
        medians = np.array([np.median(by_past[p]) for p in pasts], dtype=float)
        secs: list[float] = np.maximum.accumulate(medians).tolist()
        first_slope = (secs[1] - secs[0]) / (pasts[1] - pasts[0])
        intercept = max(float(secs[0] - first_slope * pasts[0]), 0.0)
        mean_slope = (secs[-1] - secs[0]) / (pasts[-1] - pasts[0])
        return cls(batch, tuple(zip(pasts, secs, strict=True)), intercept,
                   float(mean_slope))

    def predict(self, past: np.ndarray | float) -> np.ndarray | float:
        """Seconds of one step over ``past`` cached tokens (vectorised over ``past``)."""
        xs = np.array([0.0] + [p for p, _ in self.points])
        ys = np.array([self.intercept_s] + [s for _, s in self.points])
        x = np.asarray(past, dtype=float)
        last_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        out = np.where(x > xs[-1], ys[-1] + last_slope * (x - xs[-1]), np.interp(x, xs, ys))
        return float(out) if out.ndim == 0 else out

    def kv_s(self, past: np.ndarray | float) -> np.ndarray | float:
        """The part of a step that reading ``past`` cached tokens adds."""
        return self.predict(past) - self.intercept_s


@dataclass(frozen=True)
class DeviceRates:
    """Effective rates a device turns phase work into time with.

    Attributes:
        flops: FLOP/s for the model's dtype.
        weight_bandwidth: Bytes/s streaming weights and activations.
        kv_bandwidth: Bytes/s reading the KV cache (the mean over the measured range where
            measured).
        source: ``"spec sheet"`` or what was measured.
        kv_fit / kv_read: A measured device's decode curve and the KV bytes per cached token
            it read: a group's KV time is its share of those bytes times the curve's KV part.
    """

    device: DeviceSpec
    flops: float
    weight_bandwidth: float
    kv_bandwidth: float
    source: str
    prefill_measured: bool = False
    kv_fit: DecodeFit | None = None
    kv_read: float = 0.0

    def prefill_s(self, work: GroupWork) -> float:
        if self.prefill_measured:  # ``flops`` is the measured prefill's effective rate
            return work.prefill_flops / self.flops
        return max(work.prefill_flops / self.flops, work.prefill_bytes / self.weight_bandwidth)

    def decode_s(self, work: GroupWork, past: np.ndarray | float) -> np.ndarray | float:
        """One decode step with ``past`` cached tokens (vectorised over ``past``)."""
        compute = work.decode_flops(past) / self.flops  # type: ignore[arg-type]
        weights = (work.decode_weight_bytes + work.decode_other_bytes) / self.weight_bandwidth
        if self.kv_fit is not None:
            kv = work.decode_kv_bytes1 / self.kv_read * self.kv_fit.kv_s(past)
        else:
            kv = work.decode_kv_bytes1 * past / self.kv_bandwidth
        memory = weights + kv
        return np.maximum(compute, memory)

    def decode_mean_s(self, work: GroupWork, first_past: int, steps: int) -> float:
        """Mean decode step over ``steps`` steps starting with ``first_past`` cached tokens."""
        past = np.arange(first_past, first_past + max(1, steps), dtype=float)
        return float(np.mean(self.decode_s(work, past)))


def spec_rates(device: DeviceSpec, dtype: str) -> DeviceRates:
    """Datasheet rates at the roofline efficiencies."""
    bandwidth = device.memory_bandwidth * MEMORY_EFFICIENCY
    return DeviceRates(device, device.flops_for(dtype) * COMPUTE_EFFICIENCY, bandwidth,
                       bandwidth, "spec sheet")


def measured_rates(device: DeviceSpec, dtype: str, fit: DecodeFit, weights_read: float,
                   kv_bytes_per_token: float,
                   prefill: tuple[float, float] | None = None) -> DeviceRates:
    """Rates from a measured whole-model decode line on ``device``.

    Args:
        fit: The device's measured decode steps at ``fit.batch`` sequences.
        weights_read: Bytes one decode step of the whole model reads besides the KV cache,
            at ``fit.batch`` (``sum(w.decode_weight_bytes + w.decode_other_bytes)``).
        kv_bytes_per_token: KV bytes per token per sequence, all layers.
        prefill: ``(FLOPs, seconds)`` of a measured whole-model prefill: a group's prefill is
            then its share of the FLOPs at that effective rate (per-operator overheads
            included, which dominate small models).
    """
    spec = spec_rates(device, dtype)
    fixed = fit.intercept_s - device.call_overhead_s  # one call ran the whole model
    weight_bw = weights_read / fixed if fixed > 0 else spec.weight_bandwidth
    kv_read = fit.batch * kv_bytes_per_token
    kv_bw = kv_read / fit.slope_s if fit.slope_s > 0 else spec.kv_bandwidth
    points = ", ".join(f"{p}:{s * 1e3:.3f}ms" for p, s in fit.points)
    source = f"measured decode steps at batch {fit.batch} (past:time {points})"
    flops = spec.flops
    if prefill is not None and prefill[1] > device.call_overhead_s:
        flops = prefill[0] / (prefill[1] - device.call_overhead_s)
        source += f"; measured prefill {prefill[1] * 1e3:.3f} ms"
    return DeviceRates(device, flops, weight_bw, kv_bw, source,
                       prefill_measured=prefill is not None and prefill[1] > device.call_overhead_s,
                       kv_fit=fit if fit.slope_s > 0 else None, kv_read=kv_read)
