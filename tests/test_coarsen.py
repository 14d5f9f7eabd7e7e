"""Coarsening: group counts, support-respecting groups, acyclic quotient, solving at scale."""

from __future__ import annotations

from collections import Counter

import pytest

from models.zoo import build
from partitioner.cluster.file import load_cluster
from partitioner.costing.table import build_cost_table
from partitioner.graph.analysis import analyse
from partitioner.solver import DEFAULT_GROUP_TARGET, solve
from partitioner.solver.baselines import best_baseline
from partitioner.solver.build import build_problem
from partitioner.solver.coarsen import coarsen
from partitioner.solver.index import index_of
from partitioner.testing.random_problem import demo_cluster, random_problem


def test_small_problems_are_not_coarsened() -> None:
    assert coarsen(random_problem(50, demo_cluster(), seed=1), target=100) is None


def test_pure_groups_share_their_members_support() -> None:
    p = random_problem(3000, demo_cluster("cpu+gpu"), seed=2, unsupported_rate=0.002)
    c = coarsen(p, target=150)
    assert c is not None and len(c.groups) <= 300
    idx, cidx = index_of(p), index_of(c.problem)
    for g, name in enumerate(cidx.names):
        for m in c.groups[name]:
            assert cidx.allowed[g] == idx.allowed[idx.pos[m]]


def test_mixed_groups_cover_every_node_once_and_expand_to_allowed_devices() -> None:
    p = random_problem(3000, demo_cluster("cpu+npu"), seed=2)
    c = coarsen(p, target=150)
    assert c is not None
    members = [m for ms in c.groups.values() for m in ms]
    assert sorted(members) == sorted(n.name for n in p.nodes)
    idx, cidx = index_of(p), index_of(c.problem)
    for k in range(len(idx.devices)):
        dev = [k if k in cidx.allowed[g] else cidx.allowed[g][0] for g in range(len(cidx.names))]
        full = c.expand(dev)
        assert all(full[i] in idx.allowed[i] for i in range(len(idx.names)))
    # quotient graph is acyclic: groups are listed in a topological order
    pos = {name: g for g, name in enumerate(cidx.names)}
    assert all(pos[e.src] < pos[e.dst] for e in c.problem.edges)
    assert len(cidx.names) < len(idx.names) / 5


def test_costs_of_a_group_are_the_sum_of_its_members() -> None:
    p = random_problem(800, demo_cluster("cpu+gpu"), seed=4, unsupported_rate=0.0)
    c = coarsen(p, target=40)
    assert c is not None and len(c.groups) <= 40
    idx, cidx = index_of(p), index_of(c.problem)
    for g, name in enumerate(cidx.names):
        total = sum(idx.cost[idx.pos[m]][0] for m in c.groups[name])
        assert abs((cidx.cost[g][0] or 0.0) - total) < 1e-12


def test_large_problem_solves_and_beats_or_ties_baselines() -> None:
    p = random_problem(5000, demo_cluster("cpu+gpu"), seed=5)
    report = solve(p, time_limit_s=3)
    assert len(report.assignment) == 5000
    assert report.groups and sum(len(m) for m in report.groups.values()) == 5000
    base = best_baseline(p, report.baselines)
    assert base is not None and report.objective <= base.evaluation.latency_s + 1e-12
    assert 0 <= report.bound <= report.objective


@pytest.mark.parametrize("cluster_name", ["cpu+l4", "cpu+npu"])
def test_repeated_transformer_blocks_coarsen_alike(cluster_name: str) -> None:
    """A 12-layer gpt (376 nodes) is cut into the same groups in every layer: nearly every
    node sits in a group whose sequence of ops recurs in every layer, also on an NPU that
    lacks some of the ops (mixed groups)."""
    layers = 12
    analysed = analyse(str(build("gpt", {"layers": layers})))
    cluster = load_cluster(cluster_name)
    problem = build_problem(analysed.facts, cluster, build_cost_table(analysed, cluster))
    coarse = coarsen(problem, DEFAULT_GROUP_TARGET)
    assert coarse is not None and len(coarse.groups) <= DEFAULT_GROUP_TARGET
    op = {n.name: n.op_type for n in problem.nodes}
    shapes = Counter(tuple(op[m] for m in members) for members in coarse.groups.values())
    per_layer = sum(len(shape) * count for shape, count in shapes.items()
                    if count >= layers)
    assert per_layer >= 0.95 * len(problem.nodes)
