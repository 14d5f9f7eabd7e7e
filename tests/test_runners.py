"""Tests of the runners in backends/: ONNX Runtime, OpenVINO, reference and null."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.errors import ClusterError, RunError
from partitioner.registry import get_runner


def _model(opset: int = 17) -> onnx.ModelProto:
    """y = relu(x @ W + b); also returns the intermediate ``h``."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["h"], name="add"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 3]),
        ],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _expected(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    w = numpy_helper.to_array(model.graph.initializer[0])
    b = numpy_helper.to_array(model.graph.initializer[1])
    h = x @ w + b
    return {"y": np.maximum(h, 0), "h": h}


X = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)


@pytest.mark.parametrize("name", ["onnxruntime", "reference"])
def test_runner_matches_numpy(name: str) -> None:
    model = _model()
    prepared = get_runner(name).prepare(model, {})
    assert prepared.input_names == ("x",)
    assert set(prepared.output_names) == {"y", "h"}
    out = prepared.run({"x": X})
    for key, value in _expected(model, X).items():
        np.testing.assert_allclose(out[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.openvino
def test_openvino_runner_matches_numpy() -> None:
    pytest.importorskip("openvino")
    model = _model()
    runner = get_runner("openvino")
    assert runner.available() and runner.version()
    prepared = runner.prepare(model, {"threads": 1})
    out = prepared.run({"x": X})
    out2 = prepared.run({"x": X * 2})  # request reuse must not alias earlier results
    for key, value in _expected(model, X).items():
        np.testing.assert_allclose(out[key], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out2["h"], _expected(model, X * 2)["h"], rtol=1e-5, atol=1e-6)


def test_openvino_unknown_device_is_clear() -> None:
    pytest.importorskip("openvino")
    with pytest.raises(ClusterError, match="NPU7"):
        get_runner("openvino").prepare(_model(), {"device": "NPU7"})


def test_onnxruntime_from_path_threads_and_affinity(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    cpu = sorted(os.sched_getaffinity(0))[0]
    prepared = get_runner("onnxruntime").prepare(path, {"threads": 1, "affinity": str(cpu)})
    before = os.sched_getaffinity(0)
    out = prepared.run({"x": X})
    assert os.sched_getaffinity(0) == before  # the calling thread's mask is restored
    np.testing.assert_allclose(out["y"], _expected(_model(), X)["y"], rtol=1e-5, atol=1e-6)
    assert set(prepared.assignment) == {"CPUExecutionProvider"}


def test_onnxruntime_records_provider_assignment() -> None:
    prepared = get_runner("onnxruntime").prepare(_model(), {"optimization": "disable"})
    assert prepared.assignment == {"CPUExecutionProvider": 3}


def test_onnxruntime_bad_options_are_clear() -> None:
    runner = get_runner("onnxruntime")
    with pytest.raises(ClusterError, match="TensorrtExecutionProvider"):
        runner.prepare(_model(), {"provider": "TensorrtExecutionProvider"})
    with pytest.raises(ClusterError, match="affinity"):
        runner.prepare(_model(), {"affinity": "4096"})
    with pytest.raises(ClusterError, match="bogus"):
        runner.prepare(_model(), {"bogus": 1})


def test_onnxruntime_run_failure_names_model() -> None:
    prepared = get_runner("onnxruntime").prepare(_model(), {"label": "p0_cpu"})
    with pytest.raises(RunError, match="p0_cpu"):
        prepared.run({"x": np.zeros((3, 3), np.float32)})
    with pytest.raises(RunError, match="missing input"):
        prepared.run({})


def test_onnxruntime_load_failure_is_run_error() -> None:
    model = _model()
    model.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(RunError, match="cannot load"):
        get_runner("onnxruntime").prepare(model, {})


def test_null_runner_returns_declared_shapes() -> None:
    prepared = get_runner("null").prepare(_model(), {})
    out = prepared.run({"x": X})
    assert out["y"].shape == (2, 3) and out["y"].dtype == np.float32
    assert not out["y"].any()
    with pytest.raises(RunError, match="missing input"):
        prepared.run({})


def test_reference_runner_failure_is_run_error() -> None:
    prepared = get_runner("reference").prepare(_model(), {"label": "ref-part"})
    with pytest.raises(RunError, match="ref-part"):
        prepared.run({"x": np.zeros((3, 3), np.float32)})


@pytest.mark.gpu
def test_onnxruntime_cuda_keeps_outputs_on_device() -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA execution provider here")
    prepared = get_runner("onnxruntime").prepare(_model(), {"provider": "CUDAExecutionProvider"})
    assert prepared.device_resident
    out = prepared.run_device({"x": X})
    assert isinstance(out["h"], ort.OrtValue) and out["h"].device_name().lower() == "cuda"
    np.testing.assert_allclose(out["y"].numpy(), _expected(_model(), X)["y"], rtol=1e-4)
