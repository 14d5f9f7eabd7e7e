"""Compute precision of devices: names, what a device computes in, and a cluster without the
devices below an allowed precision."""

from __future__ import annotations

from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.errors import ClusterError

#: Compute precisions, most precise first (23, 10 and 7 mantissa bits): ``precision=P``
#: allows devices computing in P or any precision before it.
PRECISIONS = ("f32", "f16", "bf16")
_PRECISION_NAMES = {"fp32": "f32", "float32": "f32", "fp16": "f16", "float16": "f16",
                    "bfloat16": "bf16"}


def precision_name(value: object) -> str | None:
    """``value`` as one of ``PRECISIONS`` (``fp32``, ``float16``, ``bfloat16``... accepted),
    None when it names none of them."""
    text = str(value).strip().lower()
    text = _PRECISION_NAMES.get(text, text)
    return text if text in PRECISIONS else None


def device_precision(device: DeviceSpec) -> str:
    """The precision ``device`` computes in: its ``precision``, or the lower one its OpenVINO
    runner is told to infer in (runner option ``precision``, e.g. in a cluster file)."""
    names = [device.precision]
    if device.runner == "openvino" and "precision" in device.runner_options:
        names.append(str(device.runner_options["precision"]))
    ranks = [PRECISIONS.index(p) if (p := precision_name(n)) else len(PRECISIONS)
             for n in names]
    worst = max(ranks)
    return PRECISIONS[worst] if worst < len(PRECISIONS) else str(names[ranks.index(worst)])


def restrict_precision(cluster: Cluster, allowed: str) -> tuple[Cluster, dict[str, str]]:
    """``cluster`` without the devices computing below ``allowed`` (``PRECISIONS``), and
    those devices (id -> precision)."""
    floor = PRECISIONS.index(allowed)
    below = {}
    for d in cluster.devices:
        p = device_precision(d)
        if p not in PRECISIONS or PRECISIONS.index(p) > floor:
            below[d.id] = p
    if not below:
        return cluster, {}
    if len(below) == len(cluster.devices):
        raise ClusterError(
            f"every device of cluster {cluster.name!r} computes below {allowed} "
            f"({', '.join(f'{i}: {p}' for i, p in below.items())}): allow it with "
            f"--precision {max(below.values(), key=rank)} or --tolerance atol=A,rtol=R")
    keep = [d.id for d in cluster.devices if d.id not in below]
    return cluster.restricted_to(keep), below


def rank(precision: str) -> int:
    """Position in ``PRECISIONS`` (higher: less precise); unknown names rank last."""
    return PRECISIONS.index(precision) if precision in PRECISIONS else len(PRECISIONS)
