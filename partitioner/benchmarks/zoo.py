"""Zoo benchmark: export and cache-hit times, synthetic build rate, gpt-large, ORT vs OpenVINO."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from models import zoo
from models.synthetic import synthetic

COMMAND = "python -m partitioner.benchmarks --only zoo"
_FAMILIES = ("mlp", "resnet", "inception", "gpt", "bert")


@contextmanager
def private_cache() -> Iterator[Path]:
    """Point ``HETPART_CACHE`` (zoo builds, profiles, plan timings) at a fresh folder, so
    first builds are real exports and measurements are this run's."""
    saved = os.environ.get(zoo.CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="hetpart-bench-zoo-") as root:
        os.environ[zoo.CACHE_ENV] = root
        try:
            yield Path(root)
        finally:
            if saved is None:
                os.environ.pop(zoo.CACHE_ENV, None)
            else:
                os.environ[zoo.CACHE_ENV] = saved


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        t = value.type.tensor_type
        shape = [d.dim_value for d in t.shape.dim]
        if t.elem_type == onnx.TensorProto.INT64:
            feeds[value.name] = np.ones(shape, dtype=np.int64)
        else:
            feeds[value.name] = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    return feeds


#: OpenVINO columns, each compiled with an explicit precision: its CPU plugin infers in bf16 by
#: default where the CPU has avx512_bf16 or AMX, so a "default" column means different things
#: on different machines. f32 is what ONNX Runtime computes; bf16 is stated where it runs.
_OPENVINO_PRECISIONS = ("f32", "bf16")


def _latencies(path: Path, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` ms per inference: ``ort`` (f32) and, when OpenVINO is installed,
    ``ov-f32`` and ``ov-bf16`` (the latter only where the CPU infers bf16 natively).

    The runners alternate call by call, so all see the same background load; the minimum is
    the estimate least disturbed by other processes on a shared machine.
    """
    import onnxruntime as ort

    feeds = _feeds(onnx.load(str(path), load_external_data=False))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runs: dict[str, Callable[[], object]] = {"ort": lambda: session.run(None, feeds)}
    for precision, request in _openvino_requests(path).items():
        runs[f"ov-{precision}"] = functools.partial(request.infer, feeds)
    times: dict[str, list[float]] = {key: [] for key in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for key, run in runs.items():
            times[key].append(_timed(run))
    return {key: 1e3 * min(values) for key, values in times.items()}


def _openvino_requests(path: Path) -> dict[str, Any]:
    """One infer request per precision in ``_OPENVINO_PRECISIONS`` that this CPU runs."""
    try:
        import openvino as ov
    except ImportError:
        return {}
    core = ov.Core()
    native = {str(p).lower() for p in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    requests = {}
    for precision in _OPENVINO_PRECISIONS:
        if precision != "f32" and precision.upper() not in {p.upper() for p in native}:
            continue  # emulated, not worth a column
        compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
        requests[precision] = compiled.create_infer_request()
    return requests


def _openvino_default_precision() -> str:
    """What OpenVINO's CPU plugin infers in when not told (bf16 where the CPU has it)."""
    try:
        import openvino as ov
    except ImportError:
        return "n/a (OpenVINO not installed)"
    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def _cell(ms: float | None) -> str:
    return f"{ms:.2f}" if ms is not None else "n/a"


def _family_table(quick: bool) -> list[str]:
    repeats = 10 if quick else 50
    lines = [
        "| model | nodes | export s | cache hit ms | ORT f32 ms | OpenVINO f32 ms "
        "| OpenVINO bf16 ms | ORT / OpenVINO f32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in _FAMILIES:
        export_s = _timed(functools.partial(zoo.build, name))
        hit_ms = 1e3 * _timed(functools.partial(zoo.build, name))
        path = zoo.build(name)
        nodes = len(onnx.load(str(path)).graph.node)
        ms = _latencies(path, repeats)
        ov32 = ms.get("ov-f32")
        ratio = f"{ms['ort'] / ov32:.2f}" if ov32 else "n/a"
        lines.append(
            f"| {name} | {nodes} | {export_s:.1f} | {hit_ms:.1f} | {ms['ort']:.2f} "
            f"| {_cell(ov32)} | {_cell(ms.get('ov-bf16'))} | {ratio} |"
        )
    return lines


def _synthetic_table(quick: bool) -> list[str]:
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    lines = ["| shape | nodes | build s | nodes / s |", "|---|---:|---:|---:|"]
    for shape in ("chain", "layered", "random"):
        for n in sizes:
            seconds = _timed(functools.partial(synthetic, n, shape))
            lines.append(f"| {shape} | {n} | {seconds:.2f} | {n / seconds:,.0f} |")
    return lines


def _gpt_large(cache: Path) -> list[str]:
    """Build the default gpt-large in a child process, to measure its peak memory alone."""
    # VmHWM, not ru_maxrss: the latter keeps the forked parent's peak across exec.
    code = (
        "from models import zoo; zoo.build('gpt-large'); "
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", code], check=True, env=dict(os.environ), capture_output=True
    )
    seconds = time.perf_counter() - started
    peak_mib = int(child.stdout.split()[-1]) / 1024  # VmHWM is in kB
    data = next(cache.glob("gpt-large-*.data"))
    gib = data.stat().st_size / 2**30
    return [
        "| model | external data GiB | build s (with interpreter start) | peak RSS MiB |",
        "|---|---:|---:|---:|",
        f"| gpt-large (defaults) | {gib:.2f} | {seconds:.1f} | {peak_mib:.0f} |",
    ]


def run(quick: bool = False) -> str:
    """Measure the zoo and return a Markdown section.

    Args:
        quick: Fewer repeats, synthetic graphs up to 10k nodes, no gpt-large build.

    Returns:
        The section, with the command that produced it.
    """
    with private_cache() as cache:
        families = _family_table(quick)
        large = [] if quick else ["", *_gpt_large(cache)]
    parts = [
        "## Model zoo",
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}`. Default parameters of each "
        "family (`hetpart zoo list`); export is the first build into an empty cache, cache hit "
        "the second; latencies are best-of-N of one CPU inference, ORT and OpenVINO calls "
        "alternating in the same run. Every OpenVINO column names the precision it was "
        "compiled with (`INFERENCE_PRECISION_HINT`); bf16 appears only on CPUs that run it "
        "natively (avx512_bf16 or AMX), n/a elsewhere. OpenVINO's default precision on the "
        f"machine that ran this: {_openvino_default_precision()}.",
        "",
        *families,
        "",
        "Synthetic graphs (`models.synthetic.synthetic`, width 32), built in memory:",
        "",
        *_synthetic_table(quick),
        *large,
        "",
    ]
    return "\n".join(parts)
