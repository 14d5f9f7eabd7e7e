"""Memory, predicted against measured: `hetpart run` measures a peak per device, run.json
keeps it, reports show it beside the plan's prediction."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from test_plan_fixtures import BRANCHY_SPLIT, branchy_model, cluster, device, save_and_analyse

from partitioner.cli.run_cmd import format_record
from partitioner.compiler import CompileOptions, compile_model
from partitioner.errors import ReportError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.io import PLAN_FILE, file_sha256, load_plan, write_plan
from partitioner.protocols import MemoryReporting
from partitioner.registry import runners
from partitioner.report import build_report, read_report_inputs, render_html
from partitioner.report.resources import memory_lines
from partitioner.runtime.executor import Executor
from partitioner.runtime.memory import METHOD_ALLOCATOR, METHOD_RSS, read_rss, reset_peak
from partitioner.runtime.records import load_run, measure

linux_rss = pytest.mark.skipif(
    read_rss() is None or not reset_peak(), reason="needs Linux /proc/self/status and clear_refs"
)


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """branchy (width 512: 1 MiB per weight) on cpu+l4, one branch pinned to each device."""
    root = tmp_path_factory.mktemp("run_memory")
    model = root / "branchy.onnx"
    onnx.save(branchy_model(width=512), model)
    options = CompileOptions(time_limit_s=2, pins=("a_mm=l4", "b_mm=cpu", "b_tanh=cpu"))
    result = compile_model(str(model), "cpu+l4", options)
    write_plan(result.plan, result.analysed, root / "plan")
    return root / "plan"


@pytest.fixture(scope="module")
def saved_run(plan_dir: Path) -> dict[str, Any]:
    """`hetpart run PLAN --json --save` in a fresh process (RSS not blurred by other tests)."""
    argv = [
        sys.executable,
        "-m",
        "partitioner.cli",
        "run",
        str(plan_dir),
        "--emulate",
        "--json",
        "--save",
        "--repeat",
        "2",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@linux_rss
def test_run_reports_a_measured_peak_per_device(plan_dir: Path, saved_run: dict[str, Any]) -> None:
    plan = load_plan(plan_dir)
    memory = saved_run["memory"]
    assert set(memory) == {p.device for p in plan.partitions} == {"cpu", "l4"}
    for dev, m in memory.items():
        assert m["method"] == METHOD_RSS and "RSS" in m["detail"]
        assert m["peak_bytes"] > 0 and math.isfinite(m["peak_bytes"]), (dev, m)
        assert m["peak_bytes"] == m["prepare_bytes"] + m["run_bytes"]
        assert m["predicted_peak_bytes"] == plan.solver.peak_memory[dev] > 0
    text = format_record(saved_run, plan_dir)
    lines = [line for line in text.splitlines() if line.lstrip().startswith("memory")]
    assert len(lines) == 2 and all("measured (rss)" in x and "predicted" in x for x in lines)


@linux_rss
def test_run_json_round_trips_and_reports_show_both(
    plan_dir: Path, saved_run: dict[str, Any]
) -> None:
    saved = load_run(plan_dir)
    assert saved["memory"] == saved_run["memory"]
    inputs = read_report_inputs(plan_dir)
    assert inputs.measurements is not None
    measured = inputs.measurements.memory
    assert {d: (m.peak_bytes, m.method) for d, m in measured.items()} == {
        d: (m["peak_bytes"], m["method"]) for d, m in saved_run["memory"].items()
    }
    report = build_report(inputs.plan, inputs.measurements, inputs.detail)
    rows = {r.id: r for r in report.devices}
    for dev in ("cpu", "l4"):
        assert rows[dev].measured_peak_bytes == saved_run["memory"][dev]["peak_bytes"]
        assert rows[dev].measured_memory_method == METHOD_RSS
        assert rows[dev].used_bytes == saved_run["memory"][dev]["predicted_peak_bytes"]
    lines = memory_lines(report.devices)
    assert any(
        x.lstrip().startswith("cpu ") and "predicted" in x and "measured (rss)" in x for x in lines
    )
    assert any(x.lstrip().startswith("rss:") for x in lines)  # the method, explained
    html = render_html(report)
    assert html.count("measured (rss)") == 2 and "predicted " in html


def test_report_refuses_a_malformed_memory_record(plan_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "plan"
    shutil.copytree(plan_dir, copy)
    record = {
        "plan_sha256": file_sha256(copy / PLAN_FILE),
        "measured_latency_s": 1e-3,
        "memory": {"cpu": {"peak_bytes": "NaN", "method": "rss"}},
    }
    (copy / "run.json").write_text(json.dumps(record))
    with pytest.raises(ReportError, match="memory"):
        read_report_inputs(copy)


def _two_device_plan(tmp_path: Path, runner_b: str = "onnxruntime") -> Path:
    analysed = save_and_analyse(branchy_model(width=64), tmp_path, "model")
    plan = plan_from_assignment(
        analysed, cluster(device("a"), device("b", runner=runner_b)), BRANCHY_SPLIT
    )
    write_plan(plan, analysed, tmp_path / "plan")
    return tmp_path / "plan"


@linux_rss
def test_memory_needs_the_first_run(tmp_path: Path) -> None:
    """--warmup 0 times the first run, so memory is not measured, and the record says why."""
    root = _two_device_plan(tmp_path)
    feeds = {"x": np.ones((2, 64), np.float32)}
    with Executor(load_plan(root), root, measure_memory=True) as ex:
        record, _ = measure(ex, feeds, repeat=1, warmup=0)
    assert "memory" not in record and "--warmup 0" in record["memory_unmeasured"]
    assert "not measured" in format_record(record, root)
    with Executor(load_plan(root), root) as ex:  # not asked for: no memory keys at all
        record, _ = measure(ex, feeds, repeat=1, warmup=1)
    assert "memory" not in record and "memory_unmeasured" not in record


class _AllocatorPartition:
    """An ONNX Runtime partition whose 'runtime' reports allocator statistics."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.input_names = inner.input_names
        self.output_names = inner.output_names
        self.pinned_cpus = inner.pinned_cpus
        self.device_resident = inner.device_resident

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self._inner.run(feeds)

    def run_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return self._inner.run_device(feeds)

    def memory_stats(self) -> dict[str, Any]:
        return {"peak_bytes": 12345, "detail": "fake allocator"}


class _AllocatorRunner:
    name = "fakealloc"

    def __init__(self) -> None:
        from partitioner.registry import get_runner

        self._ort = get_runner("onnxruntime")

    def available(self) -> bool:
        return True

    def version(self) -> str:
        return "0"

    def absent_reason(self, options: Mapping[str, Any]) -> str | None:
        return None

    def prepare(self, model: Any, options: Mapping[str, Any]) -> _AllocatorPartition:
        return _AllocatorPartition(self._ort.prepare(model, options))


@linux_rss
def test_allocator_statistics_replace_rss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runners._factories, "fakealloc", _AllocatorRunner)
    monkeypatch.setitem(runners._modules, "fakealloc", __name__)
    root = _two_device_plan(tmp_path, runner_b="fakealloc")
    plan = load_plan(root)
    with Executor(plan, root, measure_memory=True) as ex:
        reporting = {
            p.device: isinstance(ex._prepared[p.index], MemoryReporting) for p in plan.partitions
        }
        assert reporting == {"a": False, "b": True}
        record, _ = measure(ex, {"x": np.ones((2, 64), np.float32)}, repeat=1, warmup=1)
    memory = record["memory"]
    assert memory["b"]["method"] == METHOD_ALLOCATOR and memory["b"]["peak_bytes"] == 12345
    assert memory["b"]["detail"] == "fake allocator"
    assert memory["a"]["method"] == METHOD_RSS and memory["a"]["peak_bytes"] >= 0
    assert memory["a"]["predicted_peak_bytes"] is None or memory["a"]["predicted_peak_bytes"] >= 0


@pytest.mark.openvino
@linux_rss
def test_openvino_cpu_reports_no_allocator_statistics_so_rss_is_used(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    root = _two_device_plan(tmp_path, runner_b="openvino")
    plan = load_plan(root)
    with Executor(plan, root, measure_memory=True) as ex:
        ov_part = next(ex._prepared[p.index] for p in plan.partitions if p.device == "b")
        assert isinstance(ov_part, MemoryReporting) and ov_part.memory_stats() is None
        record, _ = measure(ex, {"x": np.ones((2, 64), np.float32)}, repeat=1, warmup=1)
    assert {d: m["method"] for d, m in record["memory"].items()} == {"a": "rss", "b": "rss"}
