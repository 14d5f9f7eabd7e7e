"""How a Ray cluster says which plan devices it has: one custom resource per device id.

A node started with ``ray start --resources '{"hetpart_device:gpu0": 1}'`` advertises plan
device ``gpu0``; the plan's device ids are the only glue between plan and cluster. An actor
asks for one unit, so two runs never share a device.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence

from partitioner.cluster.types import DeviceSpec
from partitioner.errors import RayClusterError

#: Custom resource name prefix: ``hetpart_device:<device id>``.
DEVICE_RESOURCE_PREFIX = "hetpart_device:"


def device_resource(device_id: str) -> str:
    """The custom resource a node advertises for plan device ``device_id``."""
    return DEVICE_RESOURCE_PREFIX + device_id


def advertised_devices(resources: Mapping[str, float]) -> dict[str, float]:
    """Device id -> units advertised, from ``ray.cluster_resources()`` (or a node's)."""
    return {
        name[len(DEVICE_RESOURCE_PREFIX):]: amount
        for name, amount in sorted(resources.items())
        if name.startswith(DEVICE_RESOURCE_PREFIX)
    }


def check_advertised(
    device_ids: Iterable[str],
    total: Mapping[str, float],
    available: Mapping[str, float],
    address: str,
) -> None:
    """Fail at once, naming every plan device no node advertises (an actor asking for it would
    wait pending forever), then every one advertised but held by another run's actor."""
    ids = sorted(set(device_ids))
    have = advertised_devices(total)
    missing = [d for d in ids if have.get(d, 0) < 1]
    if missing:
        offered = ", ".join(sorted(have)) or "none"
        raise RayClusterError(
            f"Ray cluster {address}: no node advertises plan device(s) "
            f"{', '.join(map(repr, missing))} (resource {device_resource('<id>')}; it "
            f"advertises: {offered}); start each host with the command "
            "`hetpart ray-node --cluster FILE --host NAME` prints"
        )
    free = advertised_devices(available)
    busy = [d for d in ids if free.get(d, 0) < 1]
    if busy:
        raise RayClusterError(
            f"Ray cluster {address}: plan device(s) {', '.join(map(repr, busy))} are "
            "advertised but held by another run's actors; wait for it to finish"
        )


def hosts_of(devices: Sequence[DeviceSpec]) -> dict[str, list[str]]:
    """Host name -> the ids of its devices, in device order; a device naming no host is a
    host of its own (named after the device: ``DeviceSpec.machine``)."""
    hosts: dict[str, list[str]] = {}
    for d in devices:
        hosts.setdefault(d.machine, []).append(d.id)
    return hosts


def node_resources(device_ids: Iterable[str],
                   units: Mapping[str, float] | None = None) -> dict[str, float]:
    """The custom resources of a node advertising ``device_ids``: one unit each, or as many as
    ``units`` says (``hetpart generate --ray`` runs a device's prefill and decode actors side
    by side, each holding one)."""
    return {device_resource(d): float((units or {}).get(d, 1.0)) for d in device_ids}


def ray_start_command(device_ids: Sequence[str], head_address: str | None,
                      units: int = 1) -> str:
    """The ``ray start`` command line for a node advertising ``device_ids`` (``units`` each):
    joining ``head_address`` (``HOST:PORT``), or starting a head when None."""
    resources = json.dumps(node_resources(device_ids, dict.fromkeys(device_ids, units)),
                           separators=(",", ":"))
    where = f"--address={shlex.quote(head_address)}" if head_address else "--head"
    return f"ray start {where} --resources={shlex.quote(resources)}"
