"""``hetpart run --check`` holds a plan to the tolerance it was compiled for, and says why a
quantized model's outputs differ between runners."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.cli import main
from partitioner.cli.run_cmd import quantization_note
from partitioner.plan.io import load_plan


def _matmul_model(path: Path) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Relu", ["h"], ["y"], name="relu")],
        "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def _run_check(plan: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    main(["run", str(plan), "--check", "--repeat", "1", "--json", *extra])
    return json.loads(capsys.readouterr().out)["check"]


def test_check_uses_the_plans_tolerance_unless_flags_say_otherwise(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _matmul_model(tmp_path / "mm.onnx")
    plain, loose = tmp_path / "plain", tmp_path / "loose"
    assert main(["compile", str(model), "--cluster", "cpu+l4", "--time-limit", "2",
                 "-o", str(plain), "--quiet"]) == 0
    assert main(["compile", str(model), "--cluster", "cpu+l4", "--time-limit", "2",
                 "--tolerance", "atol=0.5,rtol=0.01", "-o", str(loose), "--quiet"]) == 0
    assert quantization_note(load_plan(plain)) is None  # nothing quantized
    check = _run_check(plain, capsys, "--emulate")
    assert (check["rtol"], check["atol"], check["tolerance_from"]) == (1e-3, 1e-4, "defaults")
    check = _run_check(loose, capsys, "--emulate")
    assert (check["rtol"], check["atol"]) == (0.01, 0.5)
    assert check["tolerance_from"] == "the plan's --tolerance" and check["passed"]
    check = _run_check(loose, capsys, "--emulate", "--atol", "0.001")
    assert (check["rtol"], check["atol"], check["tolerance_from"]) == (1e-3, 1e-3, "flags")


@pytest.mark.openvino
def test_a_quantized_model_on_openvino_says_why_it_may_differ(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = _matmul_model(tmp_path / "mm.onnx")
    quantized = tmp_path / "mm-q.onnx"
    quantize_dynamic(str(model), str(quantized), weight_type=QuantType.QInt8)
    plan = tmp_path / "plan"
    assert main(["compile", str(quantized), "--cluster", "local", "--devices", "ov-cpu",
                 "--measure-rounds", "0", "--time-limit", "2", "-o", str(plan), "--quiet"]) == 0
    note = quantization_note(load_plan(plan))
    assert note is not None and "DynamicQuantizeLinear" in note and "openvino" in note
    check = _run_check(plan, capsys)
    # Whether OpenVINO's rounding crosses the default tolerance depends on the data; when it
    # does, the record says why.
    assert check["passed"] or check["note"] == note
