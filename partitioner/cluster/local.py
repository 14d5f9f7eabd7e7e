"""The ``local`` and ``local-cores`` clusters: devices detected here, with measured capacities.

Per runner configuration we measure, once, the per-call overhead (best of many calls of a
tiny model), the peak FLOP/s (a 1024^3 MatMul, best of a few) and the streaming bandwidth (a
large Add), and the host copy bandwidth (NumPy copy of 64 MiB); for ``local-cores`` also the
round trip to a pinned worker thread, which every call on a core pays on top. Results are
cached in the profile cache (keyed by runner fingerprint), so the second ``--cluster local``
is fast.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import numpy as np

from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.errors import ClusterError, PartitionerError
from partitioner.profiling.cache import ProfileCache, runner_fingerprint
from partitioner.profiling.timing import (
    add_probe,
    host_copy_bandwidth,
    matmul_probe,
    thread_handoff_s,
    time_calls,
)

log = logging.getLogger(__name__)

#: ONNX Runtime providers that are not a device of their own.
IGNORED_PROVIDERS = ("CPUExecutionProvider", "AzureExecutionProvider")
GPU_PROVIDERS = ("CUDA", "TensorRT", "ROCM", "MIGraphX", "Dml", "CoreML", "WebGpu")
NPU_PROVIDERS = ("QNN", "VitisAI", "NNAPI", "Rknpu")
#: Assumed when a GPU's memory cannot be queried (logged).
DEFAULT_ACCELERATOR_MEMORY = 8 << 30

#: Environment variable forcing native-bf16 detection: ``1`` assumes the CPU computes bf16
#: natively (``--cluster local`` then offers ``ov-cpu-bf16``), ``0`` assumes it does not.
ASSUME_BF16_ENV = "HETPART_ASSUME_BF16"

OVERHEAD_CALLS = 300
MATMUL_N = 1024
BANDWIDTH_FLOATS = 8 << 20  # 32 MiB per operand


def host_memory_bytes() -> int:
    """Total physical memory from /proc/meminfo (sysconf fallback)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def usable_cpus() -> list[int]:
    """CPU ids this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 / AMX), as OpenVINO reports it:
    ``BF16`` among the CPU plug-in's ``OPTIMIZATION_CAPABILITIES``. ``HETPART_ASSUME_BF16``
    (``1`` / ``0``) overrides the detection; False when OpenVINO is not installed."""
    forced = os.environ.get(ASSUME_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        import openvino

        caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception as exc:  # noqa: BLE001 - no OpenVINO CPU plug-in: no bf16 device
        log.info("cannot query OpenVINO CPU capabilities: %s", exc)
        return False
    return "BF16" in [str(c).upper() for c in caps]


def _gpu_memory_bytes() -> int:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.split()
            return int(float(out[0]) * (1 << 20))
        except (subprocess.SubprocessError, OSError, ValueError, IndexError):
            pass
    log.warning("cannot query accelerator memory; assuming %d GiB",
                DEFAULT_ACCELERATOR_MEMORY >> 30)
    return DEFAULT_ACCELERATOR_MEMORY


def measure_runner(runner_name: str, options: dict[str, Any],
                   cache: ProfileCache) -> dict[str, float]:
    """Per-call overhead, peak float32 FLOP/s and bandwidth of one runner configuration.

    Cached under the runner fingerprint; measured on first use.

    Raises:
        ClusterError: the runner cannot run the probe models here.
    """
    from partitioner.registry import get_runner

    runner = get_runner(runner_name)
    fingerprint = runner_fingerprint(runner_name, runner.version(), options)
    keys = ("call_overhead_s", "peak_flops_float32", "memory_bandwidth")
    cached = {k: cache.get_fact(fingerprint, k) for k in keys}
    if all(v is not None for v in cached.values()):
        return {k: float(v) for k, v in cached.items() if v is not None}
    log.info("measuring %s %s (cached afterwards in %s)", runner_name, options, cache.path)
    tiny, tiny_feeds = add_probe(1)
    prepared = runner.prepare(tiny, dict(options, label="overhead probe"))
    # Best of many calls: what the runner costs when other processes leave the CPU alone.
    overhead = min(time_calls(lambda: prepared.run(tiny_feeds), 30, OVERHEAD_CALLS))
    mm, mm_feeds = matmul_probe(MATMUL_N)
    prepared = runner.prepare(mm, dict(options, label="matmul probe"))
    best = min(time_calls(lambda: prepared.run(mm_feeds), 1, 5, budget_s=2.0))
    peak = 2.0 * MATMUL_N**3 / max(best - overhead, 1e-9)
    add, add_feeds = add_probe(BANDWIDTH_FLOATS)
    prepared = runner.prepare(add, dict(options, label="bandwidth probe"))
    best = min(time_calls(lambda: prepared.run(add_feeds), 1, 5, budget_s=2.0))
    bandwidth = 3 * 4 * BANDWIDTH_FLOATS / max(best - overhead, 1e-9)
    facts = {"call_overhead_s": overhead, "peak_flops_float32": peak,
             "memory_bandwidth": bandwidth}
    for key, value in facts.items():
        cache.put_fact(fingerprint, key, value)
    return facts


def measured_host_copy_bandwidth(cache: ProfileCache) -> float:
    """NumPy copy bandwidth of this host (cached)."""
    fingerprint = runner_fingerprint("numpy", np.__version__, {})
    return _cached_fact(cache, fingerprint, "host_copy_bandwidth", host_copy_bandwidth)


def measured_thread_handoff(cpu: int, cache: ProfileCache) -> float:
    """Round trip to a worker thread pinned to ``cpu`` (cached; ``measure.thread_handoff_s``)."""
    fingerprint = runner_fingerprint("thread-handoff", str(os.cpu_count()), {"cpu": cpu})
    return _cached_fact(cache, fingerprint, "thread_handoff_s", lambda: thread_handoff_s(cpu))


def _cached_fact(cache: ProfileCache, fingerprint: str, key: str,
                 measure: Callable[[], float]) -> float:
    """The cached value of ``key``, measured and stored on first use."""
    value = cache.get_fact(fingerprint, key)
    if value is None:
        value = measure()
        cache.put_fact(fingerprint, key, value)
    return value


def _device(device_id: str, device_class: str, runner: str, options: dict[str, Any],
            facts: dict[str, float], memory: int, processor: str, what: str) -> DeviceSpec:
    return DeviceSpec(
        id=device_id,
        device_class=device_class,
        runner=runner,
        runner_options=options,
        memory_bytes=memory,
        peak_flops={"float32": facts["peak_flops_float32"]},
        memory_bandwidth=facts["memory_bandwidth"],
        call_overhead_s=facts["call_overhead_s"],
        processor=processor,
        description=f"{what}, detected and measured here",
        local=True,
        precision=str(options.get("precision", "f32")),
    )


def _candidates(bf16: bool | None = None) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """(id, class, runner, options, processor) for every device detected here.

    ``bf16``: whether to offer ``ov-cpu-bf16`` (OpenVINO CPU inferring in bf16); None asks
    :func:`cpu_has_native_bf16`.
    """
    import onnxruntime as ort

    found: list[tuple[str, str, str, dict[str, Any], str]] = []
    for provider in ort.get_available_providers():
        if provider in IGNORED_PROVIDERS:
            continue
        short = provider.removesuffix("ExecutionProvider")
        cls = ("gpu" if short in GPU_PROVIDERS else "npu" if short in NPU_PROVIDERS else "cpu")
        found.append((f"ort-{short.lower()}", cls, "onnxruntime", {"provider": provider},
                      f"{short.lower()}0" if cls != "cpu" else "cpu0"))
    found.append(("ort-cpu", "cpu", "onnxruntime", {"provider": "CPUExecutionProvider"}, "cpu0"))
    try:
        import openvino
    except ImportError:
        log.info("openvino is not installed; local cluster has no ov-cpu device")
        return found
    for ov_device in openvino.Core().available_devices:
        cls = "cpu" if ov_device == "CPU" else "gpu" if ov_device.startswith("GPU") else "npu"
        proc = "cpu0" if cls == "cpu" else f"ov-{ov_device.lower()}"
        found.append((f"ov-{ov_device.lower().replace('.', '')}", cls, "openvino",
                       {"device": ov_device}, proc))
        if ov_device == "CPU" and (cpu_has_native_bf16() if bf16 is None else bf16):
            # Same cores, computing in bf16: a choice the compiler makes only when allowed.
            found.append(("ov-cpu-bf16", "cpu", "openvino",
                          {"device": "CPU", "precision": "bf16"}, "cpu0"))
    return found


def detect_local_cluster(cores: bool = False, cache: ProfileCache | None = None,
                         bf16: bool | None = None) -> Cluster:
    """Detect the devices of this machine and measure them (cached).

    Args:
        cores: ``local-cores``: one single-threaded, pinned ONNX Runtime device per CPU core,
            each its own processor (so plans can run branches truly in parallel), and
            ``all-cores``, one ONNX Runtime session over every usable core, which shares the
            processor of each core device (a plain session is always among the choices).
        cache: Profile cache for measured facts (default file when None).
        bf16: ``local`` only: offer ``ov-cpu-bf16`` (True), not (False), or where the CPU
            computes bf16 natively (None: :func:`cpu_has_native_bf16`).

    Raises:
        ClusterError: a detected runner fails its probes.
    """
    cache = cache or ProfileCache()
    memory = host_memory_bytes()
    devices: list[DeviceSpec] = []
    if cores:
        cpus = usable_cpus()
        # Cores are identical: measure core 0's configuration once and reuse it.
        base = {"provider": "CPUExecutionProvider", "threads": 1}
        facts = dict(measure_runner("onnxruntime", dict(base, affinity=str(cpus[0])), cache))
        # Every call on a pinned core goes through that core's worker thread (executor).
        facts["call_overhead_s"] += measured_thread_handoff(cpus[-1], cache)
        for cpu in cpus:
            what = f"ONNX Runtime CPU, 1 thread pinned to core {cpu}"
            devices.append(_device(f"core{cpu}", "cpu", "onnxruntime",
                                   dict(base, affinity=str(cpu)), facts, memory // len(cpus),
                                   f"core{cpu}", what))
        # One session over every core, sharing each core's processor: never worse than a
        # plain ONNX Runtime session, and never run beside a core device.
        whole = {"provider": "CPUExecutionProvider", "threads": len(cpus)}
        devices.append(_device("all-cores", "cpu", "onnxruntime", whole,
                               measure_runner("onnxruntime", whole, cache), memory,
                               "+".join(f"core{cpu}" for cpu in cpus),
                               f"ONNX Runtime CPU, one session, {len(cpus)} threads"))
        name = "local-cores"
    else:
        for device_id, cls, runner, options, proc in _candidates(bf16):
            try:
                facts = measure_runner(runner, options, cache)
            except PartitionerError as exc:
                log.warning("skipping local device %s: %s", device_id, exc)
                continue
            mem = memory if cls == "cpu" else _gpu_memory_bytes()
            devices.append(_device(device_id, cls, runner, options, facts, mem, proc,
                                   f"{runner} {options}"))
        name = "local"
    if not devices:
        raise ClusterError(f"--cluster {name}: no runner could run its probe models here")
    fallback = next((d.id for d in devices if d.id in ("ort-cpu", "core0")), devices[0].id)
    return Cluster(name, tuple(devices), (), measured_host_copy_bandwidth(cache), fallback)
