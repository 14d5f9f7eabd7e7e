"""What a report reads from a plan directory besides the plan: run measurements and graph detail.

``run.json`` (written by ``hetpart run PLAN_DIR --save``) must carry the digest of the plan it
measured (``partitioner.plan.codec.plan_digest``); a run of another plan is refused. Node-to-node
edges are not in ``plan.json``; they are recovered from the partition files (``onnx.load``
without external data, so even large plans read fast). Weights, busy time and peak memory
are stored in the plan itself.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from partitioner.errors import PlanError, ReportError
from partitioner.jsonfile import read_json_object
from partitioner.plan.codec import plan_digest
from partitioner.plan.io import PLAN_FILE, RUN_FILE, file_sha256, load_plan
from partitioner.plan.types import Plan

logger = logging.getLogger(__name__)

#: Keys accepted for the digest of the measured plan, in preference order.
_DIGEST_KEYS = ("plan_sha256", "plan_digest", "plan_hash")
_LATENCY_KEYS = ("measured_latency_s", "latency_s", "median_latency_s")
_SECONDS_KEYS = ("measured_s", "median_s", "seconds", "latency_s", "time_s")
_TRANSFER_KEY = re.compile(r"(.*):p(\d+)->p(\d+)")


@dataclass(frozen=True)
class TransferMeasurement:
    """One measured cross-device copy (median over repeats when the run saved several)."""

    tensor: str
    src_partition: int
    dst_partition: int
    nbytes: int
    seconds: float


@dataclass(frozen=True)
class MemoryMeasurement:
    """One device's measured peak memory (``run.json`` ``memory``, ``hetpart run``).

    Attributes:
        peak_bytes: Measured peak.
        method: ``rss`` (process RSS attributed to the device) or ``allocator`` (the
            runtime's own statistics).
        detail: How it was measured, in one sentence.
    """

    peak_bytes: int
    method: str
    detail: str = ""


@dataclass(frozen=True)
class Measurements:
    """A saved run of a plan.

    Attributes:
        plan_sha256: Digest of the plan that was run.
        latency_s: Measured (median) latency of one input.
        partition_s: Measured (median) time per partition index.
        partition_start_s: Measured start offset per partition (empty when the run did not
            record it; reports then replay the measured durations in dependency order).
        transfers: Measured copies.
        repeat: Number of timed repeats.
        emulated: Device id -> reason, for devices mapped onto a local runner.
        throughput_per_s: Pipelined throughput when the run streamed inputs.
        memory: Device id -> measured peak memory (empty for runs that did not measure it).
    """

    plan_sha256: str
    latency_s: float
    partition_s: dict[int, float] = field(default_factory=dict)
    partition_start_s: dict[int, float] = field(default_factory=dict)
    transfers: tuple[TransferMeasurement, ...] = ()
    repeat: int = 1
    emulated: dict[str, str] = field(default_factory=dict)
    throughput_per_s: float | None = None
    memory: dict[str, MemoryMeasurement] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeEdge:
    """A tensor from node ``src`` to node ``dst`` with its size in bytes (0 when unknown)."""

    src: str
    dst: str
    tensor: str
    nbytes: int


@dataclass(frozen=True)
class GraphDetail:
    """Node-level facts recovered from the partition files.

    Attributes:
        edges: Node-to-node tensor edges (within and across partitions).
    """

    edges: tuple[NodeEdge, ...] = ()


@dataclass(frozen=True)
class ReportInputs:
    """Everything ``build_report`` needs, read from one plan directory."""

    plan: Plan
    measurements: Measurements | None
    detail: GraphDetail


def read_report_inputs(plan_dir: str | Path) -> ReportInputs:
    """Load the plan, its saved run (if any, hash-checked) and the partition graph detail.

    Raises:
        ReportError: not a plan directory, an invalid plan, or a run.json of another plan.
    """
    root = Path(plan_dir)
    try:
        plan = load_plan(root)
    except PlanError as exc:
        raise ReportError(str(exc)) from None
    return ReportInputs(plan, read_measurements(root, plan), read_graph_detail(root, plan))


def read_measurements(plan_dir: str | Path, plan: Plan) -> Measurements | None:
    """``PLAN_DIR/run.json`` as Measurements, or None when no run was saved.

    The run must name the SHA-256 of ``plan.json`` (as ``hetpart run --save`` writes it) or
    the plan's canonical digest (``plan_json.plan_digest``).

    Raises:
        ReportError: unreadable JSON, missing fields, or a run of a different plan.
    """
    path = Path(plan_dir) / RUN_FILE
    if not path.is_file():
        return None
    data = read_json_object(path, ReportError, "run measurements")
    digest = _first(data, _DIGEST_KEYS)
    if not isinstance(digest, str):
        raise ReportError(
            f"{path}: no plan digest ({' or '.join(_DIGEST_KEYS)}); cannot tell "
            "which plan it measured"
        )
    plan_file = Path(plan_dir) / PLAN_FILE
    expected = file_sha256(plan_file) if plan_file.is_file() else plan_digest(plan)
    if digest not in (expected, plan_digest(plan)):
        raise ReportError(
            f"{path} belongs to another plan (it measured plan.json {digest[:12]}..., this "
            f"plan.json is {expected[:12]}...); rerun `hetpart run {Path(plan_dir)} --save`"
        )
    try:
        return _measurements_from(data, digest, plan)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{path}: malformed run measurements: {exc!r}") from None


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in data and data[key] is not None:
            return data[key]
    return None


def _transfers_from(raw: Any, plan: Plan) -> tuple[TransferMeasurement, ...]:
    """Transfers as a list of objects, or ``{"tensor:pA->pB": seconds}`` (``hetpart run``)."""
    sizes = {(t.tensor, t.src_partition, t.dst_partition): t.nbytes for t in plan.transfers}
    out = []
    if isinstance(raw, dict):
        for key, seconds in raw.items():
            match = _TRANSFER_KEY.fullmatch(str(key))
            if match is None:
                raise ValueError(f"transfer key {key!r} is not 'tensor:pA->pB'")
            tensor, src, dst = match.group(1), int(match.group(2)), int(match.group(3))
            nbytes = sizes.get((tensor, src, dst), 0)
            out.append(TransferMeasurement(tensor, src, dst, nbytes, float(seconds)))
        return tuple(out)
    for t in raw or ():
        out.append(
            TransferMeasurement(
                str(t["tensor"]),
                int(t.get("from_partition", t.get("src_partition", -1))),
                int(t.get("to_partition", t.get("dst_partition", -1))),
                int(t.get("bytes", t.get("nbytes", 0))),
                float(_first(t, _SECONDS_KEYS)),
            )
        )
    return tuple(out)


def _measurements_from(data: dict[str, Any], digest: str, plan: Plan) -> Measurements:
    latency = _first(data, _LATENCY_KEYS)
    if latency is None:
        raise KeyError("measured_latency_s")
    seconds: dict[int, float] = {}
    starts: dict[int, float] = {}
    parts = data.get("partitions", data.get("partition_s", {}))
    if isinstance(parts, dict):  # {"0": 1.2e-4, ...}
        seconds = {int(k): float(v) for k, v in parts.items()}
    else:
        for entry in parts:
            index = int(entry["index"])
            seconds[index] = float(_first(entry, _SECONDS_KEYS))
            if entry.get("start_s") is not None:
                starts[index] = float(entry["start_s"])
    return Measurements(
        plan_sha256=digest,
        latency_s=float(latency),
        partition_s=seconds,
        partition_start_s=starts,
        transfers=_transfers_from(data.get("transfers"), plan),
        repeat=int(data.get("repeat", 1)),
        throughput_per_s=(
            float(data["throughput_per_s"]) if data.get("throughput_per_s") else None
        ),
        emulated={str(k): str(v) for k, v in (data.get("emulated") or {}).items()},
        memory=_memory_from(data.get("memory")),
    )


def _memory_from(raw: Any) -> dict[str, MemoryMeasurement]:
    """``{"device": {"peak_bytes": N, "method": "rss", "detail": ...}}`` (``hetpart run``)."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"memory is a {type(raw).__name__}, expected an object by device")
    out = {}
    for device, entry in raw.items():
        peak = float(entry["peak_bytes"])
        if not np.isfinite(peak) or peak < 0:
            raise ValueError(f"memory of {device!r}: peak_bytes {entry['peak_bytes']!r}")
        out[str(device)] = MemoryMeasurement(
            int(peak), str(entry["method"]), str(entry.get("detail") or "")
        )
    return out


def read_graph_detail(plan_dir: str | Path, plan: Plan) -> GraphDetail:
    """Node edges from the partition files (best effort, logged on failure)."""
    root = Path(plan_dir)
    producer: dict[str, str] = {}
    uses: list[tuple[str, str]] = []  # (tensor, consumer node)
    sizes: dict[str, int] = {}
    for part in plan.partitions:
        try:
            model = onnx.load(str(root / part.file), load_external_data=False)
        except Exception as exc:  # a damaged file only costs the graph detail
            logger.warning("cannot read %s for the report's graph detail: %s", part.file, exc)
            continue
        graph = model.graph
        for vi in (*graph.input, *graph.output, *graph.value_info):
            size = _value_info_bytes(vi)
            if size is not None:
                sizes.setdefault(vi.name, size)
        inits = {t.name for t in graph.initializer}
        for node in graph.node:
            uses.extend((name, node.name) for name in node.input if name and name not in inits)
            for name in node.output:
                if name:
                    producer[name] = node.name
    for part in plan.partitions:
        for boundary in part.inputs:
            sizes.setdefault(boundary.name, boundary.nbytes)
        for produced in part.outputs:
            sizes.setdefault(produced.name, produced.nbytes)
    edges = sorted(
        {
            NodeEdge(producer[t], dst, t, sizes.get(t, 0))
            for t, dst in uses
            if t in producer and producer[t] != dst
        },
        key=lambda e: (e.src, e.dst, e.tensor),
    )
    return GraphDetail(tuple(edges))


def _tensor_bytes(dims: Any, data_type: int) -> int:
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 4
    return int(np.prod([int(d) for d in dims], dtype=np.int64)) * itemsize if dims else itemsize


def _value_info_bytes(vi: onnx.ValueInfoProto) -> int | None:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
    if any(d < 0 for d in dims):
        return None
    return _tensor_bytes(dims, tt.elem_type)
