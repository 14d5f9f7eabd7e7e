"""Inputs as users pass them: NumPy and Python scalars, 0-d arrays and lists, through every
entry point (Session, Executor, each runner, the ONNX backend); wrong dtypes and shapes are
one-line RunErrors naming the input, what it expects and what it got."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_plan_fixtures import RUNNERS, alternate, cluster, device, save_and_analyse

from partitioner import Session
from partitioner.errors import RunError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.io import load_plan, write_plan
from partitioner.registry import get_runner
from partitioner.runtime.executor import Executor
from partitioner.runtime.feeds import InputSpec, conform
from partitioner.testing.onnx_backend import PartitionedBackend


def scalar_model() -> onnx.ModelProto:
    """s = x * v (x a float scalar, v float[3]); n = -k (k an int64 scalar)."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "v"], ["s"], name="mul"),
            helper.make_node("Neg", ["k"], ["n"], name="neg"),
        ],
        "scalars",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [3]),
        ],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("n", TensorProto.INT64, []),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


#: The same input, as users pass it (onnxruntime 1.32 refuses NumPy scalars; 1.31 took them).
FEEDS: dict[str, dict[str, Any]] = {
    "numpy-scalars": {"x": np.float32(1.5), "k": np.int64(3), "v": np.ones(3, np.float32)},
    "0-d-arrays": {"x": np.array(1.5, np.float32), "k": np.array(3), "v": np.ones(3, np.float32)},
    "python": {"x": 1.5, "k": 3, "v": [1, 1.0, True]},
    "other-widths": {"x": np.float64(1.5), "k": np.int32(3), "v": np.ones(3, np.float16)},
    "python-int-for-float": {"x": 1.5, "k": 3, "v": [1, 1, 1]},
}
EXPECTED: dict[str, np.ndarray] = {"s": np.full(3, 1.5, np.float32), "n": np.array(-3, np.int64)}


def _check(outputs: dict[str, Any]) -> None:
    for name, value in EXPECTED.items():
        got = np.asarray(outputs[name])
        assert got.dtype == value.dtype and got.shape == value.shape, (name, got)
        np.testing.assert_array_equal(got, value)


def _plan_dir(tmp_path: Path, runners: tuple[str, str]) -> Path:
    analysed = save_and_analyse(scalar_model(), tmp_path, "model")
    devices = [device("a", runner=runners[0]), device("b", runner=runners[1])]
    plan = plan_from_assignment(analysed, cluster(*devices), alternate(analysed, ["a", "b"]))
    write_plan(plan, analysed, tmp_path / "plan")
    return tmp_path / "plan"


RUNNER_PAIRS = [
    pytest.param(("onnxruntime", "reference"), id="ort+reference"),
    pytest.param(("openvino", "onnxruntime"), id="openvino+ort", marks=pytest.mark.openvino),
]


def _need(runners: tuple[str, ...]) -> None:
    for name in runners:
        if not get_runner(name).available():
            pytest.skip(f"the {name} runner is not installed here")


@pytest.mark.parametrize("runners", RUNNER_PAIRS)
def test_session_and_executor_take_scalars(tmp_path: Path, runners: tuple[str, str]) -> None:
    _need(runners)
    root = _plan_dir(tmp_path, runners)
    assert {p.device for p in load_plan(root).partitions} == {"a", "b"}
    with Session(root) as session:
        for feeds in FEEDS.values():
            s, n = session.run(["s", "n"], feeds)
            _check({"s": s, "n": n})
    with Executor(load_plan(root), root) as executor:
        for feeds in FEEDS.values():
            _check(executor.run(feeds).outputs)
        for result in executor.stream(list(FEEDS.values())).results:  # the dispatcher's path
            _check(result.outputs)




@pytest.mark.parametrize("name", RUNNERS)
def test_every_runner_takes_scalars(name: str) -> None:
    _need((name,))
    part = get_runner(name).prepare(scalar_model(), {"label": "scalars"})
    for feeds in FEEDS.values():
        outputs = part.run(feeds)
        assert set(outputs) == {"s", "n"}
        if name == "null":
            assert np.asarray(outputs["n"]).dtype == np.int64
        else:
            _check(outputs)
    # A float for an integer input is never truncated: the runner says so, on one line.
    truncated = r"^scalars: input 'k': expected int64\[\], got float64\[\]$"
    with pytest.raises(RunError, match=truncated):
        part.run({**FEEDS["python"], "k": 1.5})


def test_onnx_backend_takes_scalars() -> None:
    rep = PartitionedBackend.prepare(scalar_model())
    assert rep.num_partitions == 2
    for feeds in FEEDS.values():
        s, n = rep.run([feeds["x"], feeds["k"], feeds["v"]])
        _check({"s": s, "n": n})
    s, n = rep.run({"x": 1.5, "k": 3, "v": [1.0, 1.0, 1.0]})
    _check({"s": s, "n": n})


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"k": 1.5}, r"input 'k': expected int64\[\], got float64\[\]"),
        ({"k": np.float32(2.0)}, r"input 'k': expected int64\[\], got float32\[\]"),
        ({"x": "1.5"}, r"input 'x': expected float32\[\], got str\[\]"),
        ({"x": np.array([1.5], np.float32)}, r"input 'x': expected float32\[\], got float32\[1\]"),
        ({"v": [1.0, 2.0]}, r"input 'v': expected float32\[3\], got float64\[2\]"),
        ({"v": np.ones((1, 3))}, r"input 'v': expected float32\[3\], got float64\[1,3\]"),
        ({"v": [1j, 2, 3]}, r"input 'v': expected float32\[3\], got complex128\[3\]"),
        ({"k": True}, None),  # a bool is a fine integer
    ],
)
def test_wrong_dtype_or_shape_is_one_line(
    tmp_path: Path, feeds: dict[str, Any], message: str | None
) -> None:
    root = _plan_dir(tmp_path, ("onnxruntime", "onnxruntime"))
    with Session(root) as session:
        if message is None:
            session.run(None, {**FEEDS["python"], **feeds})
            return
        with pytest.raises(RunError, match=f"^{message}$"):
            session.run(None, {**FEEDS["python"], **feeds})
    with pytest.raises(RunError, match=f"^{message}$"):
        PartitionedBackend.prepare(scalar_model()).run({**FEEDS["python"], **feeds})


def test_conform_rules() -> None:
    image = InputSpec.of("x", "float32", [1, 3, 4, 4])
    with pytest.raises(
        RunError, match=r"^input 'x': expected float32\[1,3,4,4\], got float64\[3,4,4\]$"
    ):
        conform(image, np.zeros((3, 4, 4)))
    same = np.zeros((1, 3, 4, 4), np.float32)
    assert conform(image, same) is same  # the common case costs no copy
    strided = np.zeros((1, 3, 4, 8), np.float32)[..., ::2]
    assert conform(image, strided).flags.c_contiguous
    small = InputSpec.of("u", "uint8", [2])
    assert conform(small, [1, 255]).dtype == np.uint8
    assert conform(small, np.array([1, 2], np.int64)).dtype == np.uint8  # values fit
    for bad in ([1, 300], [-1, 2], np.array([1.0, 2.0])):
        with pytest.raises(RunError, match=r"^input 'u': expected uint8\[2\], got "):
            conform(small, bad)
    symbolic = InputSpec.of("t", "int64", ["batch", 4])
    assert conform(symbolic, [[1, 2, 3, 4]] * 5).shape == (5, 4)
    with pytest.raises(RunError, match=r"^p: input 't': expected int64\[\?,4\], got int64\[5\]$"):
        conform(symbolic, [1, 2, 3, 4, 5], "p")
    text = InputSpec.of("w", "str", [2])
    assert conform(text, ["a", "b"]).dtype == object
    with pytest.raises(RunError, match=r"expected str\[2\], got float64\[2\]"):
        conform(text, [1.0, 2.0])
    flag = InputSpec.of("f", "bool", [])
    assert conform(flag, True).dtype == np.bool_
    with pytest.raises(RunError, match=r"expected bool\[\], got int64\[\]"):
        conform(flag, 1)
    # Values that are not tensors (sequences, optionals) pass as given.
    seq = InputSpec.of("q", "sequence(float32)", None)
    items = [np.zeros(2, np.float32)]
    assert conform(seq, items) is items
    assert conform(InputSpec.of("o", "optional(float32)", None), None) is None
