"""ONNX backend node tests through partitioned execution (alternating two-device placement)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from partitioner.onnx_backend import PartitionedBackend, failure_kinds, node_test_pass_rate

#: A representative subset of node-test modules: elementwise, matmul/gemm, pooling, shape ops,
#: multi-node function expansions (softmax, layer norm, gelu, mish) and control flow (If, Loop,
#: Range's Loop expansion). Sequence/optional-typed tests (``*_seq``, ``*_opt``) are left out:
#: plan boundaries are tensors. The full run is in the execution benchmark.
MODULES = (
    "abs",
    "relu",
    "add",
    "matmul",
    "gemm",
    "softmax",
    "layernormalization",
    "gelu",
    "concat",
    "gather",
    "transpose",
    "clip",
    "rangeop",
    "if_",
    "loop",
    "where",
    "maxpool",
    "mish",
    "hardswish",
    "batch_normalization",
)
TENSOR_TESTS = r"^test_(?!.*(_seq|_opt)$)"


def test_node_test_subset_passes_partitioned() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = node_test_pass_rate([TENSOR_TESTS], modules=MODULES)
    assert result.selected >= 150
    assert result.ort_passed >= 150
    assert result.failures == {}, failure_kinds(result.failures)
    assert result.rate == 1.0
    assert result.multi_partition >= 20  # function expansions really cross devices


def _chain_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="n0"),
        helper.make_node("Neg", ["a"], ["b"], name="n1"),
        helper.make_node("Exp", ["b"], ["c"], name="n2"),
        helper.make_node("Mul", ["c", "x"], ["y"], name="n3"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def test_backend_really_alternates_devices() -> None:
    model = _chain_model()
    rep = PartitionedBackend.prepare(model)
    plan = rep.executor.plan
    assert rep.num_partitions == 4
    assert [p.device for p in plan.partitions] == ["cpu0", "cpu1", "cpu0", "cpu1"]
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    (y,) = rep.run([x])
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    (y2,) = PartitionedBackend.run_model(model, {"x": x})
    np.testing.assert_array_equal(y, y2)
    assert PartitionedBackend.supports_device("CPU")
    assert not PartitionedBackend.supports_device("CUDA")
