"""The seams between the core and its plug-ins: cost models, runners, prepared partitions.

The core never imports ``cost_models/`` or ``backends/``; the CLI wires them through the
registries in ``partitioner.registry``. Protocols (not base classes) keep plug-ins free of
inheritance from the core, as onnx_ir does for its IR protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from partitioner.cluster.types import DeviceSpec
    from partitioner.costing.types import Cost
    from partitioner.graph.analysis import AnalysedModel
    from partitioner.graph.types import NodeInfo


@runtime_checkable
class CostModel(Protocol):
    """Predicts how long one node takes on one device, or why it cannot run there."""

    name: str

    def estimate(self, model: AnalysedModel, node: NodeInfo, device: DeviceSpec) -> Cost:
        """Return ``Supported(latency_s, memory_bytes)`` or ``Unsupported(reason)``.

        Never raises for an unsupported op: unsupported is data.
        """
        ...


@runtime_checkable
class PreparedPartition(Protocol):
    """A partition compiled once by a runner and run many times."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name. Raises on runner failure."""
        ...


@runtime_checkable
class Runner(Protocol):
    """A backend that executes ONNX models on one device (ONNX Runtime, OpenVINO, ...)."""

    name: str

    def available(self) -> bool:
        """True when the library behind this runner is importable here."""
        ...

    def version(self) -> str:
        """Library version, part of profile-cache fingerprints."""
        ...

    def prepare(self, model: onnx.ModelProto, options: Mapping[str, Any]) -> PreparedPartition:
        """Compile ``model`` with device ``options`` (provider, threads, affinity...)."""
        ...
