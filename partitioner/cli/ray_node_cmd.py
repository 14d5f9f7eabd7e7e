"""``hetpart ray-node``: the ``ray start`` command that advertises one host's devices."""

from __future__ import annotations

import argparse

from partitioner.cli.common import positive_int
from partitioner.cluster.file import load_cluster
from partitioner.distributed.resources import hosts_of, ray_start_command
from partitioner.errors import ClusterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ray-node",
        help="print the `ray start` command advertising a host's devices to Ray",
        description="Print the `ray start` command that makes a machine a Ray node advertising "
                    "the devices a cluster file places on HOST (one custom resource "
                    "hetpart_device:<id> per device), so `hetpart run --ray ADDRESS` puts "
                    "each device's actor there.",
    )
    p.add_argument("--cluster", required=True, metavar="FILE", help="cluster TOML file")
    p.add_argument("--host", required=True, metavar="NAME",
                   help="a host named by the file's devices (host = NAME)")
    p.add_argument("--address", metavar="HEAD:PORT",
                   help="the head node to join (default: start this node as the head)")
    p.add_argument("--units", type=positive_int, default=1, metavar="N",
                   help="units advertised per device (default 1; 2 lets `hetpart generate "
                        "--ray` run a device's prefill and decode actors side by side)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.cluster)
    named = {d.host for d in cluster.devices if d.host}
    hosts = hosts_of([d for d in cluster.devices if d.host])
    if args.host not in hosts:
        known = ", ".join(sorted(named)) or "none: add host = \"NAME\" to its devices"
        raise ClusterError(f"{args.cluster}: no device names host {args.host!r} (hosts: {known})")
    print(ray_start_command(hosts[args.host], args.address, args.units))
    return 0
