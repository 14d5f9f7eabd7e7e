"""Helpers shared by the runners: model sources, labels, CPU-affinity parsing, error wrapping.

Inputs as users pass them become what a runtime needs in the core
(``partitioner.runtime.feeds``), and threads are pinned by ``partitioner.profiling.timing``:
plug-ins import the core, never the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from partitioner.errors import ClusterError, RunError
from partitioner.graph.loading import MAX_IR_VERSION
from partitioner.graph.shapes import DTYPES
from partitioner.runtime.feeds import one_line

ModelSource = onnx.ModelProto | str | Path


def model_label(model: ModelSource, options: Mapping[str, Any]) -> str:
    """A short name for error messages: ``options["label"]``, the file path or the graph name."""
    if options.get("label"):
        return str(options["label"])
    if isinstance(model, str | Path):
        return str(model)
    return model.graph.name or "<in-memory model>"


def load_proto(model: ModelSource, label: str, load_external: bool = True) -> onnx.ModelProto:
    """Return ``model`` as a ModelProto, loading it from disk when given a path."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model), load_external_data=load_external)
    except Exception as exc:  # onnx raises OSError, DecodeError, ValidationError...
        raise RunError(f"cannot load model {label}: {exc}") from exc


def model_bytes(model: onnx.ModelProto) -> bytes:
    """Serialise ``model`` with its IR version capped at :data:`MAX_IR_VERSION`."""
    if model.ir_version > MAX_IR_VERSION:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.ir_version = MAX_IR_VERSION
    return model.SerializeToString()


def parse_cpu_list(spec: Any, key: str = "affinity") -> tuple[int, ...]:
    """Parse a 0-based CPU list such as ``"0"``, ``"0,2"``, ``"0-3"`` or ``[0, 1]``.

    Raises:
        ClusterError: if the value is malformed or names a CPU this process may not use.
    """
    cpus: set[int] = set()
    items: list[Any]
    if isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, list | tuple):
        items = list(spec)
    else:
        items = [s for s in str(spec).replace(" ", "").split(",") if s]
    try:
        for item in items:
            if isinstance(item, str) and "-" in item:
                lo, hi = (int(x) for x in item.split("-", 1))
                cpus.update(range(lo, hi + 1))
            else:
                cpus.add(int(item))
    except ValueError:
        raise ClusterError(
            f"runner option {key}={spec!r}: expected CPU ids like '0', '0,1' or '0-3'"
        ) from None
    if not cpus or min(cpus) < 0:
        raise ClusterError(f"runner option {key}={spec!r}: expected non-negative CPU ids")
    allowed = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    missing = sorted(cpus - allowed)
    if missing:
        raise ClusterError(
            f"runner option {key}={spec!r}: CPU(s) {missing} are not available to this process "
            f"(allowed: {sorted(allowed)})"
        )
    return tuple(sorted(cpus))


def run_failure(runtime: str, label: str, exc: BaseException) -> RunError:
    """The one-line RunError for ``runtime`` raising ``exc`` while running ``label``."""
    return RunError(one_line(f"{runtime} failed running {label}: {exc}"))


#: ONNX Runtime's type string (``NodeArg.type``) -> this project's dtype name.
ORT_TYPE_NAMES: dict[str, str] = {
    f"tensor({onnx.TensorProto.DataType.Name(elem).lower()})": name
    for elem, (name, _) in DTYPES.items()
}
