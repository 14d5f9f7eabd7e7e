"""Per-phase costs of a layer group on a device: seconds for prefill and for a decode step.

* Prefill is compute-bound: ``max(FLOPs / (peak x efficiency), bytes / bandwidth)``.
* A decode step is memory-bound: ``weights / bandwidth + KV bytes read / bandwidth`` (the
  roofline's compute roof still applies: a CPU decoding a large batch can be compute-bound).
* The per-call overhead (``DeviceSpec.call_overhead_s``) is paid once per run of consecutive
  groups on a device, by the placement model, not here.

Spec-sheet devices use the datasheet numbers at the efficiencies of ``cost_models/roofline.py``
(0.6 of peak FLOPs on dense matrix products, 0.8 of bandwidth); the core may not import that
plug-in, so the figures are restated here. Devices on this machine (``DeviceSpec.local``) use
measured decode steps instead: :class:`DecodeFit` fits ``seconds = a + b x past`` to steps
timed at several context lengths, and :func:`measured_rates` turns the fit into the device's
effective bandwidth for weights (from ``a``) and for the KV cache (from ``b``), so a group's
share of the measured step follows its share of the bytes.
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
    """A least-squares line through measured decode steps: ``seconds = intercept + slope x past``.

    Attributes:
        batch: Sequences per step when measured.
        points: ``(past tokens, seconds)`` as measured.
        intercept_s / slope_s: The fitted line.
    """

    batch: int
    points: tuple[tuple[int, float], ...]
    intercept_s: float
    slope_s: float

    @classmethod
    def from_points(cls, points: Sequence[tuple[int, float]], batch: int = 1) -> DecodeFit:
        if len({p for p, _ in points}) < 2:
            raise CostModelError("decode fit: needs steps measured at two or more context "
                                 f"lengths, got {list(points)!r}")
        past = np.array([p for p, _ in points], dtype=float)
        secs = np.array([s for _, s in points], dtype=float)
        slope, intercept = np.polyfit(past, secs, 1)
        return cls(batch, tuple((int(p), float(s)) for p, s in points), float(intercept),
                   float(max(slope, 0.0)))

    def predict(self, past: float) -> float:
        return self.intercept_s + self.slope_s * past

    def worst_error(self) -> float:
        """Largest relative difference between the line and a measured point."""
        return max(abs(self.predict(p) - s) / s for p, s in self.points)


@dataclass(frozen=True)
class DeviceRates:
    """Effective rates a device turns phase work into time with.

    Attributes:
        flops: FLOP/s for the model's dtype.
        weight_bandwidth: Bytes/s streaming weights and activations.
        kv_bandwidth: Bytes/s reading the KV cache.
        source: ``"spec sheet"`` or what was measured.
    """

    device: DeviceSpec
    flops: float
    weight_bandwidth: float
    kv_bandwidth: float
    source: str
    prefill_measured: bool = False

    def prefill_s(self, work: GroupWork) -> float:
        if self.prefill_measured:  # ``flops`` is the measured prefill's effective rate
            return work.prefill_flops / self.flops
        return max(work.prefill_flops / self.flops, work.prefill_bytes / self.weight_bandwidth)

    def decode_s(self, work: GroupWork, past: np.ndarray | float) -> np.ndarray | float:
        """One decode step with ``past`` cached tokens (vectorised over ``past``)."""
        compute = work.decode_flops(past) / self.flops  # type: ignore[arg-type]
        memory = ((work.decode_weight_bytes + work.decode_other_bytes) / self.weight_bandwidth
                  + work.decode_kv_bytes1 * past / self.kv_bandwidth)
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
                       prefill_measured=prefill is not None and prefill[1] > device.call_overhead_s)
