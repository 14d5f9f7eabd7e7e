"""Solver quality benchmark: plan vs every baseline vs the proven bound on zoo x presets."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

CLUSTERS = ("cpu+l4", "cpu+h100", "cpu+npu", "smallgpu+cpu")
BASELINES = ("best_single", "priority_greedy", "heft", "memory_greedy", "contiguous_split")

#: Zoo models at sizes where accelerators matter (defaults are overhead-dominated toys).
MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"width": 2048, "layers": 6, "inputs": 1024, "batch": 64},
    "resnet": {"channels": 64, "image": 224},
    "inception": {"channels": 64, "image": 112},
    "gpt": {"layers": 4, "d_model": 512, "heads": 8, "seq_len": 256},
    "bert": {"layers": 4, "d_model": 512, "heads": 8, "seq_len": 256},
    "hf-gpt2": {"layers": 4, "d_model": 512, "heads": 8, "seq_len": 256},
    "hf-bert": {"layers": 4, "d_model": 512, "heads": 8, "seq_len": 256},
}
QUICK_MODELS = ("mlp", "resnet", "gpt")


def _against_baselines(report: Any) -> tuple[dict[str, Any], list[str], float | None]:
    """Baseline evaluations, the baselines the plan is worse than, and the gain over the
    best single device (None when no single device can run the model)."""
    base = {b: report.baselines[b].evaluation for b in BASELINES}
    worse = [b for b, ev in base.items()
             if ev is not None and report.objective > ev.latency_s * (1 + 1e-9)]
    single = base["best_single"]
    gain = single.latency_s / report.objective if single is not None else None
    return base, worse, gain


def run(quick: bool = False) -> str:
    """Compile zoo models for every preset and compare the plan with baselines and bound.

    Returns:
        A Markdown section with one row per (model, cluster) and geometric-mean gains.
    """
    from models.zoo import build
    from partitioner.cluster.file import load_cluster
    from partitioner.costing.table import build_cost_table
    from partitioner.graph.analysis import analyse
    from partitioner.solver import solve
    from partitioner.solver.build import build_problem

    # The zoo runs at ``hetpart compile``'s default limit, what a user gets; the synthetic
    # graphs, which only check the solver holds up, at half of it.
    time_limit = 5.0 if quick else 30.0
    jobs: list[tuple[str, Mapping[str, Any] | None, tuple[str, ...]]] = [
        (name, params, CLUSTERS) for name, params in MODELS.items()
        if not quick or name in QUICK_MODELS
    ]
    if not quick:
        jobs.append(("gpt-large", None, ("smallgpu+cpu", "cpu+h100")))
    rows = []
    gains: dict[str, list[float]] = {}
    for name, params, clusters in jobs:
        analysed = analyse(str(build(name, params)))
        for cluster_name in clusters:
            cluster = load_cluster(cluster_name)
            costs = build_cost_table(analysed, cluster)
            problem = build_problem(analysed.facts, cluster, costs)
            started = time.perf_counter()
            report = solve(problem, time_limit_s=time_limit)
            wall = time.perf_counter() - started
            base, worse, gain = _against_baselines(report)
            if gain is not None:
                gains.setdefault(cluster_name, []).append(gain)
            rows.append((name, len(analysed.facts.nodes), cluster_name, report, base, gain,
                         worse, wall))
    text = _render(rows, gains, time_limit, quick)
    short = time_limit if quick else time_limit / 3
    return (text + "\n" + _objectives_section(jobs, short) + "\n"
            + _synthetic_section(quick, time_limit if quick else time_limit / 2))


#: Cluster of the throughput and cost rows, and the cost rows' latency target as a multiple
#: of the fastest baseline's latency.
OBJECTIVES_CLUSTER = "cpu+l4"
TARGET_OVER_FASTEST = 1.2


def _objectives_section(jobs: list[tuple[str, Mapping[str, Any] | None, tuple[str, ...]]],
                        time_limit: float) -> str:
    """Throughput and cost per inference on one cluster: plan, best baseline, proven bound."""
    import dataclasses

    from models.zoo import build
    from partitioner.cluster.file import load_cluster
    from partitioner.costing.table import build_cost_table
    from partitioner.graph.analysis import analyse
    from partitioner.solver import solve
    from partitioner.solver.baselines import best_baseline, run_baselines
    from partitioner.solver.build import build_problem
    from partitioner.solver.evaluate import objective_value

    cluster = load_cluster(OBJECTIVES_CLUSTER)
    lines = [
        "### Throughput and cost per inference",
        "",
        f"The same models on `{OBJECTIVES_CLUSTER}`, time limit {time_limit:g} s. Throughput "
        "minimises the pipelined stage time (µs); cost minimises the price per 1,000 "
        f"inferences (US cents) within a latency target of {TARGET_OVER_FASTEST:g}× the "
        "fastest baseline's latency. The bound is proven by a CP-SAT relaxation that counts "
        "busy time with call levels and each tensor once per link "
        "(`partitioner/solver/models/load_relaxation.py`).",
        "",
        "| model | objective | plan | best baseline | bound | gap | status | solve s |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    gaps = []
    for name, params, _ in jobs:
        if name == "gpt-large":
            continue
        analysed = analyse(str(build(name, params)))
        latency = build_problem(analysed.facts, cluster, build_cost_table(analysed, cluster))
        fastest = min(r.evaluation.latency_s for r in run_baselines(latency).values()
                      if r.evaluation is not None)
        for objective, scale, unit in (("throughput", 1e6, "µs"), ("cost", 100.0, "¢")):
            problem = dataclasses.replace(
                latency, objective=objective,
                latency_target_s=fastest * TARGET_OVER_FASTEST if objective == "cost" else None)
            started = time.perf_counter()
            report = solve(problem, time_limit_s=time_limit)
            wall = time.perf_counter() - started
            base = best_baseline(problem, report.baselines)
            base_value = (objective_value(problem, base.evaluation)
                          if base is not None and base.evaluation is not None else None)
            gaps.append(report.gap)
            values = [_quantity(v, scale, unit)
                      for v in (report.objective, base_value, report.bound)]
            lines.append(f"| {name} | {objective} | {' | '.join(values)} | {report.gap:.1%} | "
                         f"{report.status} | {wall:.1f} |")
    within = sum(g <= 0.02 for g in gaps)
    lines += ["", f"Gap to the bound ≤ 2 %: {within}/{len(gaps)} cases.", ""]
    return "\n".join(lines)


#: (nodes, demo cluster) of the synthetic heterogeneous problems.
SYNTHETIC = ((60, "cpu+gpu"), (60, "cpu+npu"), (60, "cpu+cpu"), (400, "cpu+gpu"),
             (400, "cpu+npu"), (2000, "cpu+gpu"), (2000, "cpu+npu"))


def _synthetic_section(quick: bool, time_limit: float) -> str:
    """Random DAGs on demo clusters whose devices each win somewhere (see random_problem)."""
    from partitioner.solver import solve
    from partitioner.testing.random_problem import demo_cluster, random_problem

    lines = [
        "### Synthetic heterogeneous problems",
        "",
        "Random layered DAGs (`partitioner.testing.random_problem`, seed 0) with roofline costs "
        "on demo clusters where each device wins somewhere: `cpu+gpu` (GPU 30× the FLOP/s, "
        "lacks 5 % of ops), `cpu+npu` (lacks 25 %), `cpu+cpu` (two runners sharing one "
        "processor, one 3× faster with 17× the call overhead). Same columns as above; "
        f"time limit {time_limit:g} s.",
        "",
        "| nodes | cluster | plan µs | bound µs | gap | status | best single | "
        "priority-greedy | HEFT | memory-greedy | contiguous | gain | parts | worse than "
        "| solve s |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    gains = []
    for n, kind in SYNTHETIC[:4] if quick else SYNTHETIC:
        problem = random_problem(n, demo_cluster(kind), seed=0)
        started = time.perf_counter()
        report = solve(problem, time_limit_s=time_limit)
        wall = time.perf_counter() - started
        base, worse, gain = _against_baselines(report)
        if gain is not None:
            gains.append(gain)
        lines.append(
            f"| {n} | {kind} | {_us(report.objective)} | {_us(report.bound)} | "
            f"{report.gap:.1%} | {report.status} | "
            + " | ".join(_us(ev.latency_s if ev else None) for ev in base.values())
            + f" | {'—' if gain is None else f'{gain:.2f}×'} | "
            f"{report.evaluation.num_partitions} | {', '.join(worse) or 'none'} | {wall:.1f} |")
    lines += ["", f"Geometric-mean gain over the best single device: {_geomean(gains):.2f}× "
              f"over {len(gains)} cases.", ""]
    return "\n".join(lines)


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e6:,.1f}"


def _quantity(value: float | None, scale: float, unit: str) -> str:
    return "—" if value is None else f"{value * scale:,.4g} {unit}"


def _render(rows: list[tuple[Any, ...]], gains: dict[str, list[float]], time_limit: float,
            quick: bool) -> str:
    lines = [
        "## Solver quality (spec-sheet presets, roofline costs)",
        "",
        f"Command: `python -m partitioner.benchmarks --only solver_quality"
        f"{' --quick' if quick else ''}` (time limit {time_limit:g} s, seed 0, 2 workers). "
        "Latencies are predicted by the common evaluator in µs; `—` = baseline infeasible "
        "(unsupported ops or memory). Gain = best single device / plan. Zoo models at "
        "these sizes (`models.zoo.build(name, params)`): "
        + "; ".join(f"{name} " + ", ".join(f"{k}={v}" for k, v in params.items())
                    for name, params in MODELS.items())
        + "; gpt-large at its defaults (20 layers, d_model 1536, >2 GiB of weights). "
        "`solve s` is the wall time of the whole solve, which the time limit bounds.",
        "",
        "| model | nodes | cluster | plan µs | bound µs | gap | status | best single | "
        "priority-greedy | HEFT | memory-greedy | contiguous | gain | parts | worse than "
        "| solve s |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    gaps = []
    for name, nodes, cluster, report, base, gain, worse, wall in rows:
        gaps.append(report.gap)
        lines.append(
            f"| {name} | {nodes} | {cluster} | {_us(report.objective)} | {_us(report.bound)} | "
            f"{report.gap:.1%} | {report.status} | "
            + " | ".join(_us(ev.latency_s if ev else None) for ev in base.values())
            + f" | {'—' if gain is None else f'{gain:.2f}×'} | "
            f"{report.evaluation.num_partitions} | {', '.join(worse) or 'none'} | {wall:.1f} |")
    lines += ["", "| cluster | geometric-mean gain over best single device | cases |",
              "|---|---:|---:|"]
    everything = []
    for cluster, values in gains.items():
        everything += values
        lines.append(f"| {cluster} | {_geomean(values):.3f}× | {len(values)} |")
    if everything:
        lines.append(f"| all | {_geomean(everything):.3f}× | {len(everything)} |")
    never_worse = all(not r[6] for r in rows)
    within = sum(g <= 0.02 for g in gaps)
    lines += ["", f"Never worse than any baseline: {'yes' if never_worse else 'NO'}. "
              f"Gap to the bound ≤ 2 %: {within}/{len(gaps)} cases. The bound is proven for "
              "the evaluator's model: the best of a device-aware critical path, work per "
              "processor, a serial work bound for one-processor clusters, a load-balancing LP "
              "with precedence rows and memory rows (`partitioner/solver/bounds/cheap.py`) and the "
              "proven bound of a CP-SAT relaxation of the evaluator's schedule on the "
              "uncoarsened problem with 35 % of the time limit, solved first per segment "
              "between cut nodes and joined by a cheapest path over their devices, then on "
              "the whole graph (`partitioner/solver/models/relaxation.py`, `segments.py`). Where a "
              "device cannot hold every weight that may go there, each segment is solved per "
              "subset of its heavy nodes on it and the path keeps within its memory "
              "(`segmented.py`, `memory_budget.py`). The segments on the cheapest path are "
              "then bounded again with call slots: each device's first calls are told apart, "
              "so a node's outputs leave only when its call returns and a call opens only "
              "once all its inputs are there. Without them inception's CPU fed two "
              "accelerator branches at different times while the accelerator ran one call "
              "(cpu+l4 was proven 1,386.3 µs against the 1,440.7 µs plan). A first pass "
              "tells three calls per device apart, a second five: on smallgpu+cpu that "
              "lifts inception's first block from 1,085.7 to 1,127.1 µs (the plan's all-GPU "
              "block: 1,149.9 µs). Sharpening one inception block takes 0.3-3 s with three "
              "slots and up to 15 s with five, so at shorter limits it covers only part of "
              "the path, and one slow block can leave the next unsharpened: the bounds of "
              "these cases vary between runs. On the plan side, the evaluator also forms calls in "
              "time (a call takes only the nodes whose inputs have arrived when it starts), "
              "and small problems get kicks out of the greedy optimum (iterated local "
              "search), which finds inception's cpu+npu stem-and-branch move. "
              "gpt-large on smallgpu+cpu is memory-bound: the plan keeps the embedding, "
              "the head and a few layers' weights on the CPU with the GPU all but full. The "
              "budgeted path sees both which weights must leave the GPU and the copies and "
              "calls each switch costs, which the LP bound (weights offloaded fractionally) "
              "did not; it counts activations only as the largest single footprint, and the "
              "cheapest path it finds overflows the GPU by a few MB before it is repaired.",
              ""]
    return "\n".join(lines)


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")
