"""Reference runner: the ONNX reference evaluator, slow but complete, for correctness checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from backends._common import ModelSource, load_proto, model_label, run_failure
from partitioner.errors import ClusterError, RunError
from partitioner.runtime.feeds import conform_feeds, onnx_input_specs


class ReferencePartition:
    """A partition held by an ``onnx.reference.ReferenceEvaluator``."""

    #: Host outputs only; calls are not pinned to CPUs (the PreparedPartition defaults).
    device_resident = False
    pinned_cpus: tuple[int, ...] | None = None

    def __init__(self, evaluator: Any, model: onnx.ModelProto, label: str) -> None:
        self.label = label
        self._evaluator = evaluator
        self.inputs = onnx_input_specs(model)
        self.input_names = tuple(spec.name for spec in self.inputs)
        self.output_names = tuple(o.name for o in model.graph.output)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once with the reference evaluator (inputs converted by ``conform``)."""
        inputs = conform_feeds(self.label, self.inputs, feeds)
        try:
            values = self._evaluator.run(None, inputs)
        except Exception as exc:  # the evaluator raises whatever the op implementation raises
            raise run_failure("reference evaluator", self.label, exc) from exc
        return {name: np.asarray(v) for name, v in zip(self.output_names, values, strict=True)}

    def run_device(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs stay on the host here: the same as :meth:`run`."""
        return self.run(feeds)


class ReferenceRunner:
    """Runs partitions with ``onnx.reference.ReferenceEvaluator`` (no options)."""

    name = "reference"

    def available(self) -> bool:
        return True

    def version(self) -> str:
        return f"onnx-{onnx.__version__}"

    def absent_reason(self, options: Mapping[str, Any]) -> str | None:
        """Never absent: it needs nothing beyond onnx."""
        return None

    def prepare(self, model: ModelSource, options: Mapping[str, Any]) -> ReferencePartition:
        """Build the evaluator once.

        Raises:
            ClusterError: an option other than ``label`` was given.
            RunError: the evaluator cannot be built for this model.
        """
        from onnx.reference import ReferenceEvaluator

        label = model_label(model, options)
        unknown = sorted(set(options) - {"label"})
        if unknown:
            raise ClusterError(f"reference runner: unknown option(s) {unknown} for {label}")
        proto = load_proto(model, label)
        try:
            evaluator = ReferenceEvaluator(proto)
        except Exception as exc:
            raise RunError(f"reference evaluator cannot load {label}: {exc}") from exc
        return ReferencePartition(evaluator, proto, label)


def create() -> ReferenceRunner:
    """Registry entry point."""
    return ReferenceRunner()
