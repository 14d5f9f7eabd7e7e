"""Small models, clusters and plans shared by the plan, executor and session tests.

(Named ``test_plan_*`` so it sits in the plan tests' namespace; it holds no tests itself.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.graph.analysis import AnalysedModel, analyse


def device(device_id: str, runner: str = "onnxruntime", **options: object) -> DeviceSpec:
    """A CPU device for ``runner``; ONNX Runtime devices default to one thread."""
    if runner == "onnxruntime":
        options.setdefault("threads", 1)
    return DeviceSpec(
        id=device_id,
        device_class="cpu",
        runner=runner,
        memory_bytes=1 << 30,
        peak_flops={"float32": 1e10},
        memory_bandwidth=1e10,
        call_overhead_s=1e-5,
        runner_options=dict(options),
        local=True,
    )


def cluster(*devices: DeviceSpec, name: str = "test") -> Cluster:
    return Cluster(name, tuple(devices))


def branchy_model(width: int = 16, seed: int = 0) -> onnx.ModelProto:
    """x -> stem -> two branches (mm/relu, mm/tanh) -> add -> head; also outputs ``a1``."""
    rng = np.random.default_rng(seed)

    def w(name: str) -> onnx.TensorProto:
        return numpy_helper.from_array(
            rng.standard_normal((width, width)).astype(np.float32) / width, name
        )

    nodes = [
        helper.make_node("MatMul", ["x", "W0"], ["h"], name="stem"),
        helper.make_node("MatMul", ["h", "Wa"], ["a0"], name="a_mm"),
        helper.make_node("Relu", ["a0"], ["a1"], name="a_relu"),
        helper.make_node("MatMul", ["h", "Wb"], ["b0"], name="b_mm"),
        helper.make_node("Tanh", ["b0"], ["b1"], name="b_tanh"),
        helper.make_node("Add", ["a1", "b1"], ["s"], name="join"),
        helper.make_node("MatMul", ["s", "W1"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "branchy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, width])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, width]),
            helper.make_tensor_value_info("a1", TensorProto.FLOAT, [2, width]),
        ],
        initializer=[w("W0"), w("Wa"), w("Wb"), w("W1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def token_model(vocab: int = 11) -> onnx.ModelProto:
    """ids (int64) -> Gather(embedding) -> Relu: random inputs need a value range."""
    emb = numpy_helper.from_array(np.arange(vocab * 4, dtype=np.float32).reshape(vocab, 4), "E")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "ids"], ["e"], name="gather"),
            helper.make_node("Relu", ["e"], ["y"], name="relu"),
        ],
        "tokens",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 4])],
        initializer=[emb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def save_and_analyse(model: onnx.ModelProto, folder: Path, name: str) -> AnalysedModel:
    path = folder / f"{name}.onnx"
    onnx.save(model, path)
    return analyse(str(path))


def alternate(analysed: AnalysedModel, devices: list[str]) -> dict[str, str]:
    """Assign nodes round-robin over ``devices`` in topological order."""
    return {n.name: devices[i % len(devices)] for i, n in enumerate(analysed.facts.nodes)}


#: Branchy placement: branch b on device b, the rest on a.
BRANCHY_SPLIT = {
    "stem": "a",
    "a_mm": "a",
    "a_relu": "a",
    "b_mm": "b",
    "b_tanh": "b",
    "join": "a",
    "head": "b",
}


#: Every shipped runner, for tests parametrised over them (OpenVINO marked: it may be absent).
RUNNERS = [
    "onnxruntime",
    "reference",
    "null",
    pytest.param("openvino", marks=pytest.mark.openvino),
]
