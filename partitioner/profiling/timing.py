"""Timing primitives shared by device detection and profiling: repeated calls, medians, probes,
and pinning threads to CPUs (an OS utility the executor and the runners share)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

#: IR version written into every probe or single-node model (onnxruntime 1.31 loads <= 13).
IR_VERSION = 10
OPSET = 17


def time_calls(
    fn: Callable[[], object],
    warmup: int,
    repeats: int,
    budget_s: float | None = None,
    min_time_s: float = 0.0,
    max_repeats: int | None = None,
) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then time ``repeats`` calls (or more).

    Args:
        fn: The call to time.
        warmup: Untimed calls first (caches, lazy allocation, JIT).
        repeats: Timed calls wanted.
        budget_s: Stop early once this much time has been spent (at least 3 samples).
        min_time_s: Keep timing past ``repeats`` until this much time has been spent, so
            fast calls get many samples (robust minimum on a shared machine).
        max_repeats: Upper bound on samples when ``min_time_s`` extends the run
            (default ``20 * repeats``).

    Returns:
        Per-call wall times in seconds.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    cap = max_repeats if max_repeats is not None else 20 * max(1, repeats)
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        samples.append(t1 - t0)
        elapsed = t1 - start
        if budget_s is not None and len(samples) >= 3 and elapsed > budget_s:
            break
        if len(samples) >= max(1, repeats) and (elapsed >= min_time_s or len(samples) >= cap):
            break
    return samples


def median_and_spread(samples: list[float]) -> tuple[float, float]:
    """Median and p90 - p10 spread of ``samples`` (seconds)."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0], 0.0
    lo = ordered[int(0.1 * (len(ordered) - 1))]
    hi = ordered[int(round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), hi - lo


def statistic_of(samples: list[float], statistic: str) -> float:
    """``"median"`` or ``"best"`` (the minimum: robust when other processes share the CPU)."""
    if statistic == "best":
        return min(samples)
    if statistic == "median":
        return statistics.median(samples)
    raise ValueError(f"unknown timing statistic {statistic!r} (expected 'best' or 'median')")


def pin_thread(cpus: tuple[int, ...] | None) -> None:
    """Pin the calling thread to ``cpus`` for good (no-op for None or off Linux)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


@contextmanager
def thread_affinity(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Pin the calling thread (Linux: ``sched_setaffinity(0)`` is per thread) while inside."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def add_probe(n: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``y = a + b`` on ``n`` float32 values, with feeds: a per-call overhead / bandwidth probe."""
    vi = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n]) for x in ("a", "b", "y")]
    model = _model([helper.make_node("Add", ["a", "b"], ["y"])], vi[:2], vi[2:], "add_probe")
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(n).astype(np.float32) for k in ("a", "b")}
    return model, feeds


def matmul_probe(n: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``y = a @ b`` with ``n x n`` float32 matrices: a peak FLOP/s probe (2 n^3 FLOPs)."""
    vi = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b", "y")]
    model = _model([helper.make_node("MatMul", ["a", "b"], ["y"])], vi[:2], vi[2:], "mm_probe")
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((n, n)).astype(np.float32) for k in ("a", "b")}
    return model, feeds


def thread_handoff_s(cpu: int, idle_s: float = 1e-3, repeats: int = 100) -> float:
    """Median round trip of a no-op handed to a worker thread pinned to ``cpu`` and back.

    This is what the executor pays per call on a pinned device (its worker thread wakes up,
    then the dispatcher does). Each call follows ``idle_s`` of idleness, as between calls of
    a real plan; on a virtual machine waking an idle vCPU dominates (~0.1-0.35 ms here).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, initializer=pin_thread, initargs=((cpu,),)) as pool:
        pool.submit(int).result()
        samples = []
        for _ in range(repeats):
            time.sleep(idle_s)
            t0 = time.perf_counter()
            pool.submit(int).result()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def host_copy_bandwidth(nbytes: int = 64 << 20, repeats: int = 5) -> float:
    """Bytes per second of a NumPy copy of an ``nbytes`` array (best of ``repeats``)."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    samples = time_calls(lambda: np.copyto(dst, src), warmup=1, repeats=repeats)
    return nbytes / min(samples)


# -- several candidates, timed fairly against each other --------------------------------------


@dataclass(frozen=True)
class Timing:
    """A robust latency figure: median, p10 and p90 of the samples, how many, and the noise.

    ``noise_s`` is the p10-p90 spread of the per-block medians (one warm block per round):
    how much the figure itself moves from round to round on this machine, the yardstick a
    difference between two candidates timed together must beat.
    """

    median_s: float
    p10_s: float
    p90_s: float
    samples: int
    noise_s: float = 0.0

    @property
    def spread_s(self) -> float:
        return self.p90_s - self.p10_s


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``ordered``, by nearest rank."""
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def trimmed(samples: Sequence[float], fraction: float = 0.1) -> list[float]:
    """``samples`` sorted, without the ``fraction`` lowest and highest (at least one kept)."""
    ordered = sorted(samples)
    cut = int(len(ordered) * fraction)
    return ordered[cut:len(ordered) - cut] or ordered


def summarise(samples: Sequence[float], blocks: Sequence[Sequence[float]] = ()) -> Timing:
    """The :class:`Timing` of ``samples`` (10 % trimmed each side before the median) and of
    the per-block medians ``blocks`` (for ``noise_s``)."""
    kept = trimmed(samples)
    ordered = sorted(samples)
    medians = sorted(statistics.median(b) for b in blocks if b)
    noise = percentile(medians, 0.9) - percentile(medians, 0.1) if len(medians) > 1 else 0.0
    return Timing(statistics.median(kept), percentile(ordered, 0.1), percentile(ordered, 0.9),
                  len(ordered), noise)


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    rounds: int = 5,
    warmup: int = 3,
    block_s: float = 0.03,
    max_block: int = 16,
    settle_s: float = 0.05,
    min_block: int = 1,
) -> dict[str, tuple[list[float], list[list[float]]]]:
    """Time several candidates against each other, in warm blocks alternated over rounds.

    Each candidate is warmed up (``warmup`` calls), then every round times one block of
    each candidate in turn (the order rotates each round), so a load burst on the shared
    machine hits every candidate alike. Blocks rather than single interleaved calls: a call
    right after another session's calls finds the caches holding that session's weights, and
    its spinning threads on the cores (docs/pitfalls.md); ``settle_s`` of sleep before each
    block lets those threads park. A block holds enough calls for ``block_s`` (``min_block``
    to ``max_block``).

    Returns:
        Candidate name -> (every timed call in seconds, the calls of each block).
    """
    names = list(candidates)
    sizes: dict[str, int] = {}
    for name in names:
        fn = candidates[name]
        t0 = time.perf_counter()
        for _ in range(max(1, warmup)):
            fn()
        per_call = (time.perf_counter() - t0) / max(1, warmup)
        fit = int(block_s / per_call) if per_call > 0 else 1
        sizes[name] = max(min_block, 1, min(max_block, fit))
    out: dict[str, tuple[list[float], list[list[float]]]] = {n: ([], []) for n in names}
    for r in range(max(1, rounds)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = candidates[name]
            if settle_s > 0:
                time.sleep(settle_s)
            fn()  # one untimed call: the first after the sleep pays the wake-up
            block = []
            for _ in range(sizes[name]):
                t0 = time.perf_counter()
                fn()
                block.append(time.perf_counter() - t0)
            out[name][0].extend(block)
            out[name][1].append(block)
    return out


#: Share of the machine's CPU time other processes may take while something is timed for the
#: figure to be cached: beyond it the figure is used but not cached, so a later compile on a
#: quieter machine measures again instead of predicting from a busy moment (a demo compiled
#: while other jobs held both cores replayed 11.9 ms for a plan that ran in 2.3 ms).
CACHE_OTHERS_SHARE = 0.25


class OthersLoad:
    """The share of the machine's CPU time that *other* processes used during a ``with``
    block (Linux ``/proc``: all CPUs' busy time less this process's own), so a figure timed
    while other jobs held the cores can be told apart from one taken on a quiet machine.
    ``share`` stays None where ``/proc`` cannot be read."""

    def __init__(self) -> None:
        self.share: float | None = None
        self._start: tuple[int, int, int] | None = None

    @staticmethod
    def _sample() -> tuple[int, int, int] | None:
        """(total jiffies of all CPUs, their busy jiffies, this process's jiffies)."""
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        total = sum(fields[:8])  # guest time is already in user
        return total, total - idle, int(own[11]) + int(own[12])  # utime + stime

    def __enter__(self) -> OthersLoad:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        if self._start is None or end is None:
            return
        total = end[0] - self._start[0]
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        if total > 0:
            self.share = min(max(others / total, 0.0), 1.0)

    @property
    def too_busy_to_cache(self) -> bool:
        """Other processes took more than ``CACHE_OTHERS_SHARE`` of the CPU."""
        return (self.share or 0.0) > CACHE_OTHERS_SHARE
