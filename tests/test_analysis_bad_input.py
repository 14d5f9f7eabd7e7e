"""Bad input to analysis and `hetpart inspect`: one line naming the file, exit 2, no traceback."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.cli import main

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _relu_model(shape=(2, 3)):
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                  [helper.make_tensor_value_info("x", F, list(shape))],
                  [helper.make_tensor_value_info("y", F, None)])


def _save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def _weighted_model():
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                  [helper.make_tensor_value_info("x", F, [2, 3])],
                  [helper.make_tensor_value_info("y", F, None)], [w])


def _external(model, location):
    """Point every initializer of ``model`` at ``location`` as external data."""
    for t in model.graph.initializer:
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "48")):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    return model


def _fails(capsys, args, *fragments):
    rc = main(["inspect", *map(str, args)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_not_onnx(tmp_path, capsys):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 10)
    _fails(capsys, [path], str(path), "not an ONNX model")


def test_truncated_file(tmp_path, capsys):
    data = _weighted_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    _fails(capsys, [path], str(path), "truncated")


def test_nonexistent_path(tmp_path, capsys):
    path = tmp_path / "missing.onnx"
    _fails(capsys, [path], str(path), "no such file")


def test_missing_external_data(tmp_path, capsys):
    path = _save(_external(_weighted_model(), "weights.bin"), tmp_path / "m.onnx")
    _fails(capsys, [path], str(path), "'weights.bin' is missing", "'w'")


def test_truncated_external_data(tmp_path, capsys):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)
    path = _save(_external(_weighted_model(), "weights.bin"), tmp_path / "m.onnx")
    _fails(capsys, [path], str(path), "'w'")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_external_data_escaping_folder_is_refused(tmp_path, capsys, kind):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.ones((3, 4), np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    if kind == "dotdot":
        location = "../secret.bin"
    elif kind == "absolute":
        location = str(outside)
    else:
        os.symlink(outside, folder / "link.bin")
        location = "link.bin"
    path = _save(_external(_weighted_model(), location), folder / "m.onnx")
    before = outside.stat().st_atime_ns
    _fails(capsys, [path], str(path), "refused", "'w'")
    assert outside.stat().st_atime_ns == before


def test_unknown_dimension_names_input_dim_and_flag(tmp_path, capsys):
    path = _save(_relu_model(("batch", 3)), tmp_path / "dyn.onnx")
    _fails(capsys, [path], str(path), "input 'x'", "dimension 0 ('batch')",
           "--input-shape x=1,3")


def test_input_shape_for_nonexistent_input_lists_real_inputs(tmp_path, capsys):
    path = _save(_relu_model(("batch", 3)), tmp_path / "dyn.onnx")
    _fails(capsys, [path, "--input-shape", "image=1,3"], str(path), "'image'", "inputs are 'x'")


def test_malformed_input_shape_flag(tmp_path, capsys):
    path = _save(_relu_model(("batch", 3)), tmp_path / "dyn.onnx")
    _fails(capsys, [path, "--input-shape", "x=a,b"], "--input-shape")


def test_op_type_that_cannot_be_shaped_names_the_node(tmp_path, capsys):
    model = _model([helper.make_node("Relu", ["x"], ["h"], name="relu"),
                    helper.make_node("FrobnicateTensor", ["h"], ["y"], name="mystery")],
                   [helper.make_tensor_value_info("x", F, [2, 3])],
                   [helper.make_tensor_value_info("y", F, None)])
    path = _save(model, tmp_path / "op.onnx")
    _fails(capsys, [path], str(path), "'mystery'", "FrobnicateTensor")


def test_opset_the_analysis_does_not_know_names_the_node(tmp_path, capsys):
    path = _save(_model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                        [helper.make_tensor_value_info("x", F, [2])],
                        [helper.make_tensor_value_info("y", F, None)], opset=99),
                 tmp_path / "future.onnx")
    _fails(capsys, [path], str(path), "opset", "99", "'relu'")


def test_cycle_names_its_nodes(tmp_path, capsys):
    model = _model([helper.make_node("Add", ["x", "c"], ["a"], name="first"),
                    helper.make_node("Relu", ["a"], ["b"], name="second"),
                    helper.make_node("Neg", ["b"], ["c"], name="third"),
                    helper.make_node("Abs", ["a"], ["y"], name="after")],
                   [helper.make_tensor_value_info("x", F, [2])],
                   [helper.make_tensor_value_info("y", F, None)])
    path = _save(model, tmp_path / "cycle.onnx")
    line = _fails(capsys, [path], str(path), "cycle")
    for name in ("first", "second", "third"):
        assert repr(name) in line
    assert "'after'" not in line


def test_inconsistent_shapes_name_the_node(tmp_path, capsys):
    w = numpy_helper.from_array(np.ones((5, 4), np.float32), "w")
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="bad_mm")],
                   [helper.make_tensor_value_info("x", F, [2, 3])],
                   [helper.make_tensor_value_info("y", F, None)], [w])
    path = _save(model, tmp_path / "mm.onnx")
    _fails(capsys, [path], str(path), "'bad_mm'")


def test_value_nobody_produces(tmp_path, capsys):
    model = _model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")],
                   [helper.make_tensor_value_info("x", F, [2])],
                   [helper.make_tensor_value_info("y", F, None)])
    path = _save(model, tmp_path / "ghost.onnx")
    _fails(capsys, [path], str(path), "'ghost'", "'add'")


def test_proto_with_external_data_and_no_folder():
    from partitioner.errors import ModelError
    from partitioner.graph.analysis import analyse

    with pytest.raises(ModelError, match="ModelProto"):
        analyse(_external(_weighted_model(), "weights.bin"))


def test_onnx_load_is_never_called_before_the_location_check(tmp_path, monkeypatch, capsys):
    calls = []
    real = onnx.external_data_helper.load_external_data_for_model
    monkeypatch.setattr(onnx.external_data_helper, "load_external_data_for_model",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    path = _save(_external(_weighted_model(), "../../etc/passwd"), tmp_path / "m.onnx")
    _fails(capsys, [path], "refused")
    assert calls == []
