"""Graph analysis: facts, normalisation, folding (numerically exact), control flow, custom ops."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.errors import ShapeError
from partitioner.graph.analysis import analyse

F = TensorProto.FLOAT


def make_model(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(inits))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def mlp():
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu1"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
    ]
    inits = [init("w1", (8, 16)), init("b1", (16,), 1), init("w2", (16, 4), 2)]
    return make_model(nodes, [vi("x", [2, 8])], [vi("y", None)], inits)


def test_mlp_facts_are_exact():
    a = analyse(mlp())
    facts = a.facts
    assert [n.name for n in facts.nodes] == ["mm1", "add1", "relu1", "mm2"]
    mm1, add1, relu1, mm2 = facts.nodes
    assert mm1.inputs == ("x",) and mm1.weights == ("w1",)
    assert mm1.flops == 2 * 8 * (2 * 16)
    assert mm1.weight_bytes == 8 * 16 * 4
    assert mm1.bytes_read == 2 * 8 * 4 + 8 * 16 * 4
    assert mm1.bytes_written == 2 * 16 * 4
    assert add1.flops == 32 and relu1.flops == 32
    assert mm2.flops == 2 * 16 * (2 * 4)
    assert [(e.tensor, e.src, e.dst, e.nbytes) for e in facts.edges] == [
        ("h", "mm1", "add1", 128), ("hb", "add1", "relu1", 128), ("r", "relu1", "mm2", 128)
    ]
    assert facts.outputs[0].shape == (2, 4) and facts.outputs[0].dtype == "float32"
    assert facts.inputs[0].nbytes == 64
    assert set(facts.tensors) == {"x", "h", "hb", "r", "y"}
    assert facts.node("relu1").index == 2
    assert a.node_proto("mm2").op_type == "MatMul"
    assert len(facts.model_sha256) == 64
    # The normalised model records every activation's concrete shape.
    shaped = {v.name for v in a.model.graph.value_info}
    assert shaped == {"h", "hb", "r"}


def test_signature_is_stable_and_shape_sensitive():
    m = mlp()
    first = analyse(m).facts
    second = analyse(m).facts
    assert [n.signature for n in first.nodes] == [n.signature for n in second.nodes]
    assert first.nodes[0].signature != first.nodes[3].signature  # different weight shapes
    other = mlp()
    other.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3
    assert analyse(other).facts.nodes[0].signature != first.nodes[0].signature


def test_unnamed_duplicate_and_unsorted_nodes_are_normalised():
    nodes = [
        helper.make_node("Relu", ["a"], ["y"], name="dup"),
        helper.make_node("Neg", ["x"], ["a"], name="dup"),
        helper.make_node("Abs", ["y"], ["z"]),
    ]
    a = analyse(make_model(nodes, [vi("x", [3])], [vi("z", None)]))
    names = [n.name for n in a.facts.nodes]
    assert len(set(names)) == 3 and all(names)
    assert [n.op_type for n in a.facts.nodes] == ["Neg", "Relu", "Abs"]
    assert [n.index for n in a.facts.nodes] == [0, 1, 2]


def test_constant_subgraphs_fold_and_stay_numerically_equal():
    # A torch-style shape subgraph: Shape -> Gather -> Unsqueeze -> Concat -> Reshape,
    # a Constant node, and a Transpose of a weight (all-constant inputs).
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Constant", [], ["i0"], name="c0",
                         value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "i0"], ["b"], name="gather", axis=0),
        helper.make_node("Constant", [], ["ax"], name="c1", value_ints=[0]),
        helper.make_node("Unsqueeze", ["b", "ax"], ["b1"], name="unsq"),
        helper.make_node("Constant", [], ["rest"], name="c2", value_ints=[-1]),
        helper.make_node("Concat", ["b1", "rest"], ["newshape"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["flat"], name="reshape"),
        helper.make_node("Transpose", ["wt"], ["w"], name="transpose_w", perm=[1, 0]),
        helper.make_node("MatMul", ["flat", "w"], ["y"], name="mm"),
    ]
    model = make_model(nodes, [vi("x", [2, 3, 4])], [vi("y", None)], [init("wt", (5, 12))])
    a = analyse(model)
    assert [n.op_type for n in a.facts.nodes] == ["Reshape", "MatMul"]
    assert a.facts.nodes[1].weights == ("w",)
    assert a.facts.tensors["flat"].shape == (2, 12)
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    expected = run_ort(model, {"x": x})
    got = run_ort(a.model, {"x": x})
    np.testing.assert_array_equal(expected[0], got[0])


def test_if_node_is_atomic_and_costed_by_its_larger_branch():
    then_graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["t"], name="then_mm")], "then", [],
        [vi("t", [2, 4])])
    else_graph = helper.make_graph(
        [helper.make_node("Relu", ["x2"], ["e"], name="else_relu")], "else", [],
        [vi("e", [2, 4])])
    nodes = [
        helper.make_node("Neg", ["x"], ["x2"], name="neg"),
        helper.make_node("If", ["cond"], ["y"], name="branch",
                         then_branch=then_graph, else_branch=else_graph),
    ]
    model = make_model(nodes, [vi("x", [2, 4]), vi("cond", [], TensorProto.BOOL)],
                       [vi("y", None)], [init("w", (4, 4))])
    a = analyse(model)
    node = a.facts.node("branch")
    assert node.subgraph_flops == 2 * 4 * 2 * 4
    assert node.flops == node.subgraph_flops
    assert set(node.inputs) == {"cond", "x", "x2"} and node.weights == ("w",)
    assert ("x2", "neg", "branch") in {(e.tensor, e.src, e.dst) for e in a.facts.edges}
    assert [n.op_type for n in a.facts.nodes] == ["Neg", "If"]
    x = np.ones((2, 4), np.float32)
    for cond in (True, False):
        feeds = {"x": x, "cond": np.array(cond)}
        np.testing.assert_allclose(run_ort(model, feeds)[0], run_ort(a.model, feeds)[0])


def test_loop_with_constant_trip_count_multiplies_body():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
         helper.make_node("MatMul", ["acc", "w"], ["acc_out"], name="body_mm")],
        "body", [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL),
                 vi("acc", [1, 4])],
        [vi("cond_out", [], TensorProto.BOOL), vi("acc_out", [1, 4])])
    trips = numpy_helper.from_array(np.array(5, np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], name="loop", body=body)]
    a = analyse(make_model(nodes, [vi("x", [1, 4])], [vi("y", None)],
                           [init("w", (4, 4)), trips, cond]))
    assert a.facts.node("loop").subgraph_flops == 5 * 2 * 4 * 4
    assert a.facts.outputs[0].shape == (1, 4)


def test_com_microsoft_ops_are_kept_shaped_and_listed():
    nodes = [
        helper.make_node("FusedMatMul", ["x", "w"], ["h"], name="fmm", domain="com.microsoft",
                         alpha=0.5),
        helper.make_node("Gelu", ["h"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("Relu", ["g"], ["y"], name="relu"),
    ]
    model = make_model(nodes, [vi("x", [3, 8])], [vi("y", None)], [init("w", (8, 6))],
                       extra_opsets=[("com.microsoft", 1)])
    a = analyse(model)
    assert a.facts.custom_domain_nodes == ("fmm", "gelu")
    assert a.facts.tensors["h"].shape == (3, 6) and a.facts.tensors["g"].shape == (3, 6)
    assert a.facts.node("fmm").flops == 2 * 8 * 18
    assert a.facts.node("gelu").flops == 8 * 18
    assert a.facts.node("fmm").qualified_op == "com.microsoft::FusedMatMul"
    x = np.ones((3, 8), np.float32)
    np.testing.assert_allclose(run_ort(model, {"x": x})[0], run_ort(a.model, {"x": x})[0])


def test_symbolic_input_takes_user_shape():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    model = make_model(nodes, [vi("x", ["batch", 8])], [vi("y", ["batch", 4])],
                       [init("w", (8, 4))])
    with pytest.raises(ShapeError, match=r"--input-shape x=1,8"):
        analyse(model)
    a = analyse(model, {"x": (5, 8)})
    assert a.facts.inputs[0].shape == (5, 8)
    assert a.facts.outputs[0].shape == (5, 4)
    assert a.facts.nodes[0].flops == 2 * 8 * 20
    with pytest.raises(ShapeError, match="rank"):
        analyse(model, {"x": (5,)})


def test_external_data_loads_from_model_folder(tmp_path):
    model = mlp()
    path = tmp_path / "ext.onnx"
    copy = onnx.ModelProto.FromString(model.SerializeToString())
    onnx.save_model(copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    a = analyse(path)
    assert a.base_dir == tmp_path.resolve()
    assert a.source == str(path)
    assert a.facts.model_name == "ext"
    assert a.facts.nodes[0].weight_bytes == 8 * 16 * 4
    x = np.ones((2, 8), np.float32)
    np.testing.assert_allclose(run_ort(model, {"x": x})[0], run_ort(a.model, {"x": x})[0])


def test_networkx_view_matches_facts():
    nodes = [
        helper.make_node("Neg", ["x"], ["a"], name="n"),
        helper.make_node("Mul", ["a", "a"], ["b"], name="sq"),
        helper.make_node("Concat", ["a", "b"], ["y"], name="cat", axis=0),
    ]
    a = analyse(make_model(nodes, [vi("x", [2])], [vi("y", None)]))
    g = a.to_networkx()
    assert list(g.nodes) == ["n", "sq", "cat"]
    assert g.nodes["sq"]["info"].op_type == "Mul"
    assert g.edges["n", "sq"]["tensor"] == "a" and g.edges["n", "sq"]["nbytes"] == 8
    assert len(a.facts.edges) == 3  # a->sq once although Mul reads it twice
    assert g.nodes["sq"]["info"].inputs == ("a",)


def test_chain_of_20k_nodes_is_analysed():
    nodes = []
    prev = "x"
    for i in range(20_000):
        op = ("MatMul", "Add", "Relu")[i % 3]
        ins = [prev, "w"] if op == "MatMul" else [prev, "b"] if op == "Add" else [prev]
        nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"n{i}"))
        prev = f"t{i}"
    model = make_model(nodes, [vi("x", [1, 64])], [vi(prev, None)],
                       [init("w", (64, 64)), init("b", (1, 64))])
    facts = analyse(model).facts
    assert len(facts.nodes) == 20_000 and len(facts.edges) == 19_999
    assert facts.nodes[-1].index == 19_999


def test_big_constant_outputs_and_graph_outputs_are_not_folded():
    shape = numpy_helper.from_array(np.array([1024, 1024], np.int64), "shape")
    nodes = [
        # 4 MiB of zeros from 16 bytes of shape: folding would bloat the weights.
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"], name="big"),
        helper.make_node("Add", ["x", "zeros"], ["y"], name="add"),
        # A graph output computed from constants only stays a node.
        helper.make_node("Constant", [], ["k"], name="const_out", value_floats=[1.0, 2.0]),
    ]
    model = make_model(nodes, [vi("x", [1024, 1024])], [vi("y", None), vi("k", None)], [shape])
    a = analyse(model)
    assert [n.name for n in a.facts.nodes] == ["big", "add", "const_out"]
    assert a.facts.tensors["zeros"].nbytes == 4 << 20
    assert a.facts.outputs[1].shape == (2,)
    x = np.ones((1024, 1024), np.float32)
    for want, got in zip(run_ort(model, {"x": x}), run_ort(a.model, {"x": x}), strict=True):
        np.testing.assert_array_equal(want, got)


def test_nodes_whose_outputs_nothing_reads_are_dropped() -> None:
    """A CRNN export leaves a Transpose behind whose only reader was shape arithmetic that
    folding replaced; kept, the solver placed it alone in a runner call with no outputs."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["t"], name="dead_transpose", perm=[1, 0]),
        helper.make_node("Shape", ["t"], ["s"], name="shape_of_dead"),
        helper.make_node("Sigmoid", ["r"], ["y"], name="sigmoid"),
    ]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])])
    analysed = analyse(model)
    assert [n.name for n in analysed.facts.nodes] == ["relu", "sigmoid"]
    assert [n.name for n in analysed.model.graph.node] == ["relu", "sigmoid"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    np.testing.assert_allclose(run_ort(analysed.model, {"x": x})[0], run_ort(model, {"x": x})[0])
