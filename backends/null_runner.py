"""Null runner: shapes only; returns zeros of each output's declared shape and dtype."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper

from backends._common import ModelSource, load_proto, model_label
from partitioner.errors import RunError
from partitioner.runtime.feeds import conform_feeds, onnx_input_specs


class NullPartition:
    """Returns preallocated zero outputs; does no computation (tests executor plumbing)."""

    #: Host outputs only; calls are not pinned to CPUs (the PreparedPartition defaults).
    device_resident = False
    pinned_cpus: tuple[int, ...] | None = None

    def __init__(self, model: onnx.ModelProto, label: str) -> None:
        self.label = label
        self.inputs = onnx_input_specs(model)
        self.input_names = tuple(spec.name for spec in self.inputs)
        self.output_names = tuple(o.name for o in model.graph.output)
        self._outputs = {o.name: _zeros(o, label) for o in model.graph.output}

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check every input as the other runners do and return the zero outputs."""
        conform_feeds(self.label, self.inputs, feeds)
        return dict(self._outputs)

    def run_device(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs stay on the host here: the same as :meth:`run`."""
        return self.run(feeds)


def _zeros(value: onnx.ValueInfoProto, label: str) -> np.ndarray:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise RunError(f"null runner: output {value.name!r} of {label} is not a tensor")
    dims = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value"):
            raise RunError(
                f"null runner: output {value.name!r} of {label} has a symbolic dimension "
                f"{dim.dim_param!r}; it needs concrete shapes"
            )
        dims.append(dim.dim_value)
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    return np.zeros(dims, dtype=dtype)


class NullRunner:
    """The shapes-only runner (no options)."""

    name = "null"

    def available(self) -> bool:
        return True

    def version(self) -> str:
        return "null-1"

    def absent_reason(self, options: Mapping[str, Any]) -> str | None:
        """Never absent: it computes nothing."""
        return None

    def prepare(self, model: ModelSource, options: Mapping[str, Any]) -> NullPartition:
        """Read the declared output shapes once."""
        label = model_label(model, options)
        return NullPartition(load_proto(model, label, load_external=False), label)


def create() -> NullRunner:
    """Registry entry point."""
    return NullRunner()
