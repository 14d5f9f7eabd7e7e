"""ONNX backend node tests through partitioned execution (alternating two-device placement)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from partitioner.testing.onnx_backend import (
    REPRESENTATIVE_MODULES,
    PartitionedBackend,
    failure_kinds,
    node_test_pass_rate,
)


def test_node_test_subset_passes_partitioned() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = node_test_pass_rate([r"^test_"], modules=REPRESENTATIVE_MODULES)
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


def _model(nodes, inputs, outputs, opset=17, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_empty_dimension_and_scalar_inputs_run_partitioned() -> None:
    """Size-0 dims are concrete, given in the model or fed (Trilu with k a scalar)."""
    model = _model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Trilu", ["r", "k"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 0, 5]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 0, 5])],
        opset=14,
    )
    rep = PartitionedBackend.prepare(model)
    x = np.zeros((3, 0, 5), np.float32)
    (y,) = rep.run([x, np.array(1, np.int64)])
    assert y.shape == (3, 0, 5)
    assert rep.num_partitions == 2


def test_value_dependent_shape_is_compiled_from_the_fed_values() -> None:
    """Reshape to a shape read from an input: the plan is compiled for the values fed.

    Compiling is deferred to ``run`` (zeros cannot stand in for ``s``); the scalar ``b`` fed
    then must keep rank 0 rather than become an input of unknown rank.
    """
    model = _model(
        [
            helper.make_node("Reshape", ["x", "s"], ["r"]),
            helper.make_node("Add", ["r", "b"], ["a"]),
            helper.make_node("Neg", ["a"], ["y"]),
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", "n"])],
    )
    rep = PartitionedBackend.prepare(model)
    x = np.arange(-3, 3, dtype=np.float32)
    b = np.array(0.5, np.float32)
    for shape in ((2, 3), (3, 2)):
        s = np.array(shape, np.int64)
        (y,) = rep.run([x, s, b])
        np.testing.assert_array_equal(y, _ort(model, {"x": x, "s": s, "b": b})[0])
    assert rep.num_partitions == 3


def _sequence_model() -> onnx.ModelProto:
    idx = helper.make_tensor("idx", TensorProto.INT64, [], [1])
    return _model(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("SplitToSequence", ["r"], ["seq"], axis=0, keepdims=0),
            helper.make_node("SequenceAt", ["seq", "idx"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits=[idx],
    )


def test_partitions_with_sequence_boundaries_load_and_chain_in_ort() -> None:
    """Extracted partitions keep sequence types at their boundaries (ORT refused tensor ones)."""
    from partitioner.graph.analysis import analyse
    from partitioner.plan.assign import plan_from_assignment
    from partitioner.plan.extract import PartitionExtractor
    from partitioner.testing.onnx_backend import DEVICE_IDS, local_pair

    analysed = analyse(_sequence_model())
    assignment = {n.name: DEVICE_IDS[i % 2] for i, n in enumerate(analysed.facts.nodes)}
    plan = plan_from_assignment(analysed, local_pair(), assignment)
    assert len(plan.partitions) == 3
    extractor = PartitionExtractor(analysed.model)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    values = {"x": x}
    for part in plan.partitions:
        proto = extractor.extract_proto(part)
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = sess.run(None, {i.name: values[i.name] for i in sess.get_inputs()})
        values.update(zip([o.name for o in sess.get_outputs()], outs, strict=True))
    assert isinstance(values["seq"], list)
    np.testing.assert_array_equal(values["y"], np.maximum(x[1], 0))
