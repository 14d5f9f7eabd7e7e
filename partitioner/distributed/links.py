"""Measuring the network between a cluster's hosts on Ray (``hetpart profile --links``).

One small probe actor per host, on the Ray node that advertises the host's first device (found
through its ``hetpart_device:<id>`` resource, then pinned to that node by node affinity, so the
probe holds none of the device's units and runs beside a plan's actors). For each ordered
pair of hosts and each size, the source probe ``ray.put``s a fresh array and the destination
probe times its ``ray.get`` of it: the pull from the source node's object store, which a
plan's boundary tensor over 100 KB makes before its consumer's call starts (Ray resolves the
call's ObjectRef arguments first; ``executor.RayExecutor``). Rounds interleave every
pair and size (sizes in a rotating order) after one untimed warm-up round, so a burst of load
touches every series alike.

Per pair: the median time at each size; bandwidth from the slope of a least-squares line
through the medians (bytes per second = 1 / slope); latency the smallest size's median less
its bytes at that bandwidth (the line through the small point with the fitted slope). Spread:
each size's min..max over rounds, and the bandwidth and latency of each round's own fit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from partitioner.distributed.connection import ray_module
from partitioner.distributed.resources import advertised_devices, device_resource
from partitioner.errors import RayClusterError

#: Default transfer sizes: 64 KiB .. 16 MiB, x4 apart.
DEFAULT_SIZES = (2**16, 2**18, 2**20, 2**22, 2**24)
#: Seconds one probe call may take before the measurement is given up.
CALL_TIMEOUT_S = 120.0


class LinkProbe:
    """The actor on one host: makes objects and times fetching others' (Ray wraps it)."""

    def __init__(self) -> None:
        import numpy as np

        self._np = np

    def where(self) -> dict[str, Any]:
        import ray

        return {"node_ip": ray.util.get_node_ip_address(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def make(self, nbytes: int, salt: int) -> list[Any]:
        """A fresh object of ``nbytes`` in this node's store, its ref wrapped in a list so the
        driver passes it on unresolved."""
        import ray

        data = self._np.full(nbytes, salt % 251, dtype=self._np.uint8)
        return [ray.put(data)]

    def fetch(self, refs: list[Any]) -> float:
        """Seconds to pull ``refs[0]`` here (from the node that made it)."""
        import ray

        started = time.perf_counter()
        value = ray.get(refs[0])
        elapsed = time.perf_counter() - started
        del value
        return elapsed


@dataclass
class LinkMeasurement:
    """One direction between two hosts.

    Attributes:
        src_host, dst_host: The hosts (cluster file ``host`` values).
        bandwidth: Bytes per second (from the fitted slope).
        latency_s: Seconds per transfer beyond its bytes.
        median_s: Size in bytes -> median seconds over the rounds.
        samples_s: Size -> every round's seconds, in round order.
        round_bandwidth, round_latency_s: (min, max) of each round's own fit.
    """

    src_host: str
    dst_host: str
    bandwidth: float
    latency_s: float
    median_s: dict[int, float]
    samples_s: dict[int, list[float]] = field(default_factory=dict)
    round_bandwidth: tuple[float, float] = (0.0, 0.0)
    round_latency_s: tuple[float, float] = (0.0, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "src_host": self.src_host, "dst_host": self.dst_host,
            "bandwidth_bytes_per_s": self.bandwidth, "latency_s": self.latency_s,
            "rounds_bandwidth_bytes_per_s": list(self.round_bandwidth),
            "rounds_latency_s": list(self.round_latency_s),
            "sizes": {str(size): {"median_s": self.median_s[size],
                                  "min_s": min(self.samples_s[size]),
                                  "max_s": max(self.samples_s[size])}
                      for size in sorted(self.median_s)},
        }


def fit_line(times_by_size: Mapping[int, float]) -> tuple[float, float]:
    """(bandwidth, latency_s) from seconds per size: bandwidth = 1 / least-squares slope,
    latency = the smallest size's time less its bytes at that bandwidth (never negative).
    A slope that is not positive (noise swamped the sizes) gives the largest size's rate."""
    sizes = sorted(times_by_size)
    if len(sizes) < 2:
        raise RayClusterError("link measurement needs at least two transfer sizes")
    mean_x = statistics.fmean(sizes)
    mean_y = statistics.fmean(times_by_size[s] for s in sizes)
    var = sum((s - mean_x) ** 2 for s in sizes)
    slope = sum((s - mean_x) * (times_by_size[s] - mean_y) for s in sizes) / var
    if slope > 0:
        bandwidth = 1.0 / slope
    else:
        bandwidth = sizes[-1] / max(times_by_size[sizes[-1]], 1e-9)
    latency = max(0.0, times_by_size[sizes[0]] - sizes[0] / bandwidth)
    return bandwidth, latency


def host_nodes(hosts: Mapping[str, Sequence[str]], nodes: Sequence[Mapping[str, Any]],
               where: str) -> dict[str, str]:
    """Host -> the id of the live Ray node advertising its first device advertised at all.

    Raises:
        RayClusterError: a host none of whose devices any node advertises (naming the host
            and its devices), or two hosts on the same node (no link between them to measure).
    """
    node_of: dict[str, tuple[str, str]] = {}
    for node in nodes:
        if not node.get("Alive"):
            continue
        for device in advertised_devices(node.get("Resources", {})):
            node_of.setdefault(device, (str(node["NodeID"]),
                                        str(node.get("NodeManagerAddress", "?"))))
    chosen: dict[str, str] = {}
    seen: dict[str, str] = {}
    for host, devices in hosts.items():
        found = next((node_of[d] for d in devices if d in node_of), None)
        if found is None:
            offered = ", ".join(sorted(node_of)) or "none"
            raise RayClusterError(
                f"Ray cluster {where}: no node advertises a device of host {host!r} "
                f"({', '.join(map(repr, devices))}; resource {device_resource('<id>')}; the "
                f"cluster advertises: {offered}); start the host with the command "
                f"`hetpart ray-node --cluster FILE --host {host}` prints")
        if found[0] in seen:
            raise RayClusterError(
                f"Ray cluster {where}: hosts {seen[found[0]]!r} and {host!r} are the same Ray "
                f"node ({found[1]}), so there is no link between them to measure; start each "
                "host as its own node")
        seen[found[0]] = host
        chosen[host] = found[0]
    return chosen


def measure_links(hosts: Mapping[str, Sequence[str]], where: str, *,
                  sizes: Sequence[int] = DEFAULT_SIZES, rounds: int = 5,
                  progress: Any = None) -> list[LinkMeasurement]:
    """Measure every ordered pair of ``hosts`` (host -> device ids) on the connected cluster.

    Args:
        hosts: At least two hosts, each with the device ids that pin it to a node.
        where: The cluster, for messages.
        sizes: Transfer sizes in bytes (at least two).
        rounds: Timed rounds (after one warm-up round).
        progress: Optional ``progress(done, total)`` callback.

    Raises:
        RayClusterError: a host not advertised, two hosts on one node, a probe that failed.
    """
    ray = ray_module()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if len(hosts) < 2:
        raise RayClusterError(f"link measurement needs two hosts, got {sorted(hosts)}")
    node_ids = host_nodes(hosts, ray.nodes(), where)
    remote = ray.remote(LinkProbe)
    probes = {host: remote.options(
        num_cpus=0, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
              for host, node_id in node_ids.items()}
    try:
        placed = dict(zip(probes, _get(ray, [p.where.remote() for p in probes.values()],
                                       where), strict=True))
        for host, info in placed.items():
            if info["node_id"] != node_ids[host]:  # node affinity is hard: never expected
                raise RayClusterError(f"host {host!r}: its probe started on another node")
        pairs = [(a, b) for a in hosts for b in hosts if a != b]
        samples: dict[tuple[str, str], dict[int, list[float]]] = {
            pair: {size: [] for size in sizes} for pair in pairs}
        total = (rounds + 1) * len(pairs) * len(sizes)
        done = 0
        for r in range(rounds + 1):
            for k, (a, b) in enumerate(pairs):
                shift = (r + k) % len(sizes)
                for size in list(sizes[shift:]) + list(sizes[:shift]):
                    refs = _get(ray, [probes[a].make.remote(size, done)], where)[0]
                    seconds = _get(ray, [probes[b].fetch.remote(refs)], where)[0]
                    del refs
                    if r > 0:  # the first round warms connections and stores up
                        samples[(a, b)][size].append(float(seconds))
                    done += 1
                    if progress is not None:
                        progress(done, total)
    finally:
        for probe in probes.values():
            ray.kill(probe, no_restart=True)
    return [_summarise(a, b, samples[(a, b)], rounds) for a, b in pairs]


def _summarise(src: str, dst: str, samples: Mapping[int, list[float]],
               rounds: int) -> LinkMeasurement:
    medians = {size: statistics.median(times) for size, times in samples.items()}
    bandwidth, latency = fit_line(medians)
    per_round = [fit_line({size: times[r] for size, times in samples.items()})
                 for r in range(rounds)]
    bws = [bw for bw, _ in per_round]
    lats = [lat for _, lat in per_round]
    return LinkMeasurement(src, dst, bandwidth, latency, medians,
                           {size: list(times) for size, times in samples.items()},
                           (min(bws), max(bws)), (min(lats), max(lats)))


def _get(ray: Any, refs: list[Any], where: str) -> list[Any]:
    try:
        return list(ray.get(refs, timeout=CALL_TIMEOUT_S))
    except ray.exceptions.GetTimeoutError:
        raise RayClusterError(f"Ray cluster {where}: a link probe did not answer within "
                              f"{CALL_TIMEOUT_S:.0f} s") from None
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayClusterError(f"Ray cluster {where}: a link probe failed: {first}") from None
