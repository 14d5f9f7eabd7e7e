"""Analysis of edge-case value types: empty (size-0) dims, scalars, sequences and optionals."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from partitioner.errors import ShapeError
from partitioner.graph.analysis import analyse

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def _model(nodes, inputs, outputs, opset=17):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _empty_dim_model():
    return _model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])],
        [helper.make_tensor_value_info("x", F, [2, 0, 4])],
        [helper.make_tensor_value_info("y", F, [2, 0, 4])],
    )


def test_declared_zero_dimension_is_concrete() -> None:
    a = analyse(_empty_dim_model())
    assert a.facts.inputs[0].shape == (2, 0, 4)
    assert a.facts.tensors["r"].shape == (2, 0, 4)
    assert a.facts.tensors["r"].nbytes == 0


def test_zero_dimension_given_through_input_shapes() -> None:
    model = _empty_dim_model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "n"
    a = analyse(model, {"x": (2, 0, 4)})
    assert a.facts.tensors["r"].shape == (2, 0, 4)


def test_scalar_given_through_input_shapes_keeps_rank_zero() -> None:
    model = _model(
        [helper.make_node("Neg", ["k"], ["y"])],
        [helper.make_tensor_value_info("k", I64, None)],  # unknown rank in the model
        [helper.make_tensor_value_info("y", I64, None)],
    )
    a = analyse(model, {"k": ()})
    assert a.facts.inputs[0].shape == ()
    assert a.facts.outputs[0].shape == ()
    assert a.model.graph.input[0].type.tensor_type.HasField("shape")


def _seq_type(elem=F, shape=None):
    return helper.make_sequence_type_proto(helper.make_tensor_type_proto(elem, shape))


def _split_sequence_model():
    """x -> Relu -> SplitToSequence -> SequenceAt(0) -> Neg: a sequence between two nodes."""
    idx = helper.make_tensor("idx", I64, [], [0])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("SplitToSequence", ["r"], ["seq"], axis=0),
        helper.make_node("SequenceAt", ["seq", "idx"], ["first"]),
        helper.make_node("Neg", ["first"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, [3, 4])],
        [helper.make_tensor_value_info("y", F, None)], [idx],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def test_sequence_values_keep_their_type() -> None:
    a = analyse(_split_sequence_model())
    types = {vi.name: vi.type for vi in a.model.graph.value_info}
    assert types["seq"].HasField("sequence_type")
    assert a.facts.tensors["seq"].dtype == "sequence(float32)"
    assert a.facts.tensors["seq"].nbytes == 0
    assert a.facts.tensors["y"].shape == (1, 4)  # keepdims=1
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    sess = ort.InferenceSession(a.model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], -np.maximum(x[:1], 0))


def test_sequence_graph_input_and_output_keep_their_type() -> None:
    model = _model(
        [helper.make_node("SequenceInsert", ["s", "t"], ["out"])],
        [helper.make_value_info("s", _seq_type(I64)), helper.make_tensor_value_info("t", I64, [3])],
        [helper.make_value_info("out", _seq_type(I64))],
        opset=13,
    )
    a = analyse(model)
    assert a.model.graph.output[0].type.HasField("sequence_type")
    assert a.facts.inputs[0].dtype == "sequence(int64)"
    sess = ort.InferenceSession(a.model.SerializeToString(), providers=["CPUExecutionProvider"])
    s = [np.array([1, 2], dtype=np.int64)]
    out = sess.run(None, {"s": s, "t": np.array([3, 4, 5], dtype=np.int64)})[0]
    assert [list(v) for v in out] == [[1, 2], [3, 4, 5]]


def test_optional_identity_is_analysed() -> None:
    opt = helper.make_optional_type_proto(_seq_type(F, [5]))
    model = _model(
        [helper.make_node("Identity", ["o"], ["p"])],
        [helper.make_value_info("o", opt)], [helper.make_value_info("p", opt)], opset=16,
    )
    a = analyse(model)
    assert a.facts.outputs[0].dtype == "optional(sequence(float32))"
    assert a.model.graph.output[0].type.HasField("optional_type")


def test_sequence_constants_are_not_folded_into_tensors() -> None:
    nodes = [
        helper.make_node("SequenceEmpty", [], ["empty"], dtype=F),
        helper.make_node("SequenceInsert", ["empty", "x"], ["seq"]),
        helper.make_node("ConcatFromSequence", ["seq"], ["y"], axis=0),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [2])],
                   [helper.make_tensor_value_info("y", F, None)])
    a = analyse(model)
    assert [n.op_type for n in a.facts.nodes][0] == "SequenceEmpty"
    assert not a.model.graph.initializer
    assert a.facts.tensors["empty"].dtype == "sequence(float32)"


def test_unshaped_value_behind_a_sequence_input_needs_a_sample() -> None:
    """Shape fallback: a sequence input cannot be faked with zeros; a sample is used."""
    idx = helper.make_tensor("idx", I64, [], [0])
    graph = helper.make_graph(
        [
            helper.make_node("SequenceAt", ["s", "idx"], ["t"]),
            helper.make_node("Relu", ["t"], ["y"]),
        ],
        "g", [helper.make_value_info("s", _seq_type(F))],
        [helper.make_tensor_value_info("y", F, None)], [idx],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    with pytest.raises(ShapeError, match=r"'s' is a sequence\(float32\)"):
        analyse(model)
    a = analyse(model, sample_inputs={"s": [np.ones((2, 3), np.float32)]})
    assert a.facts.tensors["t"].shape == (2, 3)


def test_value_dependent_shape_uses_sample_inputs() -> None:
    model = _model(
        [helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Neg", ["c"], ["y"])],
        [helper.make_tensor_value_info("s", I64, [2])],
        [helper.make_tensor_value_info("y", F, None)],
    )
    a = analyse(model, sample_inputs={"s": np.array([2, 3], dtype=np.int64)})
    assert a.facts.tensors["c"].shape == (2, 3)
    assert a.facts.outputs[0].shape == (2, 3)
