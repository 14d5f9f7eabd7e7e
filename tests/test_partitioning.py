"""split_into_partitions: acyclic cuts, few calls, overlap for branches on concurrent devices."""

from __future__ import annotations

import random

from partitioner.solver.partitioning import bottom_levels, split_into_partitions

ORDER = ["a", "b1", "b2", "c1", "c2", "d"]
EDGES = [("a", "b1"), ("b1", "b2"), ("a", "c1"), ("c1", "c2"), ("b2", "d"), ("c2", "d")]
FORK = {"a": "x", "b1": "x", "b2": "x", "c1": "y", "c2": "y", "d": "x"}


def _deps(parts, edges):
    part_of = {n: p.index for p in parts for n in p.nodes}
    return {(part_of[s], part_of[d]) for s, d in edges if part_of[s] != part_of[d]}


def test_devices_sharing_a_processor_get_the_fewest_calls() -> None:
    parts = split_into_partitions(ORDER, EDGES, FORK, concurrent=lambda a, b: False)
    assert [(p.device, p.nodes) for p in parts] == [
        ("x", ("a", "b1", "b2")),
        ("y", ("c1", "c2")),
        ("x", ("d",)),
    ]


def test_fork_on_concurrent_devices_lets_both_branches_start_after_the_stem() -> None:
    parts = split_into_partitions(ORDER, EDGES, FORK, concurrent=lambda a, b: a != b)
    assert [(p.device, p.nodes) for p in parts] == [
        ("x", ("a",)),
        ("x", ("b1", "b2")),
        ("y", ("c1", "c2")),
        ("x", ("d",)),
    ]
    # Neither branch waits for the other: both read only from the stem.
    assert _deps(parts, EDGES) == {(0, 1), (0, 2), (1, 3), (2, 3)}


def test_cuts_are_acyclic_and_cover_every_node_once_on_random_dags() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 30)
        order = [f"n{i}" for i in range(n)]
        edges = [(order[j], order[i]) for i in range(1, n) for j in range(i) if rng.random() < 0.2]
        assignment = {name: rng.choice("xyz") for name in order}
        parts = split_into_partitions(order, edges, assignment, concurrent=lambda a, b: a != b,
                                      exits_first=rng.random() < 0.5)
        placed = [name for p in parts for name in p.nodes]
        assert sorted(placed) == sorted(order)
        assert all(assignment[name] == p.device for p in parts for name in p.nodes)
        assert all(src < dst for src, dst in _deps(parts, edges))  # execution order is topological


def test_priority_takes_the_higher_ready_node_first_and_cuts_after_it() -> None:
    # c1 feeds y's branch: with the higher priority it runs before b1 and ends the call.
    priority = {"a": 5.0, "b1": 2.0, "b2": 1.0, "c1": 4.0, "c2": 3.0, "d": 0.0}
    parts = split_into_partitions(["a", "b1", "b2", "c1", "c2", "d"],
                                  [("a", "b1"), ("b1", "b2"), ("a", "c1"), ("c1", "c2"),
                                   ("b2", "d"), ("c2", "d")],
                                  {"a": "x", "b1": "x", "b2": "x", "c1": "x", "c2": "y",
                                   "d": "x"},
                                  concurrent=lambda a, b: a != b, priority=priority)
    assert [(p.device, p.nodes) for p in parts] == [
        ("x", ("a", "c1")), ("x", ("b1", "b2")), ("y", ("c2",)), ("x", ("d",))]


def test_bottom_levels_add_node_times_and_hops_along_the_costliest_path() -> None:
    levels = bottom_levels(ORDER, [(s, d, 8) for s, d in EDGES], FORK,
                           node_time=lambda name: 1.0, hop_time=lambda a, b, nbytes: nbytes)
    # c1 -> c2 -> d: 1 + 1 + (8 + 1) hops to x; a's longest path goes through the y branch.
    assert levels["d"] == 1.0 and levels["c2"] == 10.0 and levels["c1"] == 11.0
    assert levels["b1"] == 3.0 and levels["a"] == 1.0 + 8.0 + 11.0


# Inception's shape: a fork whose branches each end in a node on y, and one branch kept on x.
INCEPTION_ORDER = ["a", "b1", "c1", "b2", "p2", "c2", "e", "d"]
INCEPTION_EDGES = [("a", "b1"), ("b1", "c1"), ("a", "b2"), ("b2", "p2"), ("p2", "c2"),
                   ("a", "e"), ("c1", "d"), ("c2", "d"), ("e", "d")]
INCEPTION = {"a": "x", "b1": "x", "c1": "y", "b2": "x", "p2": "x", "c2": "y", "e": "x",
             "d": "x"}


def test_exits_first_returns_every_branch_input_in_one_call() -> None:
    parts = split_into_partitions(INCEPTION_ORDER, INCEPTION_EDGES, INCEPTION,
                                  concurrent=lambda a, b: a != b, exits_first=True)
    # b2 -> p2 leads to y through x, so it runs before e; one call returns b1's and p2's
    # outputs, e overlaps with y's call, and y gets both branches in one call.
    assert [(p.device, p.nodes) for p in parts] == [
        ("x", ("a", "b1", "b2", "p2")), ("x", ("e",)), ("y", ("c1", "c2")), ("x", ("d",))]
    # Cutting at each branch instead costs x one more call.
    assert len(split_into_partitions(INCEPTION_ORDER, INCEPTION_EDGES, INCEPTION,
                                     concurrent=lambda a, b: a != b)) == 5
