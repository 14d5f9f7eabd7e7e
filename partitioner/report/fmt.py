"""Number formatting shared by the text and HTML renderers (times, bytes, ratios)."""

from __future__ import annotations

import math


def fmt_time(seconds: float | None) -> str:
    """Seconds as a short human string: ``850 ns``, ``12.3 µs``, ``1.25 ms``, ``2.00 s``."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if math.isinf(seconds):
        return "inf"
    a = abs(seconds)
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if a >= scale * 0.9995:  # 0.99999e-6 prints as 1 µs, not 1e+03 ns
            return (
                f"{seconds / scale:.3g} {unit}"
                if a / scale < 100
                else (f"{seconds / scale:.0f} {unit}")
            )
    if a == 0:
        return "0 s"
    return f"{seconds * 1e9:.3g} ns"


def fmt_bytes(n: int | float | None) -> str:
    """Bytes with binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_pct(x: float | None) -> str:
    """A fraction as a percentage: ``0.123`` -> ``12.3%``."""
    if x is None or math.isnan(x):
        return "-"
    return f"{x * 100:.1f}%"


def fmt_signed_pct(x: float | None) -> str:
    """A relative error with its sign: ``+12.3%`` / ``-4.0%``."""
    if x is None or math.isnan(x):
        return "-"
    return f"{x * 100:+.1f}%"


def fmt_ratio(x: float | None) -> str:
    """A speedup: ``1.84x``."""
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.2f}x"


def fmt_money(x: float | None) -> str:
    """A price (currency units), with enough digits for tiny per-inference prices."""
    if x is None:
        return "-"
    return f"{x:.3g}"


def fmt_delta_time(seconds: float | None) -> str:
    """A signed time difference: ``+12.3 µs`` (slower) / ``-4 µs`` (faster)."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "±0"
    return ("+" if seconds > 0 else "-") + fmt_time(abs(seconds))
