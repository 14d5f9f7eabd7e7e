"""`hetpart inspect`: text and JSON summaries, torch exports with dynamic batch, zoo models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.cli import main
from partitioner.graph.analysis import analyse

F = TensorProto.FLOAT
JSON_KEYS = {"nodes", "ops", "flops", "weight_bytes", "parameters", "largest_activation",
             "inputs", "outputs", "custom_domain_nodes"}


def _model_file(tmp_path):
    w = numpy_helper.from_array(np.ones((8, 16), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Gelu", ["h"], ["g"], name="gelu", domain="com.microsoft"),
             helper.make_node("Relu", ["g"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["n", 8])],
                              [helper.make_tensor_value_info("y", F, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    path = tmp_path / "small.onnx"
    onnx.save(model, path)
    return path


def test_json_summary(tmp_path, capsys):
    path = _model_file(tmp_path)
    assert main(["inspect", str(path), "--input-shape", "x=4,8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert JSON_KEYS <= set(data)
    assert data["nodes"] == 3
    assert data["ops"] == {"MatMul": 1, "Relu": 1, "com.microsoft::Gelu": 1}
    assert data["parameters"] == 128 and data["weight_bytes"] == 512
    assert data["flops"] == 2 * 8 * 64 + 8 * 64 + 64
    assert data["inputs"] == [{"name": "x", "shape": [4, 8], "dtype": "float32", "nbytes": 128}]
    assert data["outputs"][0]["shape"] == [4, 16]
    assert data["largest_activation"]["nbytes"] == 256
    assert data["custom_domain_nodes"] == [{"name": "gelu", "op": "com.microsoft::Gelu"}]


def test_text_summary(tmp_path, capsys):
    path = _model_file(tmp_path)
    assert main(["inspect", str(path), "--input-shape", "x=4,8"]) == 0
    out = capsys.readouterr().out
    assert "nodes       3" in out
    assert "parameters  128  (512 B)" in out
    assert "FLOPs       1.60 kFLOP" in out
    assert "x: float32[4,8]" in out and "y: float32[4,16]" in out
    assert "com.microsoft::Gelu" in out and "gelu (com.microsoft::Gelu)" in out


def test_torch_export_with_dynamic_batch(tmp_path, capsys):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(12, 6)
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x, img):
            y = self.fc(x).relu()
            z = self.conv(img).flatten(1)
            return y.reshape(x.shape[0], 2, 3), z.softmax(-1)

    torch.manual_seed(0)
    net = Net().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.randn(2, 12), torch.randn(2, 3, 6, 6)), str(path),
                      dynamo=True, dynamic_shapes={"x": {0: batch}, "img": {0: batch}})
    assert main(["inspect", str(path)]) == 2
    assert "--input-shape" in capsys.readouterr().err
    a = analyse(path, {"x": (5, 12), "img": (5, 3, 6, 6)})
    assert a.facts.outputs[0].shape == (5, 2, 3) and a.facts.outputs[1].shape == (5, 144)
    conv = next(n for n in a.facts.nodes if n.op_type == "Conv")
    assert conv.flops == 2 * (5 * 4 * 36) * 3 * 9 + 5 * 4 * 36
    feeds = {"x": np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32),
             "img": np.random.default_rng(1).standard_normal((5, 3, 6, 6)).astype(np.float32)}
    opts = ["CPUExecutionProvider"]
    want = ort.InferenceSession(str(path), providers=opts).run(None, feeds)
    got = ort.InferenceSession(a.model.SerializeToString(), providers=opts).run(None, feeds)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


@pytest.mark.zoo
def test_inspect_zoo_gpt(capsys):
    pytest.importorskip("torch")
    zoo = pytest.importorskip("models.zoo")
    path = zoo.build("gpt")
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ops"]["MatMul"] > 0 and data["flops"] > 0 and data["parameters"] > 0
