"""Analysis of edge-case value types: empty (size-0) dims, scalars, sequences and optionals."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from partitioner.analysis import analyse

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
