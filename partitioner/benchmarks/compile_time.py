"""Compile-time benchmark: build_problem + baselines + coarsening + CP-SAT + evaluation vs size."""

from __future__ import annotations

import time
from typing import Any

#: (nodes, CP-SAT time limit in seconds, goal for the whole compile step in seconds or None)
SIZES = ((1_000, 3.0, None), (5_000, 3.0, 10.0), (20_000, 8.0, None), (100_000, 15.0, 60.0))
QUICK_SIZES = ((1_000, 2.0, None), (5_000, 3.0, 10.0))
ZOO = ("mlp", "resnet", "inception", "gpt", "bert")
CLUSTER = "cpu+l4"


def run(quick: bool = False) -> str:
    """Time the solver pipeline on synthetic graphs and zoo models.

    Analysis and costing are done first and not timed (they are benchmarked elsewhere); the
    timed step is ``build_problem`` + ``solve`` (which runs the baselines, coarsening, CP-SAT,
    evaluation of every candidate and local refinement).

    Returns:
        A Markdown section with one row per graph.
    """
    from models.synthetic import synthetic
    from models.zoo import build
    from partitioner.analysis import analyse

    rows = []
    for n, limit, goal in QUICK_SIZES if quick else SIZES:
        analysed = analyse(synthetic(n, "random", 0))
        rows.append(_time_one(f"synthetic random {n}", analysed, limit, goal))
    for name in ZOO[:2] if quick else ZOO:
        rows.append(_time_one(name, analyse(str(build(name))), 3.0, None))
    return _render(rows, quick)


def _time_one(label: str, analysed: Any, limit: float, goal: float | None) -> dict[str, Any]:
    from partitioner.cluster_file import load_cluster
    from partitioner.costing import build_cost_table
    from partitioner.solver import solve
    from partitioner.solver.problem_builder import build_problem

    cluster = load_cluster(CLUSTER)
    costs = build_cost_table(analysed, cluster)
    t0 = time.perf_counter()
    problem = build_problem(analysed.facts, cluster, costs)
    t1 = time.perf_counter()
    report = solve(problem, time_limit_s=limit)
    t2 = time.perf_counter()
    best = min((r.evaluation.latency_s for r in report.baselines.values() if r.evaluation),
               default=None)
    return {
        "label": label, "nodes": len(analysed.facts.nodes), "edges": len(analysed.facts.edges),
        "groups": len(report.groups) or len(analysed.facts.nodes), "limit": limit,
        "build": t1 - t0, "solve": t2 - t1, "total": t2 - t0, "goal": goal,
        "status": report.status, "gap": report.gap, "objective": report.objective,
        "best_baseline": best,
    }


def _render(rows: list[dict[str, Any]], quick: bool) -> str:
    lines = [
        "## Compile time vs graph size",
        "",
        f"Command: `python -m partitioner.benchmarks --only compile_time"
        f"{' --quick' if quick else ''}`; cluster `{CLUSTER}` with roofline costs, seed 0, "
        "2 workers. Timed: `build_problem` + `solve` (baselines, coarsening, CP-SAT, evaluation "
        "of every candidate, local refinement); analysis and costing are not included. "
        "CP-SAT sees the groups column.",
        "",
        "| graph | nodes | edges | groups | CP-SAT limit s | build s | solve s | total s | goal | "
        "status | gap | plan / best baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        goal = "—" if r["goal"] is None else (
            f"≤ {r['goal']:g} s {'met' if r['total'] <= r['goal'] else 'MISSED'}")
        ratio = "—" if not r["best_baseline"] else f"{r['objective'] / r['best_baseline']:.3f}"
        lines.append(
            f"| {r['label']} | {r['nodes']:,} | {r['edges']:,} | {r['groups']:,} | "
            f"{r['limit']:g} | {r['build']:.2f} | {r['solve']:.2f} | {r['total']:.2f} | {goal} | "
            f"{r['status']} | {r['gap']:.1%} | {ratio} |")
    lines.append("")
    return "\n".join(lines)
