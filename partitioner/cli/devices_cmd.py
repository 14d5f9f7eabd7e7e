"""``hetpart devices``: list the devices and links of a cluster (or the shipped presets)."""

from __future__ import annotations

import argparse
from typing import Any

from partitioner.cli.common import print_json
from partitioner.cluster.file import list_presets, load_cluster
from partitioner.cluster.precision import device_precision
from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.plan.codec import link_to_dict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the devices of a cluster (local, preset or file)")
    p.add_argument("--cluster", default="local",
                   help="local, local-cores, a preset name, a cluster TOML file, or "
                        "ray://HOST:PORT (ray://local: the Ray cluster running here) to list "
                        "the plan devices a running Ray cluster's nodes advertise")
    p.add_argument("--json", action="store_true", help="print the cluster as JSON")
    p.add_argument("--list-presets", action="store_true", help="list preset cluster names")
    p.set_defaults(func=run)


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def device_dict(d: DeviceSpec) -> dict[str, Any]:
    """A device as JSON-ready plain data."""
    return {
        "id": d.id, "class": d.device_class, "runner": d.runner, "options": d.runner_options,
        "memory_bytes": d.memory_bytes, "peak_flops": d.peak_flops,
        "memory_bandwidth": d.memory_bandwidth, "call_overhead_s": d.call_overhead_s,
        "price_per_hour": d.price_per_hour, "power_w": d.power_w, "processor": d.processor,
        "unsupported_ops": list(d.unsupported_ops), "local": d.local,
        "description": d.description, "precision": device_precision(d),
        "copy_engine": d.has_copy_engine, "host": d.host,
    }


def cluster_dict(c: Cluster) -> dict[str, Any]:
    """A cluster as JSON-ready plain data."""
    return {
        "name": c.name, "host_copy_bandwidth": c.host_copy_bandwidth,
        "fallback_device": c.fallback_device,
        "devices": [device_dict(d) for d in c.devices],
        "links": [link_to_dict(lk) for lk in c.links],
    }


def format_cluster(c: Cluster) -> str:
    """A human-readable table of the cluster's devices and links."""
    header = ("id", "class", "runner", "options", "memory", "fp32 peak", "fp16 peak",
              "bandwidth", "overhead", "processor", "precision", "copies")
    rows = [header]
    for d in c.devices:
        options = ",".join(f"{k}={v}" for k, v in sorted(d.runner_options.items())) or "-"
        fp16 = d.peak_flops.get("float16")
        rows.append((
            d.id, d.device_class, d.runner, options, f"{d.memory_bytes / 2**30:.1f} GiB",
            _si(d.peak_flops["float32"], "FLOP/s"), _si(fp16, "FLOP/s") if fp16 else "-",
            _si(d.memory_bandwidth, "B/s"), f"{d.call_overhead_s * 1e6:.1f} us",
            d.processor or "-", device_precision(d),
            "copy engine" if d.has_copy_engine else "device busy",
        ))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = [f"cluster {c.name}: {len(c.devices)} device(s), fallback {c.fallback_device}, "
             f"host copy {_si(c.host_copy_bandwidth, 'B/s')}"]
    lines += ["  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    for lk in c.links:
        engine = {None: "", True: ", copy engine", False: ", occupies both ends"}
        lines.append(f"  link {lk.src} -> {lk.dst}: {_si(lk.bandwidth, 'B/s')}, "
                     f"{lk.latency_s * 1e6:.1f} us{engine[lk.copy_engine]}")
    for d in c.devices:
        if d.unsupported_ops:
            lines.append(f"  {d.id} cannot run: {', '.join(d.unsupported_ops)}")
        if d.description:
            lines.append(f"  {d.id}: {d.description}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        names = list_presets()
        if args.json:
            print_json(names)
        else:
            print("\n".join(names))
        return 0
    if args.cluster.startswith("ray://"):
        return _ray_devices(args.cluster, args.json)
    cluster = load_cluster(args.cluster)
    if args.json:
        print_json(cluster_dict(cluster))
    else:
        print(format_cluster(cluster))
    return 0


def _ray_devices(spec: str, as_json: bool) -> int:
    """``--cluster ray://ADDRESS``: each live node and the plan devices it advertises."""
    from partitioner.distributed.inventory import cluster_nodes, ray_address
    from partitioner.distributed.resources import DEVICE_RESOURCE_PREFIX

    address = ray_address(spec)
    nodes = cluster_nodes(address)
    if as_json:
        print_json({"address": address, "nodes": [n.to_json() for n in nodes]})
        return 0
    devices = sum(len(n.devices) for n in nodes)
    lines = [f"Ray cluster {address}: {len(nodes)} live node(s), {devices} plan device(s) "
             f"advertised ({DEVICE_RESOURCE_PREFIX}<id>)"]
    for n in nodes:
        role = " (head)" if n.head else ""
        lines.append(f"  {n.node_ip:<15} {n.hostname}{role}: {n.cpus:g} CPU, devices "
                     f"{', '.join(n.devices) or '-'}")
    print("\n".join(lines))
    return 0
