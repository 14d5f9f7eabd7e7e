"""Infeasibility diagnosis: facts that prove no placement exists, as one line per fact.

Checked before solving (cheap, definite): nodes no device may run (with each device's reason:
unsupported op, forbidden, pinned elsewhere), and per-device memory needed at least by the
nodes that can only run there (their weights plus the largest workspace) against capacity,
plus total weights against total capacity. After solving, ``explain_no_plan`` turns the
baselines' notes and the target into a diagnosis when no candidate was acceptable.
"""

from __future__ import annotations

from partitioner.costs import Unsupported
from partitioner.errors import InfeasibleError
from partitioner.problem import BaselineResult, Problem
from partitioner.solver.index import index_of

#: Nodes listed individually in a diagnosis before summarising the rest.
MAX_LISTED = 10


def check_feasible(problem: Problem) -> None:
    """Raise InfeasibleError if a cheap check proves the problem infeasible.

    Raises:
        InfeasibleError: First line a summary, then one line per fact.
    """
    facts = find_facts(problem)
    if facts:
        raise InfeasibleError(
            f"no placement exists: {len(facts)} problem(s) found\n" + "\n".join(facts))


def find_facts(problem: Problem) -> list[str]:
    """Every definite reason why ``problem`` has no placement (empty when none found)."""
    idx = index_of(problem)
    facts: list[str] = []
    stranded = [i for i in range(len(idx.names)) if not idx.allowed[i]]
    for i in stranded[:MAX_LISTED]:
        name = idx.names[i]
        reasons = []
        for dev in idx.devices:
            cost = problem.costs.get(name, dev)
            pinned = problem.pins.get(name)
            if isinstance(cost, Unsupported):
                why = cost.reason
                if pinned == dev:
                    why = f"pinned here but unsupported: {why}"
            elif dev in problem.forbidden.get(name, ()):
                why = "forbidden by the user"
            else:
                why = f"node is pinned to {pinned}"
            reasons.append(f"{dev}: {why}")
        op = problem.nodes[i].op_type
        facts.append(f"node {name} ({op}) cannot run on any device — " + "; ".join(reasons))
    if len(stranded) > MAX_LISTED:
        facts.append(f"... and {len(stranded) - MAX_LISTED} more node(s) no device can run")
    cluster = problem.cluster
    for k, spec in enumerate(cluster.devices):
        forced = [i for i in range(len(idx.names)) if idx.allowed[i] == [k]]
        if not forced:
            continue
        need = sum(idx.weights[i] for i in forced) + max(idx.workspace[i][k] for i in forced)
        if need > spec.memory_bytes:
            facts.append(
                f"device {spec.id} needs at least {need} bytes (weights and workspace of "
                f"{len(forced)} node(s) only it may run, e.g. {idx.names[forced[0]]}) "
                f"but has {spec.memory_bytes}")
    total_weights = sum(idx.weights)
    capacity = sum(d.memory_bytes for d in cluster.devices)
    if total_weights > capacity:
        facts.append(f"the model's weights need {total_weights} bytes but all devices together "
                     f"have {capacity}")
    for i in range(len(idx.names)):
        fits = [k for k in idx.allowed[i]
                if idx.weights[i] + idx.workspace[i][k] <= cluster.devices[k].memory_bytes]
        if idx.allowed[i] and not fits:
            facts.append(f"node {idx.names[i]} needs {idx.weights[i]} bytes of weights plus "
                         f"workspace, more than any device that may run it has")
            break
    return facts


def explain_no_plan(problem: Problem, baselines: dict[str, BaselineResult],
                    fastest_latency_s: float | None) -> InfeasibleError:
    """Build the InfeasibleError raised when neither the solver nor a baseline is acceptable.

    Args:
        problem: The problem.
        baselines: Baseline results (their notes say why each is infeasible).
        fastest_latency_s: Lowest latency of any placement tried, acceptable or not.
    """
    target = problem.latency_target_s
    if problem.objective == "cost" and target is not None and fastest_latency_s is not None \
            and fastest_latency_s > target:
        summary = (f"latency target {target:.6g} s cannot be met: the fastest placement found "
                   f"takes {fastest_latency_s:.6g} s")
    else:
        summary = "no feasible placement found (memory or max_partitions)"
    lines = [f"{name}: {res.note}" for name, res in baselines.items()
             if res.evaluation is None and res.note]
    return InfeasibleError("\n".join([summary, *lines]))
