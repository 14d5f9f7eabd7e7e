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

import numpy as np
import onnx

from models import zoo
from models.synthetic import synthetic

COMMAND = "python -m partitioner.benchmarks --only zoo"
_FAMILIES = ("mlp", "resnet", "inception", "gpt", "bert")


@contextmanager
def _private_cache() -> Iterator[Path]:
    """Point ``HETPART_CACHE`` at a fresh folder so that first builds are real exports."""
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


def _latencies(path: Path, repeats: int) -> tuple[float, float | None]:
    """Best-of-``repeats`` ms per inference in onnxruntime and (if installed) OpenVINO, CPU.

    The two runners alternate call by call, so both see the same background load; the
    minimum is the estimate least disturbed by other processes on a shared machine.
    """
    import onnxruntime as ort

    feeds = _feeds(onnx.load(str(path), load_external_data=False))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runs: dict[str, Callable[[], object]] = {"ort": lambda: session.run(None, feeds)}
    try:
        import openvino as ov

        request = ov.Core().compile_model(str(path), "CPU").create_infer_request()
        runs["ov"] = lambda: request.infer(feeds)
    except ImportError:
        pass
    times: dict[str, list[float]] = {key: [] for key in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for key, run in runs.items():
            times[key].append(_timed(run))
    best = {key: 1e3 * min(values) for key, values in times.items()}
    return best["ort"], best.get("ov")


def _family_table(quick: bool) -> list[str]:
    repeats = 10 if quick else 50
    lines = [
        "| model | nodes | export s | cache hit ms | ORT ms | OpenVINO ms | ORT / OpenVINO |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in _FAMILIES:
        export_s = _timed(functools.partial(zoo.build, name))
        hit_ms = 1e3 * _timed(functools.partial(zoo.build, name))
        path = zoo.build(name)
        nodes = len(onnx.load(str(path)).graph.node)
        ort_ms, ov_ms = _latencies(path, repeats)
        ov = f"{ov_ms:.2f}" if ov_ms is not None else "n/a"
        ratio = f"{ort_ms / ov_ms:.2f}" if ov_ms else "n/a"
        lines.append(
            f"| {name} | {nodes} | {export_s:.1f} | {hit_ms:.1f} | {ort_ms:.2f} | {ov} | {ratio} |"
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
    with _private_cache() as cache:
        families = _family_table(quick)
        large = [] if quick else ["", *_gpt_large(cache)]
    parts = [
        "## Model zoo",
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}`. Default parameters of each "
        "family (`hetpart zoo list`); export is the first build into an empty cache, cache hit "
        "the second; latencies are best-of-N of one CPU inference, ORT and OpenVINO calls "
        "alternating in the same run.",
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
