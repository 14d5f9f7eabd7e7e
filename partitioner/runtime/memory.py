"""Measured peak memory per device: the runtime's allocator statistics, else process RSS.

Every device of a plan runs in this one process, so memory is attributed, not isolated:

``allocator``
    A prepared partition that implements ``partitioner.protocols.MemoryReporting`` reports
    what its runtime's allocator holds on the device (OpenVINO GPU: ``GPU_MEMORY_STATISTICS``).
    That number replaces the RSS estimate for its device. ONNX Runtime 1.32's Python API
    exposes no allocator statistics (the C API's ``AllocatorGetStats`` is not bound), nor
    does OpenVINO's CPU plugin, so on CPUs every number is the RSS estimate below.
``rss``
    Linux ``/proc/self/status``: before the partitions are prepared, each runtime is
    loaded once with a one-node model (its libraries, plugins and thread pools are the
    runtime's, not the plan's: ``runtime_bytes``); then a device is charged the growth of
    ``VmRSS`` while each of its partitions is prepared (weights, compiled kernels:
    ``prepare_bytes``), and the first run goes partition by partition in dependency order,
    resetting the high-water mark (``/proc/self/clear_refs`` ``5``) before each call, so a
    call's peak is ``VmHWM`` during it; memory a call keeps (arenas, outputs still needed)
    stays charged to its device for its later calls. The device's measured peak is
    ``prepare_bytes`` plus the most it held during any of its calls (``run_bytes``). A
    device whose outputs stay on an accelerator is measured only on the host side (the
    method says so).

On Ray (``distributed.executor.RayExecutor``) each device is its own actor process, so the
same ledger runs inside each actor and charges that process alone: nothing is attributed.
Ray's own worker is loaded before anything is charged; the object-store pages an actor
writes as a call returns (outputs over Ray's inline limit go into shared memory) and the
inputs Ray hands it count in RSS, so they are charged with what the device keeps between
its calls.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from partitioner.protocols import MemoryReporting, PreparedPartition, Runner

logger = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_FIELD = re.compile(r"^(VmRSS|VmHWM):\s+(\d+)\s*kB", re.MULTILINE)

#: Method labels a record may carry (``DeviceMemory.method``).
METHOD_RSS = "rss"
METHOD_ALLOCATOR = "allocator"

RSS_DETAIL = (
    "process RSS attributed to the device: VmRSS growth while preparing its partitions plus "
    "the peak VmHWM growth during its calls in a first run that calls one partition at a "
    "time (runtime libraries loaded beforehand and excluded)"
)
RSS_HOST_ONLY = "; host memory only: the device's own memory is not visible to RSS"


@dataclass(frozen=True)
class DeviceMemory:
    """Measured memory of one device.

    Attributes:
        peak_bytes: Measured peak (``prepare_bytes + run_bytes`` for ``rss``).
        method: ``"rss"`` or ``"allocator"``.
        detail: One sentence saying how ``peak_bytes`` was obtained.
        prepare_bytes: RSS growth while preparing the device's partitions (``rss`` only).
        run_bytes: Most held beyond ``prepare_bytes`` during its calls (``rss`` only).
        runtime_bytes: RSS growth of loading its runtime (not part of ``peak_bytes``).
    """

    peak_bytes: int
    method: str
    detail: str
    prepare_bytes: int = 0
    run_bytes: int = 0
    runtime_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "method": self.method,
            "detail": self.detail,
            "prepare_bytes": self.prepare_bytes,
            "run_bytes": self.run_bytes,
            "runtime_bytes": self.runtime_bytes,
        }


def read_rss() -> tuple[int, int] | None:
    """``(VmRSS, VmHWM)`` of this process in bytes, or None where ``/proc`` is absent."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    fields = dict((k, int(v) * 1024) for k, v in _FIELD.findall(text))
    if "VmRSS" not in fields or "VmHWM" not in fields:
        return None
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS; False where Linux refuses."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def rss_unavailable_reason() -> str | None:
    """Why RSS cannot be measured here (None: it can)."""
    if read_rss() is None:
        return f"{_STATUS} is not readable (not Linux?)"
    if not reset_peak():
        return f"{_CLEAR_REFS} refuses to reset the peak RSS"
    return None


class RssLedger:
    """Charges RSS growth to devices while partitions are prepared and first run."""

    def __init__(self) -> None:
        self.runtime: dict[str, int] = {}
        self.prepare: dict[str, int] = {}
        self._held: dict[str, int] = {}
        self.run: dict[str, int] = {}

    @staticmethod
    def now() -> int:
        sample = read_rss()
        return sample[0] if sample else 0

    def charge_runtime(self, device: str, before: int) -> None:
        self.runtime[device] = self.runtime.get(device, 0) + max(0, self.now() - before)

    def charge_prepare(self, device: str, before: int) -> None:
        self.prepare[device] = self.prepare.get(device, 0) + max(0, self.now() - before)

    def start_call(self) -> int:
        """RSS before a call, with the high-water mark reset to it."""
        reset_peak()
        return self.now()

    def end_call(self, device: str, before: int) -> None:
        """Charge the call's peak: what the device held before it plus VmHWM - before."""
        sample = read_rss()
        if sample is None:
            return
        held = self._held.get(device, 0)
        self.run[device] = max(self.run.get(device, 0), held + max(0, sample[1] - before))

    def keep(self, device: str, before: int) -> None:
        """After a call and the release of tensors no later call reads: the device keeps
        VmRSS - before (its arena growth, its outputs still needed) for its later calls."""
        self._held[device] = self._held.get(device, 0) + max(0, self.now() - before)

    def result(self, device: str, host_only: bool) -> DeviceMemory:
        prepare, run = self.prepare.get(device, 0), self.run.get(device, 0)
        return DeviceMemory(
            peak_bytes=prepare + run,
            method=METHOD_RSS,
            detail=RSS_DETAIL + (RSS_HOST_ONLY if host_only else ""),
            prepare_bytes=prepare,
            run_bytes=run,
            runtime_bytes=self.runtime.get(device, 0),
        )


def allocator_memory(stats: Any, runtime_bytes: int = 0) -> DeviceMemory | None:
    """A ``MemoryReporting.memory_stats()`` answer as DeviceMemory (None when it has none)."""
    if not stats:
        return None
    try:
        peak = int(stats["peak_bytes"])
    except (KeyError, TypeError, ValueError):
        logger.debug("ignoring malformed allocator statistics %r", stats)
        return None
    if peak <= 0:
        return None
    detail = str(stats.get("detail") or "the runtime's allocator statistics")
    return DeviceMemory(peak, METHOD_ALLOCATOR, detail, runtime_bytes=runtime_bytes)


def load_runtime(runner: Runner, options: Mapping[str, Any], device: str) -> None:
    """Prepare and run a one-node model with ``device``'s runner and options, so that the
    runtime's libraries, plugins and thread pools are loaded before memory is charged to
    the plan's partitions (best effort: a runner that refuses it is only logged)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "x"], ["y"])], "hetpart_runtime_load", [x], [y]
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8
    )
    try:
        prepared = runner.prepare(model, {**options, "label": f"runtime load on {device}"})
        prepared.run({"x": np.ones(1, dtype=np.float32)})
    except Exception as exc:  # only the memory attribution suffers
        logger.debug("could not load %s's runtime ahead of its partitions: %s", device, exc)


def device_memory(device: str, prepared: Iterable[PreparedPartition],
                  ledger: RssLedger) -> DeviceMemory:
    """``device``'s measured memory: the largest allocator statistics its prepared
    partitions report, else the ledger's RSS charge (host side only where a partition keeps
    its values on an accelerator)."""
    prepared = list(prepared)
    runtime = ledger.runtime.get(device, 0)
    allocator = None
    for prep in prepared:
        if isinstance(prep, MemoryReporting):
            found = allocator_memory(prep.memory_stats(), runtime)
            if found and (allocator is None or found.peak_bytes > allocator.peak_bytes):
                allocator = found
    host_only = any(prep.device_resident for prep in prepared)
    return allocator or ledger.result(device, host_only)
