"""Series decomposition at cut nodes (``partitioner.solver.bounds.segments``)."""

from __future__ import annotations

from partitioner.costing.types import Supported
from partitioner.solver.bounds.segments import Segment, cut_nodes, segment_problem, segments
from partitioner.solver.index import index_of
from partitioner.testing.random_problem import toy_device, toy_problem

MS = 1e-3
# s -> (a1 | b1) -> j1 -> (a2 | b2) -> j2 -> t, plus a residual edge s -> j2 over j1.
NODES = ["s", "a1", "b1", "j1", "a2", "b2", "j2", "t"]
EDGES = [("s", "a1", 8), ("s", "b1", 8), ("a1", "j1", 8), ("b1", "j1", 8), ("j1", "a2", 8),
         ("j1", "b2", 8), ("a2", "j2", 8), ("b2", "j2", 8), ("s", "j2", 8), ("j2", "t", 8)]


def _problem():
    costs = {n: {"x": 1 * MS, "y": 2 * MS} for n in NODES}
    return toy_problem(costs, EDGES, (toy_device("x"), toy_device("y")))


def test_cut_nodes_are_those_every_other_node_reaches_or_comes_from() -> None:
    idx = index_of(_problem())
    assert [idx.names[i] for i in cut_nodes(idx)] == ["s", "j1", "j2", "t"]


def test_segments_end_at_cut_nodes_and_merge_up_to_the_minimum_size() -> None:
    idx = index_of(_problem())
    assert segments(idx, 1) == [Segment(None, (0,), 0), Segment(0, (1, 2, 3), 3),
                                Segment(3, (4, 5, 6), 6), Segment(6, (7,), 7)]
    # Three nodes at least: the lone source joins the first fork, the lone tail the last.
    assert segments(idx, 3) == [Segment(None, (0, 1, 2, 3), 3), Segment(3, (4, 5, 6, 7), None)]
    assert segments(idx, 8) == [Segment(None, tuple(range(8)), 7)]


def test_segment_problem_starts_at_the_source_on_its_device_and_pins_the_sink() -> None:
    problem = _problem()
    idx = index_of(problem)
    sub = segment_problem(problem, idx, Segment(3, (4, 5, 6), 6), idx.dev_pos["y"],
                          idx.dev_pos["x"])
    assert [n.name for n in sub.nodes] == ["j1", "a2", "b2", "j2"]
    assert sub.costs.get("j1", "y") == Supported(0.0, 0)
    assert not isinstance(sub.costs.get("j1", "x"), Supported)
    assert sub.pins == {"j1": "y", "j2": "x"}
    # The residual edge s -> j2 jumps over j1: dropped with s.
    assert {(e.src, e.dst) for e in sub.edges} == {("j1", "a2"), ("j1", "b2"), ("a2", "j2"),
                                                   ("b2", "j2")}
