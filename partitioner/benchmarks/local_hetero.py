"""Local heterogeneous benchmark: plans over ``local`` / ``local-cores`` vs single-runner sessions.

For every zoo model, measured side by side in one run with rounds interleaved (so drift and
the other core's load hit every candidate alike): the whole model in one ONNX Runtime session,
in one OpenVINO compiled model, and the hetpart plans compiled for ``local`` (runner per
subgraph) and ``local-cores`` (one single-threaded ORT device per core, branches in parallel).
Then pipelined throughput of the ``local-cores`` plan with a stream of inputs against the best
session run back to back.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

#: Zoo models at sizes where compute, not per-call overhead, dominates.
MODELS: dict[str, dict[str, Any] | None] = {
    "mlp": {"width": 1024, "layers": 4, "batch": 32},
    "resnet": None,
    "inception": {"channels": 64, "image": 112},
    "gpt": None,
    "bert": None,
}
QUICK_MODELS = ("mlp", "inception")
CLUSTERS = ("local", "local-cores")

#: Pause before each timed block (see ``_median_times``).
SETTLE_S = 0.05


def _median_times(candidates: Mapping[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds per call per candidate, timed in warm blocks that alternate over rounds.

    Blocks, not single calls: ONNX Runtime's intra-op threads spin for a while after a run,
    so a call that follows another session's call shares its core with those spinning
    threads; a pinned single-threaded plan suffered 5-10x from that when calls were
    interleaved one by one (docs/pitfalls.md). Each block starts after a pause long enough
    for the previous candidate's spinning threads (ORT, OpenVINO's TBB) to park, then with
    an untimed call.
    """
    block = 8
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(max(1, rounds // block)):
        for name, fn in candidates.items():
            time.sleep(SETTLE_S)
            fn()
            for _ in range(block):
                started = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def _session_runners(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, Callable[[], Any]]:
    from partitioner.errors import RunnerNotAvailableError
    from partitioner.registry import get_runner

    sessions: dict[str, Callable[[], Any]] = {}
    runners = (("ORT session", "onnxruntime"), ("OpenVINO f32 session", "openvino"))
    for label, runner_name in runners:
        try:
            prepared = get_runner(runner_name).prepare(str(path), {})
        except RunnerNotAvailableError:
            continue
        sessions[label] = partial(prepared.run, feeds)
    return sessions


def run(quick: bool = False) -> str:
    """Measure plans against single-runner sessions; returns a Markdown section."""
    from models.zoo import build
    from partitioner.compiler import CompileOptions, compile_model
    from partitioner.graph.analysis import analyse
    from partitioner.plan.io import write_plan
    from partitioner.runtime.executor import Executor
    from partitioner.runtime.feeds import random_inputs

    rounds = 15 if quick else 40
    stream_n = 16 if quick else 64
    rows, stream_rows = [], []
    names = [n for n in MODELS if not quick or n in QUICK_MODELS]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = Path(build(name, MODELS[name]))
            analysed = analyse(str(path))
            candidates: dict[str, Callable[[], Any]] = {}
            executors: dict[str, Executor] = {}
            feeds: dict[str, np.ndarray] | None = None
            predicted: dict[str, float] = {}
            for cluster in CLUSTERS:
                result = compile_model(analysed, cluster, CompileOptions(time_limit_s=10.0))
                plan_dir = Path(tmp) / f"{name}-{cluster}"
                write_plan(result.plan, analysed, plan_dir, overwrite=True)
                if feeds is None:
                    feeds = random_inputs(result.plan.model.inputs, seed=0)
                executor = Executor(result.plan, plan_dir)
                executors[cluster] = executor
                label = f"plan {cluster} ({result.plan.solver.num_partitions}p)"
                candidates[label] = partial(executor.run, feeds)
                predicted[label] = result.plan.solver.predicted_latency_s
            assert feeds is not None
            candidates.update(_session_runners(path, feeds))
            times = _median_times(candidates, rounds)
            best_session = min(v for k, v in times.items() if "session" in k)
            for label, seconds in times.items():
                pred = f"{predicted[label] * 1e3:.3f}" if label in predicted else "-"
                rows.append(
                    f"| {name} | {label} | {seconds * 1e3:.3f} | {pred} | "
                    f"{best_session / seconds:.2f}x |"
                )
            cores = executors["local-cores"]
            started = time.perf_counter()
            streamed = cores.stream([feeds] * stream_n)
            stream_tput = stream_n / (time.perf_counter() - started)
            best_label = min((k for k in times if "session" in k), key=times.__getitem__)
            back_to_back = stream_n / _sequential(candidates[best_label], stream_n)
            stream_rows.append(
                f"| {name} | {stream_tput:.1f} | {back_to_back:.1f} ({best_label}) | "
                f"{stream_tput / back_to_back:.2f}x | "
                f"{statistics.median(r.latency_s for r in streamed.results) * 1e3:.2f} |"
            )
            for executor in executors.values():
                executor.close()
    command = "make bench" + (" BENCH_ARGS=--quick" if quick else "")
    return "\n".join(
        [
            "## Local heterogeneous execution (measured)",
            "",
            f"Command: `{command}` (module `partitioner.benchmarks.local_hetero`). Median of "
            f"{rounds} calls per candidate, timed in warm blocks of 8 that alternate between "
            "candidates. `vs best session` > 1 means faster than the best single-runner "
            "session of the whole model.",
            "",
            "| model | candidate | measured ms | predicted ms | vs best session |",
            "| --- | --- | ---: | ---: | ---: |",
            *rows,
            "",
            f"Pipelined throughput: the `local-cores` plan fed {stream_n} inputs with "
            "`Executor.stream` against the best session run back to back.",
            "",
            "| model | plan stream /s | best session /s | ratio | per-input latency ms |",
            "| --- | ---: | ---: | ---: | ---: |",
            *stream_rows,
        ]
    )


def _sequential(fn: Callable[[], Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - started
