"""Around an execution: whole-model checks and run records (input feeds: ``runtime.feeds``).

``measure`` runs a plan the way ``hetpart run`` does and returns the plain-data record that
``--json`` prints and ``--save`` writes to ``PLAN_DIR/run.json`` (with the SHA-256 of
``plan.json``, so reports can refuse measurements of another plan).

When the executor measures memory (``Executor(..., measure_memory=True)``), the first
warm-up run is the memory run (``Executor.measure_memory``) and the record's ``memory`` maps
each device that ran partitions to ``peak_bytes`` measured, ``predicted_peak_bytes`` (the
plan's ``solver.peak_memory``; None when the plan has none), ``method`` (``rss`` or
``allocator``), ``detail`` and the RSS parts (``prepare_bytes``, ``run_bytes``,
``runtime_bytes``); ``memory_unmeasured`` says why a run has no ``memory``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx

from partitioner.errors import PlanError, RunError
from partitioner.graph.loading import MAX_IR_VERSION
from partitioner.plan.io import PLAN_FILE, RUN_FILE, file_sha256
from partitioner.plan.types import Plan
from partitioner.registry import get_runner
from partitioner.runtime.executor import RunResult, StreamResult
from partitioner.runtime.memory import DeviceMemory

#: Version tag of ``run.json``.
RUN_FORMAT_VERSION = "hetpart-run/1"


class PlanExecutor(Protocol):
    """What :func:`measure` needs of an executor: the in-process ``runtime.executor.Executor``
    and the Ray one (``distributed.executor.RayExecutor``) both are."""

    plan: Plan
    emulated: dict[str, str]
    prepare_s: dict[int, float]
    memory_unmeasured: str | None
    measures_memory: bool

    def measure_memory(self, feeds: Mapping[str, Any]) -> dict[str, DeviceMemory]: ...

    def run(self, feeds: Mapping[str, Any]) -> RunResult: ...

    def stream(self, feeds: Sequence[Mapping[str, Any]]) -> StreamResult: ...


def resolve_model_path(plan: Plan, plan_dir: Path) -> Path:
    """The plan's model file: the recorded path, else that path relative to the plan dir."""
    recorded = Path(plan.model.path)
    for candidate in (recorded, plan_dir / recorded, plan_dir.parent / recorded.name):
        if candidate.is_file():
            return candidate
    raise PlanError(
        f"--check needs the unpartitioned model, but {plan.model.path} (recorded in the plan) "
        "was not found"
    )


def whole_model_outputs(model_path: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Run the unpartitioned model on ONNX Runtime CPU (the reference for ``--check``)."""
    model = onnx.load(str(model_path), load_external_data=False)
    source: onnx.ModelProto | Path = model_path
    if model.ir_version > MAX_IR_VERSION:  # too new for onnxruntime: the runner caps it
        source = onnx.load(str(model_path))
    label = f"whole model {model_path.name}"
    prepared = get_runner("onnxruntime").prepare(source, {"label": label})
    return prepared.run(dict(feeds))


def compare_outputs(
    actual: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> dict[str, dict[str, Any]]:
    """Per output: ``max_abs_error``, ``max_rel_error`` (relative to max |expected|) and
    ``passed`` (``np.allclose`` with ``rtol``/``atol``; NaNs must match)."""
    report: dict[str, dict[str, Any]] = {}
    for name, ref in expected.items():
        got = np.asarray(actual[name])
        ref = np.asarray(ref)
        if got.shape != ref.shape:
            raise RunError(
                f"output {name!r}: shape {got.shape} differs from the whole model's {ref.shape}"
            )
        if ref.dtype.kind in "fc":
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            abs_err = float(np.nanmax(diff)) if diff.size else 0.0
            scale = float(np.nanmax(np.abs(ref))) if ref.size else 0.0
        else:
            abs_err = float(np.max(got != ref)) if ref.size else 0.0
            scale = 1.0
        report[name] = {
            "max_abs_error": abs_err,
            "max_rel_error": abs_err / max(scale, 1e-30),
            "passed": bool(np.allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True)),
        }
    return report


def _offset(result: RunResult, index: int) -> float:
    """Start of partition ``index``'s runner call, relative to the run's first one."""
    first = min(start for start, _ in result.spans.values())
    return result.spans[index][0] - first


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


#: Latency percentiles every run record carries, as onnxruntime_perf_test and OpenVINO's
#: benchmark_app report them: ``latency_p50_s`` (= ``measured_latency_s``, the median),
#: ``latency_p90_s``, ``latency_p99_s``.
PERCENTILES = (50, 90, 99)


def latency_percentiles(latencies: Sequence[float]) -> dict[str, float]:
    """``{"latency_p50_s": ..., "latency_p90_s": ..., "latency_p99_s": ...}``, linearly
    interpolated between the sorted runs (so p50 is the median; with few runs p99 lies
    near the slowest)."""
    if not latencies:
        return {}
    values = np.percentile(np.asarray(latencies, dtype=np.float64), PERCENTILES)
    return {f"latency_p{p}_s": float(v) for p, v in zip(PERCENTILES, values, strict=True)}


def measure(
    executor: PlanExecutor,
    feeds: Mapping[str, np.ndarray],
    *,
    repeat: int = 10,
    warmup: int = 1,
    stream: int = 0,
) -> tuple[dict[str, Any], RunResult]:
    """Run ``warmup`` untimed times, ``repeat`` timed ones and, with ``stream``, N inputs
    pipelined.

    Returns:
        The record (``measured_latency_s`` median, ``min_latency_s``, ``latency_p50_s`` /
        ``latency_p90_s`` / ``latency_p99_s``, ``warmup``, per-partition and transfer
        medians, ``throughput_per_s`` and per-input latencies when streaming) and the last
        result.
    """
    if repeat < 1:
        raise RunError(f"--repeat {repeat}: must be at least 1")
    if warmup < 0:
        raise RunError(f"--warmup {warmup}: must be at least 0")
    plan = executor.plan
    memory: dict[str, Any] = {}
    unmeasured = executor.memory_unmeasured
    if warmup and unmeasured is None:
        memory = executor.measure_memory(feeds)  # the first warm-up run: runtimes keep it
        warmup_left = warmup - 1 if memory else warmup
    else:
        warmup_left = warmup
        if executor.measures_memory and not warmup:
            unmeasured = "--warmup 0 times the first run, which measuring memory needs"
    for _ in range(warmup_left):
        executor.run(feeds)
    runs = [executor.run(feeds) for _ in range(repeat)]
    transfers: dict[str, list[float]] = {}
    for r in runs:
        for t in r.transfers:
            key = f"{t.tensor}:p{t.src_partition}->p{t.dst_partition}"
            transfers.setdefault(key, []).append(t.seconds)
    record: dict[str, Any] = {
        "model": plan.model.name,
        "repeat": repeat,
        "warmup": warmup,
        "measured_latency_s": _median([r.latency_s for r in runs]),
        "min_latency_s": min(r.latency_s for r in runs),
        **latency_percentiles([r.latency_s for r in runs]),
        "predicted_latency_s": plan.solver.predicted_latency_s,
        "predicted_stage_s": plan.solver.predicted_stage_s,
        "emulated": dict(sorted(executor.emulated.items())),
        "partitions": [
            {
                "index": p.index,
                "device": p.device,
                "measured_s": _median([r.partition_s[p.index] for r in runs]),
                "start_s": _median([_offset(r, p.index) for r in runs]),
                "predicted_s": plan.predicted_call_s(p),
                "prepare_s": executor.prepare_s.get(p.index, 0.0),
            }
            for p in plan.partitions
        ],
        "transfers": {k: _median(v) for k, v in sorted(transfers.items())},
    }
    if memory:
        record["memory"] = memory_record(plan, memory)
    elif unmeasured:
        record["memory_unmeasured"] = unmeasured
    if stream:
        if stream < 1:
            raise RunError(f"--stream {stream}: must be at least 1")
        result = executor.stream([feeds] * stream)
        latencies = sorted(r.latency_s for r in result.results)
        record["stream"] = {
            "inputs": stream,
            "wall_s": result.wall_s,
            "per_input_latency_median_s": _median(latencies),
            "per_input_latency_p90_s": latencies[
                min(len(latencies) - 1, int(0.9 * len(latencies)))
            ],
        }
        record["throughput_per_s"] = result.throughput_per_s
    return record, runs[-1]


def memory_record(plan: Plan, memory: Mapping[str, DeviceMemory]) -> dict[str, Any]:
    """Per device: the measured peak beside the plan's prediction, and how it was measured."""
    predicted = plan.solver.peak_memory
    return {
        device: {
            **m.to_json(),
            "predicted_peak_bytes": int(predicted[device]) if device in predicted else None,
        }
        for device, m in sorted(memory.items())
    }


def save_run(plan_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` to ``PLAN_DIR/run.json`` tagged with the SHA-256 of ``plan.json``."""
    root = Path(plan_dir)
    payload = {
        "format_version": RUN_FORMAT_VERSION,
        "plan_sha256": file_sha256(root / PLAN_FILE),
        **record,
    }
    path = root / RUN_FILE
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def load_run(plan_dir: str | Path) -> dict[str, Any]:
    """Read ``run.json``; PlanError when absent or measured on a different ``plan.json``."""
    root = Path(plan_dir)
    path = root / RUN_FILE
    if not path.is_file():
        raise PlanError(f"{root} has no {RUN_FILE}; run `hetpart run {root} --save` first")
    data = dict(json.loads(path.read_text()))
    if data.get("plan_sha256") != file_sha256(root / PLAN_FILE):
        raise PlanError(f"{path} was measured on a different plan.json; rerun with --save")
    return data

