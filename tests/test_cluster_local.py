"""The ``local`` and ``local-cores`` clusters: detection, measured capacities, caching."""

from __future__ import annotations

from pathlib import Path

import pytest

from partitioner.cluster.file import load_cluster
from partitioner.cluster.local import (
    detect_local_cluster,
    measure_runner,
    measured_thread_handoff,
    usable_cpus,
)
from partitioner.profiling.cache import ProfileCache


def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory per test session, so the local cluster is measured once."""
    return tmp_path_factory.getbasetemp() / "hetpart-cache"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ProfileCache:
    return ProfileCache(shared_cache_dir(tmp_path_factory) / "profiles.sqlite")


def test_local_has_onnxruntime_cpu_with_measured_numbers(cache: ProfileCache) -> None:
    cluster = detect_local_cluster(cache=cache)
    assert cluster.name == "local" and cluster.fallback_device == "ort-cpu"
    ort = cluster.device("ort-cpu")
    assert ort.runner == "onnxruntime" and ort.local and ort.processor == "cpu0"
    assert ort.runner_options == {"provider": "CPUExecutionProvider"}
    assert 0 < ort.call_overhead_s < 1  # seconds; any machine, however loaded
    assert ort.peak_flops["float32"] > 1e8 and ort.memory_bandwidth > 1e8
    assert cluster.host_copy_bandwidth > 1e8
    assert "Azure" not in " ".join(cluster.device_ids)


def test_second_detection_reuses_cached_measurements(cache: ProfileCache) -> None:
    first = detect_local_cluster(cache=cache)
    second = detect_local_cluster(cache=cache)
    assert first == second  # measurements are noisy: equal values mean they were cached
    assert first.host_copy_bandwidth == second.host_copy_bandwidth


@pytest.mark.openvino
def test_openvino_cpu_shares_the_processor(cache: ProfileCache) -> None:
    pytest.importorskip("openvino")
    cluster = detect_local_cluster(cache=cache)
    ov = cluster.device("ov-cpu")
    assert ov.runner == "openvino" and ov.runner_options == {"device": "CPU"}
    assert cluster.shares_processor("ort-cpu", "ov-cpu")


def test_local_cores_one_pinned_device_per_core(cache: ProfileCache) -> None:
    cluster = detect_local_cluster(cores=True, cache=cache)
    cpus = usable_cpus()
    assert cluster.name == "local-cores" and len(cluster.devices) == len(cpus) + 1
    assert cluster.devices[-1].id == "all-cores"  # one session over every core (issue 19)
    for cpu, device in zip(cpus, cluster.devices[:-1], strict=True):
        assert device.id == f"core{cpu}" and device.processor == f"core{cpu}"
        assert device.runner_options == {"provider": "CPUExecutionProvider", "threads": 1,
                                         "affinity": str(cpu)}
    if len(cpus) > 1:
        assert not cluster.shares_processor(cluster.devices[0].id, cluster.devices[1].id)
    # A core's call overhead includes the measured round trip to its pinned worker thread.
    handoff = measured_thread_handoff(cpus[-1], cache)
    assert 0 < handoff < 1
    probe = measure_runner("onnxruntime", dict(cluster.devices[0].runner_options), cache)
    assert cluster.devices[0].call_overhead_s == pytest.approx(
        probe["call_overhead_s"] + handoff)


def test_load_cluster_local_uses_hetpart_cache(cache: ProfileCache,
                                               tmp_path_factory: pytest.TempPathFactory,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETPART_CACHE", str(shared_cache_dir(tmp_path_factory)))
    assert load_cluster("local") == detect_local_cluster(cache=cache)
