"""``hetpart profile``: measure a model's node signatures on the local runners into the cache."""

from __future__ import annotations

import argparse
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from partitioner.cli.common import (
    add_input_shape_arg,
    parse_input_shapes,
    positive_int,
    print_json,
    ray_address,
)
from partitioner.cli.progress import ProgressLine
from partitioner.cluster.file import load_cluster
from partitioner.errors import ClusterError
from partitioner.graph.analysis import analyse
from partitioner.profiling.cache import ProfileCache
from partitioner.registry import cost_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile", help="measure every node signature on the local runners, or (--links) the "
        "network between a cluster file's hosts on Ray")
    p.add_argument("model", nargs="?", help="ONNX model file (not with --links)")
    p.add_argument("--cluster", default="local",
                   help="local, local-cores or a cluster file with local = true devices; with "
                   "--links: the cluster file whose hosts to measure (updated in place)")
    add_input_shape_arg(p)
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed runs per signature (default 15); with --links: interleaved "
                   "rounds (default 5)")
    p.add_argument("--links", action="store_true",
                   help="measure bandwidth and latency between the cluster file's hosts (its "
                   "devices' host keys) on Ray and write them as its [[link]]s")
    p.add_argument("--ray", metavar="ADDRESS", type=ray_address,
                   help="with --links: 'local' (a throwaway loopback cluster, one node per "
                   "host) or a running cluster's address (auto, HOST:PORT)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="with --links: write the updated cluster file here instead")
    p.add_argument("--cache", metavar="FILE", help="profile cache (default $HETPART_CACHE)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip timing the whole model per runner (fusion calibration)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.links:
        return run_links(args)
    for flag, given in (("--ray", args.ray), ("-o/--output", args.output)):
        if given:
            raise ClusterError(f"{flag} applies to profile --links only")
    if not args.model:
        raise ClusterError("profile needs an ONNX model (or --links to measure a cluster "
                           "file's network)")
    args.repeats = args.repeats or 15
    cluster = load_cluster(args.cluster)
    local = [d for d in cluster.devices if d.local]
    if not local:
        raise ClusterError(
            f"--cluster {args.cluster}: no device is on this machine; profile needs "
            "--cluster local, local-cores, or a cluster file with local = true devices"
        )
    analysed = analyse(args.model, parse_input_shapes(args.input_shape))
    cache = ProfileCache(args.cache)
    model = cost_models.create("profiled", cache=cache, repeats=args.repeats,
                               calibrate=not args.no_calibrate)
    bar = ProgressLine("profiling", args.quiet or args.json)
    stats = model.prepare(analysed, cluster, bar.counter())
    bar.done()
    corrections = {d.id: model.correction(d) for d in local}
    fits: dict[str, Any] = {}
    for d in local:
        errors = [f.loo_mape for f in model.fitted.report(model.fingerprint(d))
                  if f.op_type != "*" and f.loo_mape is not None]
        fits[d.id] = statistics.median(errors) if errors else None
    summary = {
        "model": analysed.facts.model_name, "cluster": cluster.name, "cache": str(cache.path),
        "nodes": len(analysed.facts.nodes),
        "signatures": len({n.signature for n in analysed.facts.nodes}),
        "devices": [d.id for d in local], "measured": stats.measured, "reused": stats.reused,
        "failed": stats.failed, "unsupported": stats.unsupported,
        "unmeasured": stats.unmeasured,
        "unmeasured_reasons": {k: sorted({why for _, why in v})
                               for k, v in stats.fallbacks.items()},
        "calibration": {k: {"node_sum_s": p, "measured_s": m}
                        for k, (p, m) in stats.calibrated.items()},
        "correction": {k: {"tensor_scale": c.tensor_scale, "other_scale": c.other_scale,
                           "per_node_s": c.per_node_s, "models": c.models}
                       for k, c in corrections.items()},
        "fit_loo_median_abs_error": fits,
    }
    if args.json:
        print_json(summary)
        return 0
    print(f"{summary['model']}: {summary['nodes']} nodes, {summary['signatures']} distinct "
          f"signatures, on {', '.join(summary['devices'])}")
    print(f"measured {stats.measured}, reused {stats.reused} from {cache.path}"
          + (f", {stats.unsupported} refused by the runtime" if stats.unsupported else ""))
    for device_id, failures in sorted(stats.fallbacks.items()):
        reasons = sorted({why for _, why in failures})
        print(f"  {device_id}: {len(failures)} signature(s) could not be measured (not cached; "
              f"costed by the fitted or roofline model): {reasons[0]}"
              + (f" (and {len(reasons) - 1} other reason(s))" if len(reasons) > 1 else ""))
    for d in local:
        line = f"  {d.id}: calibration {corrections[d.id].describe()}"
        if d.id in stats.calibrated:
            p, m = stats.calibrated[d.id]
            line += f" (node sum {p * 1e3:.3f} ms, whole model {m * 1e3:.3f} ms)"
        if fits[d.id] is not None:
            line += f", fitted per-op models: median leave-one-out error {fits[d.id]:.0%}"
        print(line)
    return 0


def run_links(args: argparse.Namespace) -> int:
    """``profile --links``: time object transfers between every pair of the cluster file's
    hosts on Ray (``distributed.links``) and write them as its links
    (``cluster.links_file``: atomically, every other key and comment kept)."""
    from partitioner.cluster.links_file import (
        MeasuredLink,
        file_hosts,
        format_rate,
        updated_text,
        write_text_atomically,
    )
    from partitioner.distributed.connection import RayConnection
    from partitioner.distributed.links import DEFAULT_SIZES, measure_links
    from partitioner.distributed.resources import hosts_of

    if args.model:
        raise ClusterError(f"profile --links measures a cluster file, not a model ({args.model})")
    if not args.ray:
        raise ClusterError("profile --links needs --ray local or --ray ADDRESS (the cluster "
                           "whose nodes advertise the file's devices)")
    if args.input_shape or args.cache or args.no_calibrate:
        raise ClusterError("--input-shape, --cache and --no-calibrate apply to model profiles")
    path = Path(args.cluster)
    if path.suffix != ".toml" and not path.is_file():
        raise ClusterError(f"profile --links --cluster {args.cluster!r}: needs a cluster file "
                           "(.toml) whose devices name their host")
    hosts = file_hosts(path)  # the devices as the file names them, for the links it gets
    # The devices as Ray nodes advertise them (a counted device's instances), for pinning.
    pinned = hosts_of([d for d in load_cluster(str(path)).devices if d.host])
    rounds = args.repeats or 5
    bar = ProgressLine("measuring links", args.quiet or args.json)
    with RayConnection(args.ray, pinned) as connection:
        measured = measure_links(pinned, connection.where, sizes=DEFAULT_SIZES, rounds=rounds,
                                 progress=bar.counter())
        where = connection.where
    bar.done()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sizes = f"{DEFAULT_SIZES[0] // 1024} KiB..{DEFAULT_SIZES[-1] // 2**20} MiB"
    heading = [f"measured {when} on Ray cluster {where}:",
               f"medians of {rounds} interleaved rounds of {sizes} transfers (bandwidth from "
               "the slope,", "latency at the smallest size; in brackets the rounds' own fits)"]
    heading += [f"{m.src_host} -> {m.dst_host}: {format_rate(m.bandwidth)} "
                f"[{format_rate(m.round_bandwidth[0])}..{format_rate(m.round_bandwidth[1])}], "
                f"latency {m.latency_s * 1e6:.0f} us [{m.round_latency_s[0] * 1e6:.0f}.."
                f"{m.round_latency_s[1] * 1e6:.0f} us]" for m in measured]
    text = updated_text(path, [MeasuredLink(m.src_host, m.dst_host, m.bandwidth, m.latency_s)
                               for m in measured], heading)
    target = write_text_atomically(args.output or path, text, like=path)
    if args.json:
        print_json({"cluster_file": str(path), "written": str(target), "ray": where,
                    "rounds": rounds, "sizes": list(DEFAULT_SIZES),
                    "hosts": {h: ids for h, ids in hosts.items()},
                    "links": [m.to_json() for m in measured]})
        return 0
    print(f"measured {len(measured)} host-to-host direction(s) on Ray cluster {where} "
          f"({rounds} rounds, {sizes}); wrote {target}")
    for m in measured:
        spread = ", ".join(
            f"{size // 1024} KiB {m.median_s[size] * 1e3:.2f} ms "
            f"[{min(m.samples_s[size]) * 1e3:.2f}..{max(m.samples_s[size]) * 1e3:.2f}]"
            for size in sorted(m.median_s))
        print(f"  {m.src_host} -> {m.dst_host}: {format_rate(m.bandwidth)}, latency "
              f"{m.latency_s * 1e6:.0f} us; medians {spread}")
    return 0
