"""build_problem: graph facts to Problem, pins and forbidden devices, argument errors."""

from __future__ import annotations

import pytest

from partitioner.cluster.types import Cluster
from partitioner.costing.types import CostTable, Supported
from partitioner.errors import SolverError
from partitioner.graph.types import EdgeInfo, GraphFacts, NodeInfo
from partitioner.solver.build import build_problem
from partitioner.testing.random_problem import toy_device


def _facts() -> GraphFacts:
    def node(name: str, i: int, op: str, domain: str = "") -> NodeInfo:
        return NodeInfo(name, i, domain, op, (), (f"{name}_out",), (), 100, 10, 20,
                        weight_bytes=7 * i, signature=op)
    nodes = (node("mm", 0, "MatMul"), node("act", 1, "Relu"),
             node("q", 2, "QGemm", "com.microsoft"), node("act2", 3, "Relu"))
    edges = (EdgeInfo("mm_out", "mm", "act", 20), EdgeInfo("act_out", "act", "q", 20),
             EdgeInfo("q_out", "q", "act2", 20))
    return GraphFacts("toy", "0" * 64, nodes, edges, (), ())


CLUSTER = Cluster("toy", (toy_device("gpu"), toy_device("cpu")), (), 1e9, "cpu")


def _costs() -> CostTable:
    table = CostTable()
    for n in ("mm", "act", "q", "act2"):
        for d in ("gpu", "cpu"):
            table.set(n, d, Supported(1e-3))
    return table


def test_nodes_edges_and_sizes_carry_over() -> None:
    p = build_problem(_facts(), CLUSTER, _costs())
    assert [n.name for n in p.nodes] == ["mm", "act", "q", "act2"]
    assert p.nodes[2].op_type == "com.microsoft::QGemm"
    assert p.nodes[1].weight_bytes == 7 and p.nodes[1].output_bytes == 20
    assert [(e.src, e.dst, e.nbytes, e.tensor) for e in p.edges][0] == ("mm", "act", 20, "mm_out")


def test_pins_by_node_name_and_op_type_and_forbidden() -> None:
    p = build_problem(_facts(), CLUSTER, _costs(), pins=["Relu=cpu", "QGemm=cpu", "mm=gpu"],
                      forbidden=["com.microsoft::QGemm=gpu"])
    assert p.pins == {"act": "cpu", "act2": "cpu", "q": "cpu", "mm": "gpu"}
    assert p.forbidden == {"q": ("gpu",)}


def test_every_bad_pin_is_listed_at_once() -> None:
    with pytest.raises(SolverError) as info:
        build_problem(_facts(), CLUSTER, _costs(), pins=["nosuch=cpu", "Relu=tpu", "garbage"])
    text = str(info.value)
    assert "3 bad --pin" in text and "'nosuch'" in text and "'tpu'" in text
    assert "NODE_OR_OP_TYPE=DEVICE" in text


def test_conflicting_pins_and_bad_arguments() -> None:
    p = build_problem(_facts(), CLUSTER, _costs(), pins=["Relu=cpu", "act=gpu"])
    assert p.pins == {"act": "gpu", "act2": "cpu"}  # a node name wins over its op type
    with pytest.raises(SolverError, match="act pinned to cpu and gpu"):
        build_problem(_facts(), CLUSTER, _costs(), pins=["act=cpu", "act=gpu"])
    with pytest.raises(SolverError, match="latency target"):
        build_problem(_facts(), CLUSTER, _costs(), objective="cost")
    with pytest.raises(SolverError, match="unknown objective"):
        build_problem(_facts(), CLUSTER, _costs(), objective="speed")
    with pytest.raises(SolverError, match="max_partitions"):
        build_problem(_facts(), CLUSTER, _costs(), max_partitions=0)
