"""What a running Ray cluster offers: the plan devices each live node advertises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from partitioner.distributed.connection import LOCAL, RayConnection, ray_module
from partitioner.distributed.local_cluster import loopback_environment
from partitioner.distributed.resources import advertised_devices
from partitioner.errors import RayClusterError

#: ``--cluster ray://...`` prefix; ``ray://local`` is the cluster running on this machine.
RAY_SCHEME = "ray://"


@dataclass(frozen=True)
class NodeDevices:
    """One live Ray node: its address, hostname, CPUs and the plan devices it advertises."""

    node_ip: str
    hostname: str
    cpus: float
    devices: tuple[str, ...]
    head: bool

    def to_json(self) -> dict[str, Any]:
        return {"node_ip": self.node_ip, "hostname": self.hostname, "cpus": self.cpus,
                "devices": list(self.devices), "head": self.head}


def ray_address(spec: str) -> str:
    """``ray://HOST:PORT`` -> ``HOST:PORT``; ``ray://local`` -> the loopback address of the
    cluster running on this machine (``ray start``), found as ``ray.init("auto")`` would."""
    address = spec[len(RAY_SCHEME):] if spec.startswith(RAY_SCHEME) else spec
    if address not in ("", LOCAL):
        return address
    loopback_environment()  # before Ray is imported: "auto" then resolves to 127.0.0.1
    ray_module()
    from ray._private.services import canonicalize_bootstrap_address

    try:
        found = canonicalize_bootstrap_address("auto")
    except Exception as exc:  # ConnectionError: none, or several, running here
        raise RayClusterError(f"--cluster {spec}: {_first_line(exc)}") from None
    if not found:
        raise RayClusterError(f"--cluster {spec}: no Ray cluster is running on this machine "
                              "(start one with `ray start --head`)")
    return str(found)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def cluster_nodes(address: str) -> list[NodeDevices]:
    """The live nodes of the Ray cluster at ``address`` (connects, reads, disconnects)."""
    with RayConnection(address):
        ray = ray_module()
        nodes = []
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            resources = node.get("Resources", {})
            nodes.append(NodeDevices(
                node_ip=node.get("NodeManagerAddress", "?"),
                hostname=node.get("NodeManagerHostname", "?"),
                cpus=float(resources.get("CPU", 0.0)),
                devices=tuple(advertised_devices(resources)),
                head="node:__internal_head__" in resources,
            ))
    return sorted(nodes, key=lambda n: (not n.head, n.devices, n.node_ip))
