"""Roofline cost model: latencies computed by hand, op support as data with reasons."""

from __future__ import annotations

import pytest

from cost_models.roofline import (
    MEMORY_EFFICIENCY,
    TENSOR_EFFICIENCY,
    VECTOR_EFFICIENCY,
    RooflineCostModel,
    create,
)
from partitioner.cluster.file import load_cluster
from partitioner.cluster.types import DeviceSpec
from partitioner.costing.types import Supported, Unsupported
from partitioner.errors import CostModelError
from partitioner.graph.types import GraphFacts, NodeInfo, TensorInfo


def node(op: str, flops: int, read: int, written: int, domain: str = "") -> NodeInfo:
    return NodeInfo(name=f"n_{op}", index=0, domain=domain, op_type=op, inputs=("x",),
                    outputs=(f"y_{op}",), weights=(), flops=flops, bytes_read=read,
                    bytes_written=written, weight_bytes=0, signature=f"sig-{op}")


DEV = DeviceSpec("d", "gpu", "onnxruntime", 2**30, {"float32": 1e12, "float16": 8e12}, 1e11)


class FakeModel:
    """Just enough of AnalysedModel for dtype lookup: ``.facts.tensors``."""

    def __init__(self, dtype: str, *names: str) -> None:
        tensors = {n: TensorInfo(n, (4,), dtype, 16) for n in names}
        self.facts = GraphFacts("m", "sha", (), (), (), (), tensors)


def test_compute_bound_matmul_by_hand() -> None:
    cost = RooflineCostModel().estimate(None, node("MatMul", 2_000_000_000, 10**6, 10**6), DEV)
    assert isinstance(cost, Supported)
    assert cost.latency_s == pytest.approx(2e9 / (1e12 * TENSOR_EFFICIENCY))
    assert cost.memory_bytes == 10**6 and cost.source == "roofline"


def test_fp16_matmul_uses_fp16_peak() -> None:
    n = node("MatMul", 2_000_000_000, 10**6, 10**6)
    cost = RooflineCostModel().estimate(FakeModel("float16", "y_MatMul"), n, DEV)
    assert cost.latency_s == pytest.approx(2e9 / (8e12 * TENSOR_EFFICIENCY))


def test_memory_bound_add_by_hand() -> None:
    cost = RooflineCostModel().estimate(None, node("Add", 10**6, 8 * 10**6, 4 * 10**6), DEV)
    assert cost.latency_s == pytest.approx(12e6 / (1e11 * MEMORY_EFFICIENCY))
    assert cost.memory_bytes == 0


def test_vector_op_compute_roof_uses_fp32_peak() -> None:
    cost = RooflineCostModel().estimate(None, node("Erf", 10**10, 8, 8), DEV)
    assert cost.latency_s == pytest.approx(1e10 / (1e12 * VECTOR_EFFICIENCY))


def test_view_ops_are_free() -> None:
    assert RooflineCostModel().estimate(None, node("Reshape", 0, 10**9, 10**9), DEV).latency_s == 0


def test_npu_class_table_and_device_list() -> None:
    npu = load_cluster("cpu+npu").device("npu")
    model = RooflineCostModel()
    for op in ("Softmax", "LayerNormalization", "Erf"):
        cost = model.estimate(None, node(op, 10, 10, 10), npu)
        assert isinstance(cost, Unsupported) and "npu" in cost.reason
    assert "control flow" in model.estimate(None, node("Loop", 1, 1, 1), npu).reason
    assert isinstance(model.estimate(None, node("Conv", 10, 10, 10), npu), Supported)


def test_custom_domain_only_on_onnxruntime() -> None:
    ms = node("FusedMatMul", 100, 100, 100, domain="com.microsoft")
    ov = DeviceSpec("ov", "cpu", "openvino", 2**30, {"float32": 1e11}, 1e10)
    cost = RooflineCostModel().estimate(None, ms, ov)
    assert isinstance(cost, Unsupported)
    assert "com.microsoft::FusedMatMul runs only on ONNX Runtime" in cost.reason
    assert isinstance(RooflineCostModel().estimate(None, ms, DEV), Supported)


def test_create_rejects_options() -> None:
    assert create().name == "roofline"
    with pytest.raises(CostModelError, match="no options"):
        create(efficiency=0.5)
