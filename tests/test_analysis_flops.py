"""FLOP formulas checked against hand computations on single-node models."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.graph.analysis import analyse

F = TensorProto.FLOAT


def _flops(op, inputs, weights=(), attrs=None, domain="", opset=17, n_out=1):
    """Analyse a one-node model; inputs/weights are (name, shape) pairs."""
    ins = [helper.make_tensor_value_info(n, F, list(s)) for n, s in inputs]
    inits = [numpy_helper.from_array(np.ones(s, np.float32), n) for n, s in weights]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, [n for n, _ in inputs] + [n for n, _ in weights], outs,
                            name="op", domain=domain, **(attrs or {}))
    graph = helper.make_graph([node], "g", ins,
                              [helper.make_tensor_value_info(o, F, None) for o in outs], inits)
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    facts = analyse(model).facts
    return facts.nodes[0].flops, facts.tensors["y0"].shape


def test_matmul_batched_with_broadcast():
    flops, shape = _flops("MatMul", [("a", (2, 3, 4, 5))], [("b", (5, 6))])
    assert shape == (2, 3, 4, 6)
    assert flops == 2 * 5 * (2 * 3 * 4 * 6)
    flops, shape = _flops("MatMul", [("a", (3, 1, 4, 5)), ("b", (2, 5, 7))])
    assert shape == (3, 2, 4, 7) and flops == 2 * 5 * (3 * 2 * 4 * 7)


def test_matmul_vector():
    flops, shape = _flops("MatMul", [("a", (5,))], [("b", (5, 6))])
    assert shape == (6,) and flops == 2 * 5 * 6


def test_gemm_with_transpose_and_bias():
    flops, shape = _flops("Gemm", [("a", (7, 3))], [("b", (5, 7)), ("c", (5,))],
                          {"transA": 1, "transB": 1})
    assert shape == (3, 5)
    assert flops == 2 * 3 * 5 * 7 + 3 * 5


def test_conv_with_groups_stride_dilation_and_bias():
    # X [1, 8, 16, 16], W [12, 4, 3, 3] (group 2), stride 2, dilation 2, pad 2
    flops, shape = _flops("Conv", [("x", (1, 8, 16, 16))], [("w", (12, 4, 3, 3)), ("b", (12,))],
                          {"group": 2, "strides": [2, 2], "dilations": [2, 2],
                           "pads": [2, 2, 2, 2]})
    assert shape == (1, 12, 8, 8)
    out = 12 * 8 * 8
    assert flops == 2 * out * 4 * 9 + out


def test_depthwise_conv():
    flops, shape = _flops("Conv", [("x", (2, 6, 10, 10))], [("w", (6, 1, 3, 3))], {"group": 6})
    assert shape == (2, 6, 8, 8) and flops == 2 * (2 * 6 * 8 * 8) * 1 * 9


def test_conv_transpose():
    # X [1, 4, 5, 5], W [4, 3, 3, 3] -> out [1, 3, 11, 11] with stride 2
    flops, shape = _flops("ConvTranspose", [("x", (1, 4, 5, 5))], [("w", (4, 3, 3, 3))],
                          {"strides": [2, 2]})
    assert shape == (1, 3, 11, 11)
    assert flops == 2 * (4 * 5 * 5) * 3 * 9


def test_onnx_attention_4d():
    b, h, s, length, d = 2, 4, 8, 10, 16
    flops, shape = _flops("Attention", [("q", (b, h, s, d)), ("k", (b, h, length, d)),
                                        ("v", (b, h, length, d))], opset=23)
    assert shape == (b, h, s, d)
    assert flops == 2 * b * s * length * h * d * 2 + 5 * b * h * s * length


def test_com_microsoft_multihead_attention():
    b, s, length, e, heads = 2, 6, 9, 32, 4
    flops, shape = _flops("MultiHeadAttention", [("q", (b, s, e)), ("k", (b, length, e)),
                                                 ("v", (b, length, e))],
                          attrs={"num_heads": heads}, domain="com.microsoft")
    assert shape == (b, s, e)
    assert flops == 2 * b * s * length * e * 2 + 5 * b * heads * s * length


def test_com_microsoft_attention_includes_projection():
    b, s, d, hidden, heads = 1, 5, 16, 24, 3
    flops, shape = _flops("Attention", [("x", (b, s, d))],
                          [("w", (d, 3 * hidden)), ("bias", (3 * hidden,))],
                          attrs={"num_heads": heads}, domain="com.microsoft")
    assert shape == (b, s, hidden)
    assert flops == 2 * b * s * d * 3 * hidden + 2 * b * s * s * hidden * 2 + 5 * b * heads * s * s


@pytest.mark.parametrize(("op", "per_element"), [
    ("Relu", 1), ("Sigmoid", 4), ("Tanh", 4), ("Erf", 4), ("Softmax", 5),
])
def test_elementwise(op, per_element):
    flops, _ = _flops(op, [("x", (3, 7))])
    assert flops == per_element * 21


def test_layer_norm_and_binary_broadcast():
    flops, _ = _flops("LayerNormalization", [("x", (2, 5, 8))], [("g", (8,)), ("b", (8,))])
    assert flops == 8 * 80
    flops, shape = _flops("Add", [("x", (4, 1)), ("y", (1, 6))])
    assert shape == (4, 6) and flops == 24


def test_reductions_count_input_elements():
    flops, shape = _flops("ReduceMean", [("x", (4, 6, 5))], attrs={"axes": [1]}, opset=13)
    assert shape == (4, 1, 5) and flops == 120
    flops, _ = _flops("GlobalAveragePool", [("x", (1, 3, 4, 4))])
    assert flops == 48


def test_pooling_counts_kernel_per_output():
    flops, shape = _flops("MaxPool", [("x", (1, 2, 8, 8))],
                          attrs={"kernel_shape": [2, 2], "strides": [2, 2]})
    assert shape == (1, 2, 4, 4) and flops == 32 * 4


def test_einsum_contraction():
    flops, shape = _flops("Einsum", [("a", (2, 3, 4)), ("b", (2, 4, 5))],
                          attrs={"equation": "bij,bjk->bik"}, opset=12)
    assert shape == (2, 3, 5) and flops == 2 * 2 * 3 * 4 * 5


def test_data_movement_is_free():
    flops, shape = _flops("Transpose", [("x", (2, 3, 4))], attrs={"perm": [2, 0, 1]})
    assert shape == (4, 2, 3) and flops == 0


def test_lstm():
    seq, batch, inp, hidden = 5, 2, 3, 4
    flops, _ = _flops("LSTM", [("x", (seq, batch, inp))],
                      [("w", (1, 4 * hidden, inp)), ("r", (1, 4 * hidden, hidden))],
                      attrs={"hidden_size": hidden})
    steps = seq * batch * 4 * hidden
    assert flops == 2 * steps * (inp + hidden) + 4 * steps


def test_unknown_op_estimate_is_output_elements():
    flops, shape = _flops("Resize", [("x", (1, 1, 4, 4))],
                          [("roi", (0,)), ("scales", (4,))], opset=13)
    assert flops == int(np.prod(shape))
