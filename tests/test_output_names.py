"""Runners return exactly their partition's ONNX input and output names, and a partition
that returns less than the plan expects is a one-line RunError, never a KeyError.

OpenVINO merges the names of tensors it fuses: in :func:`renamed_model` the compiled ports'
``get_any_name()`` are ``in1`` (for input ``x``) and ``b``, ``a`` (for outputs ``view_53``,
``y``) with OpenVINO 2026.4, as the dynamo-exported GPT-2's ``view_53`` came back as
``layer_norm_8`` and ``hetpart run --check`` died with ``KeyError: 'view_53'``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_plan_fixtures import RUNNERS, cluster, device, save_and_analyse

from partitioner import Session
from partitioner.errors import RunError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.io import load_plan, write_plan
from partitioner.registry import get_runner
from partitioner.runtime.executor import Executor


def renamed_model() -> onnx.ModelProto:
    """Outputs behind an Identity and a no-op Reshape, an input behind an Identity chain."""
    shape = numpy_helper.from_array(np.array([2, 8], np.int64), "shape")
    nodes = [
        helper.make_node("Identity", ["x"], ["in1"], name="id0"),
        helper.make_node("Identity", ["in1"], ["in2"], name="id1"),
        helper.make_node("Relu", ["in2"], ["a"], name="relu"),
        helper.make_node("Identity", ["a"], ["y"], name="id2"),
        helper.make_node("Neg", ["a"], ["b"], name="neg"),
        helper.make_node("Reshape", ["b", "shape"], ["view_53"], name="view"),
    ]
    graph = helper.make_graph(
        nodes,
        "renamed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [
            helper.make_tensor_value_info("view_53", TensorProto.FLOAT, [2, 8]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8]),
        ],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


X = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
EXPECTED = {"y": np.maximum(X, 0), "view_53": -np.maximum(X, 0)}



@pytest.mark.parametrize("name", RUNNERS)
def test_runner_returns_the_onnx_names(name: str) -> None:
    runner = get_runner(name)
    if not runner.available():
        pytest.skip(f"the {name} runner is not installed here")
    part = runner.prepare(renamed_model(), {"label": "renamed"})
    assert part.input_names == ("x",)
    assert part.output_names == ("view_53", "y")
    outputs = part.run({"x": X})
    assert list(outputs) == ["view_53", "y"]
    if name != "null":
        for key, value in EXPECTED.items():
            np.testing.assert_array_equal(outputs[key], value)


@pytest.mark.openvino
def test_openvino_plan_runs_with_fused_output_names(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    analysed = save_and_analyse(renamed_model(), tmp_path, "model")
    devices = [device("ov", runner="openvino", threads=1)]
    plan = plan_from_assignment(
        analysed, cluster(*devices), {n.name: "ov" for n in analysed.facts.nodes}
    )
    write_plan(plan, analysed, tmp_path / "plan")
    with Session(tmp_path / "plan") as session:
        view, y = session.run(None, {"x": X})
    np.testing.assert_array_equal(view, EXPECTED["view_53"])
    np.testing.assert_array_equal(y, EXPECTED["y"])


def _two_partitions(tmp_path: Path) -> Path:
    analysed = save_and_analyse(renamed_model(), tmp_path, "model")
    first = {"id0", "id1", "relu", "id2"}
    assignment = {n.name: "a" if n.name in first else "b" for n in analysed.facts.nodes}
    plan = plan_from_assignment(analysed, cluster(device("a"), device("b")), assignment)
    write_plan(plan, analysed, tmp_path / "plan")
    return tmp_path / "plan"


def test_missing_partition_output_is_a_run_error(tmp_path: Path) -> None:
    root = _two_partitions(tmp_path)
    plan = load_plan(root)
    assert [o.name for o in plan.partitions[0].outputs] == ["a"]
    with Executor(plan, root) as executor:
        prepared = executor._prepared[0]
        real = prepared.run

        def renaming(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = real(feeds)
            out["relu_out"] = out.pop("a")  # a runtime that names the tensor its own way
            return out

        prepared.run = renaming
        message = (
            r"^partition 0 on a failed: its runner returned no tensor 'a' "
            r"\(it returned \['relu_out'\]\)$"
        )
        with pytest.raises(RunError, match=message):
            executor.run({"x": X})
        with pytest.raises(RunError, match=message):  # the dispatcher's path
            executor.stream([{"x": X}, {"x": X}])
        prepared.run = real
        outputs = executor.run({"x": X}).outputs
    for key, value in EXPECTED.items():
        np.testing.assert_array_equal(outputs[key], value)
