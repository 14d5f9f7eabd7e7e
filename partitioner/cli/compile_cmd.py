"""``hetpart compile``: ONNX model + cluster -> plan directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from partitioner.cli.common import (
    add_input_shape_arg,
    non_negative_float,
    non_negative_int,
    parse_device_list,
    parse_input_shapes,
    positive_float,
    positive_int,
    print_json,
    seed_int,
)
from partitioner.cli.progress import ProgressLine
from partitioner.cluster.precision import PRECISIONS
from partitioner.compiler import MEASURE_ROUNDS, Compilation, CompileOptions, compile_model
from partitioner.errors import SolverError
from partitioner.generation.compile import is_generation_model
from partitioner.generation.spec import NAMED_SPECS
from partitioner.generation.workload import OBJECTIVES as GENERATION_OBJECTIVES
from partitioner.generation.workload import WorkloadError
from partitioner.plan.codec import measurements_to_dict
from partitioner.plan.io import check_plan_target, write_plan
from partitioner.solver.baselines import evaluation_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a placement plan for a model on a cluster")
    p.add_argument("model", help="ONNX model file; for generation a decoder folder "
                   "(onnxruntime-genai or Optimum with-past) or a named config "
                   "(llama-7b, llama-70b, ...)")
    p.add_argument("--cluster", default="local", help="local, local-cores, a preset or a TOML file")
    p.add_argument(
        "--devices",
        type=parse_device_list,
        help="comma-separated device ids to restrict the cluster to",
    )
    p.add_argument(
        "--objective",
        choices=["latency", "throughput", "cost", *GENERATION_OBJECTIVES],
        help="latency (default), throughput or cost; for a decoder: ttft, tpot, tokens-per-s "
        "(default) or cost-per-mtok",
    )
    p.add_argument(
        "--workload",
        metavar="prompt=P,new=N,batch=B,context=C",
        help="generation workload of a decoder (prompt tokens, new tokens, concurrent "
        "sequences, reserved context; default context = prompt + new)",
    )
    p.add_argument("--ttft-slo", type=positive_float, metavar="MS",
                   help="generation: bound on the time to first token")
    p.add_argument("--tpot-slo", type=positive_float, metavar="MS",
                   help="generation: bound on the time per output token (the longest step)")
    p.add_argument(
        "--latency-target", type=positive_float, metavar="MS", help="latency bound (cost)"
    )
    p.add_argument(
        "--max-partitions", type=positive_int, help="upper bound on the number of partitions"
    )
    add_input_shape_arg(p)
    p.add_argument("--pin", action="append", default=[], metavar="NODE_OR_OP=DEVICE")
    p.add_argument("--forbid", action="append", default=[], metavar="NODE_OR_OP=DEVICE")
    p.add_argument(
        "--time-limit", type=positive_float, default=30.0, metavar="S", help="solver time limit"
    )
    p.add_argument(
        "--min-gain",
        type=non_negative_float,
        metavar="PCT",
        help="split across devices only for at least this gain over the best single device "
        "(default: the measured noise on clusters measured here, 0 otherwise)",
    )
    p.add_argument(
        "--measure-rounds",
        type=non_negative_int,
        default=MEASURE_ROUNDS,
        metavar="N",
        help="clusters measured here: time the plan and every single device as they run, feed "
        f"the times back and re-solve, at most N rounds (default {MEASURE_ROUNDS}; 0: off)",
    )
    p.add_argument(
        "--precision",
        metavar="P",
        help=f"allow devices computing down to this precision ({', '.join(PRECISIONS)}; "
        "default f32: lower-precision devices are left out)",
    )
    p.add_argument(
        "--tolerance",
        metavar="atol=A,rtol=R",
        help="the outputs may differ by this much: allows lower-precision devices, recorded "
        "in the plan",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="CP-SAT random seed")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="CP-SAT search workers (default 2; 1 for generation plans, whose "
                        "placement one LP-driven worker proves fastest)")
    p.add_argument("-o", "--output", required=True, metavar="PLAN_DIR")
    p.add_argument("--force", action="store_true", help="replace an existing plan directory")
    p.add_argument(
        "--annotate",
        action="store_true",
        help="also write annotated.onnx: the whole model with per-node device/partition metadata",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # A decoder folder or a named config plans generation; a decoder's model.onnx given
    # alone still compiles as one pass unless --workload asks for generation.
    if is_generation_model(args.model) and (
            args.model in NAMED_SPECS or Path(args.model).is_dir() or args.workload):
        from partitioner.cli.generation_compile import run_generation

        return run_generation(args)
    for flag, value in (("--workload", args.workload), ("--ttft-slo", args.ttft_slo),
                        ("--tpot-slo", args.tpot_slo)):
        if value is not None:
            raise WorkloadError(f"{flag} applies to a decoder folder or a named decoder config "
                                f"({', '.join(sorted(NAMED_SPECS))}); {args.model} is neither")
    if args.objective in GENERATION_OBJECTIVES:
        raise WorkloadError(f"--objective {args.objective} applies to a decoder folder or a "
                            f"named decoder config; {args.model} is neither")
    args.objective = args.objective or "latency"
    if args.objective == "cost" and args.latency_target is None:
        raise SolverError("--objective cost needs --latency-target MS")
    if args.objective != "cost" and args.latency_target is not None:
        raise SolverError(
            f"--latency-target applies only to --objective cost (got --objective {args.objective})"
        )
    plan_dir = Path(args.output)
    check_plan_target(plan_dir, overwrite=args.force)  # before minutes of profiling, not after
    costing = ProgressLine("profiling", args.quiet or args.json)
    solving = ProgressLine("solving", args.quiet or args.json)
    options = CompileOptions(
        objective=args.objective,
        devices=args.devices,
        input_shapes=parse_input_shapes(args.input_shape),
        pins=args.pin,
        forbidden=args.forbid,
        latency_target_s=args.latency_target / 1e3 if args.latency_target else None,
        max_partitions=args.max_partitions,
        time_limit_s=args.time_limit,
        min_gain=args.min_gain / 100 if args.min_gain is not None else None,
        seed=args.seed,
        workers=args.workers or 2,
        measure_rounds=args.measure_rounds,
        precision=args.precision,
        tolerance=args.tolerance,
    )
    result = compile_model(
        args.model, args.cluster, options,
        progress=solving.solver(), cost_progress=costing.counter(),
    )
    costing.done()
    solving.done()
    write_plan(result.plan, result.analysed, plan_dir, overwrite=args.force, annotate=args.annotate)
    summary = summarise(result)
    if args.json:
        print_json({**summary, "plan_dir": str(plan_dir)})
    else:
        print(format_summary(summary, plan_dir))
    return 0


def summarise(result: Compilation) -> dict[str, Any]:
    """The compile summary as plain data (the ``--json`` object)."""
    report, ev = result.report, result.report.evaluation
    used = sorted({d for d in report.assignment.values()})
    return {
        "model": result.analysed.facts.model_name,
        "cluster": result.cluster.name,
        "objective": result.problem.objective,
        "status": report.status,
        "objective_value": report.objective,
        "bound": report.bound,
        "gap": report.gap,
        "solve_time_s": report.solve_time_s,
        "time_limit_s": report.time_limit_s,
        "clock_stopped": report.clock_stopped,
        "clock_stopped_stages": list(report.clock_stopped_stages),
        "seed": report.seed,
        "workers": report.workers,
        "predicted_latency_s": ev.latency_s,
        "predicted_stage_s": ev.stage_s,
        "cost_per_1k": ev.cost_per_1k,
        "energy_j": ev.energy_j,
        "num_partitions": ev.num_partitions,
        "devices_used": used,
        "notes": list(result.notes),
        "tolerance": (None if result.plan.tolerance is None
                      else {"atol": result.plan.tolerance.atol,
                            "rtol": result.plan.tolerance.rtol}),
        **_baseline_summary(result),
        "measured": (measurements_to_dict(result.plan.measured)
                     if result.plan.measured is not None else None),
    }


def _baseline_summary(result: Compilation) -> dict[str, dict[str, Any]]:
    """Each baseline's predicted latency, stage time and price, and why it is infeasible.

    A baseline that built a complete placement but misses the latency target, memory or
    ``max_partitions`` still has numbers (``baselines.evaluation_of``).
    """
    latency: dict[str, float | None] = {}
    stage: dict[str, float | None] = {}
    price: dict[str, float | None] = {}
    infeasible: dict[str, str] = {}
    for name, b in sorted(result.report.baselines.items()):
        if b.evaluation is None:
            infeasible[name] = b.note or "no feasible placement"
        ev = evaluation_of(result.problem, b)
        latency[name] = ev.latency_s if ev else None
        stage[name] = ev.stage_s if ev else None
        price[name] = ev.cost_per_1k if ev else None
    return {
        "baselines": latency,
        "baseline_stage_s": stage,
        "baseline_cost_per_1k": price,
        "baselines_infeasible": infeasible,
    }


def format_summary(summary: dict[str, Any], plan_dir: Path) -> str:
    """The compile summary for a terminal; the bound is in the objective's own unit."""
    ms = "{:.3f} ms".format
    bound_fmt = (lambda v: f"{v:.4g} per 1k") if summary["objective"] == "cost" else (
        lambda v: ms(v * 1e3)
    )
    lines = [
        f"plan written to {plan_dir}",
        f"  objective        {summary['objective']} ({summary['status']})",
        f"  predicted        {ms(summary['predicted_latency_s'] * 1e3)} latency, "
        f"{ms(summary['predicted_stage_s'] * 1e3)} stage, "
        f"{summary['cost_per_1k']:.4g} per 1k inferences, {summary['energy_j']:.3g} J each",
        f"  proven bound     {bound_fmt(summary['bound'])} "
        f"on {bound_fmt(summary['objective_value'])} "
        f"(gap {summary['gap']:.2%}, solved in {summary['solve_time_s']:.2f} s)",
        f"  partitions       {summary['num_partitions']} on {', '.join(summary['devices_used'])}",
    ]
    tolerance = summary.get("tolerance")
    if tolerance:
        lines.append(f"  tolerance        atol={tolerance['atol']:g}, rtol={tolerance['rtol']:g} "
                     "(recorded in the plan)")
    for note in summary.get("notes", ()):
        lines.append(f"  note             {note}")
    if summary["clock_stopped"]:
        stages = ", ".join(summary["clock_stopped_stages"]) or "a solver stage"
        lines.append(f"  note             the clock ended {stages} early (a slow or busy "
                     "machine): a rerun may give another plan")
    measured = summary.get("measured")
    if measured:
        lines.append("  measured at compile (median, p10-p90; predicted before measuring):")
        for c in (*measured["singles"], *measured["rounds"]):
            m = c["measured"]
            label = c["name"] + ("" if c["round"] is None else f" ({c['partitions']} parts)")
            cached = "  cached" if c.get("cached") else ""
            lines.append(f"    {label:<22} {ms(m['median_s'] * 1e3)} "
                         f"({m['p10_s'] * 1e3:.3f}-{m['p90_s'] * 1e3:.3f}), predicted "
                         f"{ms(c['predicted_s'] * 1e3)}{cached}")
        lines.append(f"  chosen           {measured['chosen']}: {measured['note']}")
    objective = summary["objective"]
    extra = {"throughput": "stage time", "cost": "price"}.get(objective)
    lines.append(f"  baselines (predicted latency{', ' + extra if extra else ''}):")
    for name, latency in summary["baselines"].items():
        if latency is None:
            shown = "no placement"
        else:
            shown = ms(latency * 1e3)
            stage = summary["baseline_stage_s"][name]
            price = summary["baseline_cost_per_1k"][name]
            if objective == "throughput" and stage is not None:
                shown += f" latency, {ms(stage * 1e3)} stage"
            elif objective == "cost" and price is not None:
                shown += f" latency, {price:.4g} per 1k"
        why = summary["baselines_infeasible"].get(name)
        lines.append(f"    {name:<22} {shown}" + (f"  (infeasible: {why})" if why else ""))
    return "\n".join(lines)
