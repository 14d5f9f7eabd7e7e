"""``hetpart run``: execute a plan on its devices, measure it, optionally check its numerics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from partitioner.cli.common import (
    non_negative_float,
    non_negative_int,
    positive_int,
    print_json,
    ray_address,
    seed_int,
)
from partitioner.errors import RunError
from partitioner.plan.io import check_model_hash, load_plan
from partitioner.plan.types import Plan
from partitioner.runtime.executor import Executor
from partitioner.runtime.feeds import load_inputs, random_inputs
from partitioner.runtime.records import (
    compare_outputs,
    measure,
    resolve_model_path,
    save_run,
    whole_model_outputs,
)

#: ``--check`` tolerances when neither the command line nor the plan gives one.
DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-4

#: Operators whose outputs runners may round differently (quantization to integers).
QUANTIZING_OPS = ("DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger", "ConvInteger",
                  "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a plan on its devices and measure it")
    p.add_argument("plan_dir", metavar="PLAN_DIR", help="directory written by `hetpart compile`")
    p.add_argument("--inputs", metavar="FILE.npz", help="input arrays by name (default: random)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--check",
        action="store_true",
        help="compare every output with the unpartitioned model on ONNX Runtime CPU",
    )
    p.add_argument(
        "--rtol", type=non_negative_float, metavar="R",
        help=f"--check relative tolerance (default: the plan's --tolerance, else {DEFAULT_RTOL})",
    )
    p.add_argument(
        "--atol", type=non_negative_float, metavar="A",
        help=f"--check absolute tolerance (default: the plan's --tolerance, else {DEFAULT_ATOL})",
    )
    p.add_argument(
        "--repeat", type=positive_int, default=10, metavar="N", help="timed runs (median)"
    )
    p.add_argument(
        "--warmup",
        type=non_negative_int,
        default=1,
        metavar="N",
        help="untimed runs before the timed ones (default 1; 0 times the first run too)",
    )
    p.add_argument(
        "--stream",
        type=positive_int,
        default=0,
        metavar="N",
        help="also feed N inputs pipelined and report throughput",
    )
    p.add_argument(
        "--emulate",
        action="store_true",
        help="map devices absent here onto ONNX Runtime CPU (timings are emulated)",
    )
    p.add_argument(
        "--ray", metavar="ADDRESS", type=ray_address,
        help="run on a Ray cluster, one actor per device: 'local' (a throwaway loopback "
             "cluster here, one node per host the plan names) or its address (auto, HOST:PORT)",
    )
    p.add_argument(
        "--restarts", type=non_negative_int, default=0, metavar="N",
        help="with --ray: Ray restarts a device's actor that dies up to N times (default 0)",
    )
    p.add_argument(
        "--save", action="store_true", help="write the measurements to PLAN_DIR/run.json"
    )
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    plan_dir = Path(args.plan_dir)
    plan = load_plan(plan_dir)
    specs = plan.model.inputs
    feeds = load_inputs(args.inputs, specs) if args.inputs else random_inputs(specs, args.seed)
    model_path = None
    if args.check:  # fail on a missing or foreign model before spending time running
        model_path = resolve_model_path(plan, plan_dir)
        check_model_hash(plan, model_path)
    with _executor(args, plan, plan_dir) as executor:
        record, last = measure(
            executor, feeds, repeat=args.repeat, warmup=args.warmup, stream=args.stream
        )
        if args.ray:
            # ``hosts``: the plan's names; ``placement``: where each actor really ran.
            record["ray"] = {"address": args.ray, "cluster": executor.where,
                             "hosts": dict(sorted(executor.hosts.items())),
                             "placement": dict(sorted(executor.placement.items())),
                             "restarts": args.restarts}
    ok = True
    if model_path is not None:
        expected = whole_model_outputs(model_path, feeds)
        rtol, atol, source = check_tolerance(plan, args.rtol, args.atol)
        per_output = compare_outputs(last.outputs, expected, rtol, atol)
        record["check"] = {"outputs": per_output, "rtol": rtol, "atol": atol,
                           "tolerance_from": source}
        record["max_abs_error"] = max(v["max_abs_error"] for v in per_output.values())
        record["max_rel_error"] = max(v["max_rel_error"] for v in per_output.values())
        ok = all(v["passed"] for v in per_output.values())
        record["check"]["passed"] = ok
        note = quantization_note(plan)
        if note and not ok:
            record["check"]["note"] = note
    if args.save:
        record["saved_to"] = str(save_run(plan_dir, record))
    if args.json:
        print_json(record)
    else:
        print(format_record(record, plan_dir))
    return 0 if ok else 1


def _executor(args: argparse.Namespace, plan: Plan, plan_dir: Path) -> Any:
    """The in-process executor, or with ``--ray`` the Ray one (one actor per device)."""
    if not args.ray:
        if args.restarts:
            raise RunError("--restarts applies to --ray runs only")
        return Executor(plan, plan_dir, emulate=args.emulate, measure_memory=True)
    from partitioner.distributed.executor import RayExecutor

    return RayExecutor(plan, plan_dir, address=args.ray, emulate=args.emulate,
                       restarts=args.restarts, measure_memory=True)


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.2f} MiB"


def memory_lines(record: dict[str, Any]) -> list[str]:
    """One ``memory`` line per device: measured peak (method) beside the plan's prediction."""
    if "memory" not in record:
        reason = record.get("memory_unmeasured")
        return [f"  memory           not measured: {reason}"] if reason else []
    lines = []
    for device, m in record["memory"].items():
        predicted = m.get("predicted_peak_bytes")
        line = (
            f"  memory           {device:<14} {_mib(m['peak_bytes'])} measured "
            f"({m['method']}), "
            + (f"{_mib(predicted)} predicted" if predicted is not None else "no prediction")
        )
        if m["method"] == "rss":
            line += (
                f" [prepare {_mib(m['prepare_bytes'])} + run {_mib(m['run_bytes'])}; "
                f"runtime itself {_mib(m['runtime_bytes'])}, not counted]"
            )
        lines.append(line)
    return lines


def format_record(record: dict[str, Any], plan_dir: Path) -> str:
    """Human-readable summary of a run record."""
    ms = 1e3
    warmup = record.get("warmup")
    lines = [
        f"ran {plan_dir} ({record['model']}), {record['repeat']} timed runs"
        + (f" after {warmup} warm-up run{'s' if warmup != 1 else ''}" if warmup is not None else "")
    ]
    if "ray" in record:
        hosts = ", ".join(f"{d}@{h}" for d, h in record["ray"]["hosts"].items())
        lines.append(f"  ray              {record['ray']['cluster']}: {hosts}")
    if record["emulated"]:
        lines.append("  EMULATED devices (timings are not those of the real hardware):")
        lines += [f"    {dev}: {why}" for dev, why in record["emulated"].items()]
    lines.append(
        f"  latency          {record['measured_latency_s'] * ms:.3f} ms measured (median), "
        f"{record['predicted_latency_s'] * ms:.3f} ms predicted"
    )
    if "latency_p90_s" in record:
        lines.append(
            f"  percentiles      p50 {record['latency_p50_s'] * ms:.3f} ms, "
            f"p90 {record['latency_p90_s'] * ms:.3f} ms, p99 {record['latency_p99_s'] * ms:.3f} ms"
            f" (min {record['min_latency_s'] * ms:.3f} ms)"
        )
    if "throughput_per_s" in record:
        s = record["stream"]
        lines.append(
            f"  stream           {s['inputs']} inputs: {record['throughput_per_s']:.1f} /s, "
            f"per-input latency {s['per_input_latency_median_s'] * ms:.3f} ms median"
        )
    lines.append("  partitions       measured    predicted")
    for p in record["partitions"]:
        lines.append(
            f"    p{p['index']:<3} {p['device']:<14} {p['measured_s'] * ms:8.3f} ms "
            f"{p['predicted_s'] * ms:8.3f} ms"
        )
    lines += memory_lines(record)
    if "check" in record:
        verdict = "PASSED" if record["check"]["passed"] else "FAILED"
        lines.append(
            f"  check            {verdict}: max abs error {record['max_abs_error']:.3g}, "
            f"max rel error {record['max_rel_error']:.3g} "
            f"(rtol {record['check']['rtol']}, atol {record['check']['atol']}, "
            f"{record['check'].get('tolerance_from', 'flags')})"
        )
        if "note" in record["check"]:
            lines.append(f"  why              {record['check']['note']}")
    if "saved_to" in record:
        lines.append(f"  saved            {record['saved_to']}")
    return "\n".join(lines)



def check_tolerance(plan: Plan, rtol: float | None, atol: float | None
                    ) -> tuple[float, float, str]:
    """The tolerance ``--check`` holds the plan to, and where it comes from: the flags, else
    the tolerance the plan was compiled for (``compile --tolerance``), else the defaults."""
    if rtol is not None or atol is not None:
        return (DEFAULT_RTOL if rtol is None else rtol,
                DEFAULT_ATOL if atol is None else atol, "flags")
    if plan.tolerance is not None:
        return plan.tolerance.rtol, plan.tolerance.atol, "the plan's --tolerance"
    return DEFAULT_RTOL, DEFAULT_ATOL, "defaults"


def quantization_note(plan: Plan) -> str | None:
    """Why a quantized model's check may fail on runners other than the reference's."""
    ops = sorted({p.op_type.rsplit(".", 1)[-1] for p in plan.placement.values()}
                 & set(QUANTIZING_OPS))
    runners = {d.id: d.runner for d in plan.cluster.devices}
    others = sorted({runners[p.device] for p in plan.partitions} - {"onnxruntime"})
    if not ops or not others:
        return None
    return (f"the model quantizes ({', '.join(ops)}) and {', '.join(others)} rounds quantized "
            "values differently from ONNX Runtime (the reference), so outputs may differ by "
            "quantization steps; accept a bound with compile --tolerance atol=A,rtol=R "
            "(or run --atol/--rtol)")

