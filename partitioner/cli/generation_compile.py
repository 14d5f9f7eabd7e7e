"""``hetpart compile DECODER --workload ...``: the generation branch of the compile command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from partitioner.cli.common import print_json
from partitioner.cluster.file import load_cluster
from partitioner.generation.compile import compile_generation
from partitioner.generation.planner import format_value
from partitioner.generation.workload import Targets, Workload, WorkloadError

#: Flags of the ordinary compile that a generation plan does not take (flag, attribute, default).
_NOT_FOR_GENERATION: tuple[tuple[str, str, Any], ...] = (
    ("--latency-target", "latency_target", None), ("--pin", "pin", []),
    ("--forbid", "forbid", []), ("--input-shape", "input_shape", None),
    ("--max-partitions", "max_partitions", None), ("--precision", "precision", None),
    ("--tolerance", "tolerance", None), ("--annotate", "annotate", False),
)


def run_generation(args: argparse.Namespace) -> int:
    for flag, attr, default in _NOT_FOR_GENERATION:
        if getattr(args, attr, default) not in (default, None):
            raise WorkloadError(f"{flag} does not apply to a generation plan of {args.model}")
    if args.objective in ("latency", "throughput", "cost"):
        raise WorkloadError(f"--objective {args.objective}: a decoder takes ttft, tpot, "
                            "tokens-per-s or cost-per-mtok")
    if args.workload is None:
        raise WorkloadError(f"{args.model} is a decoder: give --workload "
                            "prompt=P,new=N[,batch=B,context=C]")
    workload = Workload.parse(args.workload)
    targets = Targets(args.objective or "tokens-per-s",
                      args.ttft_slo / 1e3 if args.ttft_slo else None,
                      args.tpot_slo / 1e3 if args.tpot_slo else None)
    cluster = load_cluster(args.cluster)
    if args.devices:
        from partitioner.compiler import resolve_cluster

        cluster = resolve_cluster(cluster, args.devices)
    quiet = args.quiet or args.json

    def progress(message: str) -> None:
        if not quiet:
            print(f"  {message}", file=sys.stderr, flush=True)

    result = compile_generation(args.model, cluster, workload, targets, args.output,
                                time_limit_s=args.time_limit, seed=args.seed,
                                workers=args.workers or 1, overwrite=args.force,
                                progress=progress)
    data = result.plan.to_dict()
    if args.json:
        print_json({**data, "plan_dir": str(result.plan_dir), "runnable": result.runnable})
    else:
        print(format_generation_summary(data, str(result.plan_dir), result.runnable))
    return 0


def _runs(devices: list[str], groups: list[dict[str, Any]]) -> str:
    """``a100 (layers 0-39), cpu (layers 40-79)`` from per-group devices."""
    parts, start = [], 0
    for i in range(1, len(devices) + 1):
        if i == len(devices) or devices[i] != devices[start]:
            last = groups[i - 1]["first_layer"] + groups[i - 1]["layers"] - 1
            parts.append(f"{devices[start]} (layers {groups[start]['first_layer']}-{last})")
            start = i
    return ", ".join(parts)


def format_generation_summary(data: dict[str, Any], plan_dir: str, runnable: bool) -> str:
    objective, p = data["objective"], data["predicted"]
    gap = data["gap"]
    bound = ("none proven" if data["bound"] is None else
             f"{format_value(objective, data['bound'])} (gap {gap:.2%})")
    lines = [
        f"generation plan written to {plan_dir}" + ("" if runnable else
                                                   " (plan only: no runnable phase plans)"),
        f"  model            {data['model']} on {data['cluster']}, workload "
        + ",".join(f"{k}={v}" for k, v in data["workload"].items()),
        f"  objective        {objective}: {format_value(objective, p[_KEY[objective]])} at batch "
        f"{data['batch']} ({data['status']})",
        f"  proven bound     {bound}, solved in {data['solve_time_s']:.2f} s, "
        f"{len(data['groups'])} layer groups",
        f"  predicted        TTFT {p['ttft_s'] * 1e3:.4g} ms, TPOT {p['tpot_s'] * 1e3:.4g} ms "
        f"(last step {p['tpot_worst_s'] * 1e3:.4g} ms), {p['tokens_per_s']:.4g} tokens/s, "
        f"{p['cost_per_mtok']:.4g} $/Mtok at {p['price_per_hour']:.4g} $/h",
        f"  prefill on       {_runs(p['prefill'], data['groups'])}",
        f"  decode on        {_runs(p['decode'], data['groups'])}",
        f"  choice           {data['choice']}",
        "  baselines (tokens/s, $/Mtok, TTFT, TPOT at their best batch):",
    ]
    for name, b in data["baselines"].items():
        if b is None:
            lines.append(f"    {name:<28} none: {data['baseline_notes'].get(name, '')}")
            continue
        lines.append(f"    {name:<28} {b['tokens_per_s']:9.4g} tok/s {b['cost_per_mtok']:9.4g} "
                     f"$/Mtok {b['ttft_s'] * 1e3:9.4g} ms {b['tpot_s'] * 1e3:8.4g} ms  "
                     f"batch {b['batch']} ({b['origin']})")
    return "\n".join(lines)


_KEY = {"ttft": "ttft_s", "tpot": "tpot_s", "tokens-per-s": "tokens_per_s",
        "cost-per-mtok": "cost_per_mtok"}
