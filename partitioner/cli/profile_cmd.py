"""``hetpart profile``: measure a model's node signatures on the local runners into the cache."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from partitioner.cli.common import (
    add_input_shape_arg,
    parse_input_shapes,
    positive_int,
    print_json,
)
from partitioner.cli.progress import ProgressLine
from partitioner.cluster.file import load_cluster
from partitioner.errors import ClusterError
from partitioner.graph.analysis import analyse
from partitioner.profiling.cache import ProfileCache
from partitioner.registry import cost_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure every node signature on the local runners")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--cluster", default="local",
                   help="local, local-cores or a cluster file with local = true devices")
    add_input_shape_arg(p)
    p.add_argument("--repeats", type=positive_int, default=15, help="timed runs per signature")
    p.add_argument("--cache", metavar="FILE", help="profile cache (default $HETPART_CACHE)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip timing the whole model per runner (fusion calibration)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
