"""The seams between the core and its plug-ins: cost models, runners, prepared partitions.

The core never imports ``cost_models/`` or ``backends/`` (``lint-imports`` checks it); the CLI
wires them through the registries in ``partitioner.registry``, which checks every plug-in it
loads against these protocols (:func:`partitioner.registry.check_protocol`): each member
declared here must be present, and each method callable. Protocols (not base classes) keep
plug-ins free of inheritance from the core, as onnx_ir does for its IR protocols, so there
are no inherited defaults: a plug-in spells every member out, and the docstrings below say
what a plug-in without the capability returns. This module imports nothing of ours at run
time (annotations only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

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
    """A partition compiled once by a runner and run many times.

    Attributes:
        input_names: The inputs :meth:`run` needs.
        output_names: The outputs it returns.
        pinned_cpus: CPUs this partition's calls must run on (the executor pins its
            device's worker thread to them once); None when calls are not pinned.
        device_resident: True when outputs may stay on an accelerator, so the executor
            calls :meth:`run_device` and hands its values on; False (host runners) means
            :meth:`run` is always used.
    """

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    pinned_cpus: tuple[int, ...] | None
    device_resident: bool

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name as a host array. Raises on runner failure."""
        ...

    def run_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run once, inputs and outputs possibly device values (e.g. OrtValues on a GPU).

        Host runners return :meth:`run`'s result.
        """
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

    def absent_reason(self, options: Mapping[str, Any]) -> str | None:
        """Why a device with these runner ``options`` cannot run here (its execution provider
        or plugin is missing), or None when it can. Runners that need nothing beyond their
        library return None."""
        ...

    def prepare(
        self, model: onnx.ModelProto | str | Path, options: Mapping[str, Any]
    ) -> PreparedPartition:
        """Compile ``model`` (a ModelProto or a file path) with device ``options`` (provider,
        threads, affinity...)."""
        ...


@runtime_checkable
class MemoryReporting(Protocol):
    """Optional on a :class:`PreparedPartition`: the runtime's own count of device memory.

    Not part of :class:`PreparedPartition` (the registry does not require it): the executor
    asks a prepared partition that has it (``isinstance(prepared, MemoryReporting)``) when
    ``hetpart run`` measures memory, and falls back to process RSS where it is absent or
    answers None (``partitioner.runtime.memory``).
    """

    def memory_stats(self) -> Mapping[str, Any] | None:
        """What the runtime's allocator holds, or has held at most, on this partition's
        device for the whole process (every partition on it, not this one alone):
        ``{"peak_bytes": int, "detail": "which statistic"}``; None where the runtime
        reports nothing for this device (then RSS is used)."""
        ...
