"""Cluster files of small one-thread ONNX Runtime CPU devices on named hosts: what the Ray
tests and benchmarks run a plan "across machines" with on one machine (``--ray local``
starts one simulated node per host)."""

from __future__ import annotations

from collections.abc import Mapping

#: Two boxes of one device each, the smallest multi-host cluster.
TWO_HOSTS = {"cpu-a": "box-a", "cpu-b": "box-b"}


def cpu_device_toml(device_id: str, extra: str = "", runner: str = "onnxruntime") -> str:
    """One ``[[device]]`` table: a CPU on ``runner`` with one thread, then the TOML lines
    ``extra`` (``host = "box-a"``, a count, a bad value a test wants refused)."""
    return f"""
[[device]]
id = "{device_id}"
class = "cpu"
runner = "{runner}"
options = {{ threads = 1 }}
memory = "4GB"
peak_flops = {{ float32 = "20GFLOP/s" }}
memory_bandwidth = "10GB/s"
{extra}
"""


def hosts_cluster_toml(hosts: Mapping[str, str] = TWO_HOSTS) -> str:
    """A cluster file with one device per entry of ``hosts`` (device id -> host)."""
    return "".join(cpu_device_toml(d, f'host = "{host}"') for d, host in hosts.items())
