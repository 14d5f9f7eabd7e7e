"""Synthetic ONNX graphs of 1k-100k+ small nodes (chain, layered, random DAG), without torch."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from models.export import OPSET, finalize
from partitioner.errors import ModelError

logger = logging.getLogger(__name__)

SHAPES = ("chain", "layered", "random")

#: Single-input ops, drawn with these weights. "MatMul" and "Mul" also take an initializer.
_UNARY = ("MatMul", "Relu", "Tanh", "Sigmoid", "Mul", "Add")
_UNARY_P = np.array([0.3, 0.15, 0.2, 0.1, 0.15, 0.1])
#: Two-activation ops; Mean/Max/Min keep magnitudes bounded where Add alone would compound.
_BINARY = ("Add", "Mean", "Max", "Min")


class _Builder:
    """Appends nodes and initializers to one GraphProto in O(1) per node."""

    def __init__(self, width: int, seed: int) -> None:
        self.width = width
        self.rng = np.random.default_rng(seed)
        self.graph = onnx.GraphProto(name="synthetic")
        self.count = 0
        self._scale = np.float32(1.0 / np.sqrt(width))
        self._unary: list[int] = []
        self._uniform: list[float] = []

    def rand(self) -> float:
        """Uniform [0, 1) draw, batched (a numpy call per draw dominates 100k-node builds)."""
        if not self._uniform:
            self._uniform = self.rng.random(8192).tolist()
        return self._uniform.pop()

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in ``[low, high)``."""
        return min(low + int(self.rand() * (high - low)), high - 1)

    def unary_op(self) -> str:
        """Draw a single-input op (drawn in batches: per-call ``rng.choice`` is slow)."""
        if not self._unary:
            self._unary = self.rng.choice(len(_UNARY), size=4096, p=_UNARY_P).tolist()
        return _UNARY[self._unary.pop()]

    def binary_op(self) -> str:
        """Draw a two-activation op."""
        return _BINARY[self.randint(0, len(_BINARY))]

    def node(self, op: str, inputs: list[str]) -> str:
        """Add node ``op`` over ``inputs`` (plus its initializer when it needs one)."""
        i = self.count
        self.count += 1
        inputs = list(inputs)
        if op == "MatMul" and len(inputs) == 1:
            w = self.rng.standard_normal((self.width, self.width), dtype=np.float32) * self._scale
            inputs.append(self._initializer(f"w{i}", w))
        elif op in ("Mul", "Add") and len(inputs) == 1:
            low, high = (0.5, 1.0) if op == "Mul" else (-0.1, 0.1)
            c = self.rng.uniform(low, high, size=(self.width,)).astype(np.float32)
            inputs.append(self._initializer(f"c{i}", c))
        out = f"t{i}"
        proto = self.graph.node.add()
        proto.op_type, proto.name = op, f"n{i}_{op}"
        proto.input.extend(inputs)
        proto.output.append(out)
        return out

    def _initializer(self, name: str, array: np.ndarray) -> str:
        tensor = self.graph.initializer.add()
        tensor.name, tensor.data_type = name, TensorProto.FLOAT
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.tobytes()
        return name


def _chain(b: _Builder, x: str, n_nodes: int) -> str:
    out = x
    for _ in range(n_nodes):
        out = b.node(b.unary_op(), [out])
    return out


def _layered(b: _Builder, x: str, n_nodes: int, branches: int) -> str:
    prev = [x] * branches
    consumed: dict[str, bool] = {}
    while b.count < n_nodes - 1:
        layer: list[str] = []
        for j in range(min(branches, n_nodes - 1 - b.count)):
            if prev[0] != x and b.rand() < 0.3:
                inputs = [prev[j], prev[(j + 1) % branches]]
                op = b.binary_op()
            else:
                inputs, op = [prev[j]], b.unary_op()
            consumed.update(dict.fromkeys(inputs, True))
            out = b.node(op, inputs)
            consumed[out] = False
            layer.append(out)
        prev = layer + prev[len(layer) :]
    return b.node("Sum", [name for name, used in consumed.items() if not used])


def _random_dag(b: _Builder, x: str, n_nodes: int) -> str:
    outputs = [x]
    pending: list[str] = []  # produced but not yet consumed, swap-removed in O(1)
    where: dict[str, int] = {}

    def take(name: str) -> None:
        k = where.pop(name, None)
        if k is not None:
            last = pending.pop()
            if k < len(pending):
                pending[k], where[last] = last, k

    window = 64
    while b.count < n_nodes - 1:
        lo = max(0, len(outputs) - window)
        first = outputs[b.randint(lo, len(outputs))]
        if b.rand() < 0.02:  # an occasional long skip connection
            first = outputs[b.randint(0, len(outputs))]
        take(first)
        inputs = [first]
        if b.rand() < 0.5 and pending:
            second = pending[b.randint(0, len(pending))]
            take(second)
            inputs.append(second)
            op = b.binary_op()
        else:
            op = b.unary_op()
        out = b.node(op, inputs)
        outputs.append(out)
        where[out] = len(pending)
        pending.append(out)
    return b.node("Sum", pending or [outputs[-1]])


def synthetic(
    n_nodes: int, shape: str = "chain", seed: int = 0, width: int = 32, branches: int = 8
) -> onnx.ModelProto:
    """Build a valid, runnable ONNX graph of exactly ``n_nodes`` nodes on ``[1, width]`` floats.

    Args:
        n_nodes: Number of nodes (at least 2).
        shape: ``chain`` (each node feeds the next), ``layered`` (``branches`` parallel nodes per
            layer, neighbours mixed, a final Sum) or ``random`` (a random DAG: each node reads 1-2
            earlier outputs, mostly recent ones, then one Sum of every unconsumed output).
        seed: Seed of the op choice, connectivity and weights.
        width: Feature size of every activation (MatMul weights are ``[width, width]``).
        branches: Parallel width of the ``layered`` shape.

    Returns:
        The model (IR version 10, opset 18), single input ``x`` and single output ``y``.

    Raises:
        ModelError: A parameter is out of range or ``shape`` is unknown.
    """
    if shape not in SHAPES:
        raise ModelError(f"synthetic: unknown shape {shape!r} (valid: {', '.join(SHAPES)})")
    for key, value, low in (
        ("n_nodes", n_nodes, 2),
        ("width", width, 1),
        ("branches", branches, 1),
    ):
        if value < low:
            raise ModelError(f"synthetic: {key} must be >= {low}, got {value}")
    b = _Builder(width, seed)
    if shape == "chain":
        out = _chain(b, "x", n_nodes)
    elif shape == "layered":
        out = _layered(b, "x", n_nodes, branches)
    else:
        out = _random_dag(b, "x", n_nodes)
    assert b.count == n_nodes, (b.count, n_nodes)
    b.graph.node[-1].output[0] = "y"
    info = helper.make_tensor_value_info
    b.graph.input.append(info("x", TensorProto.FLOAT, [1, width]))
    b.graph.output.append(info("y", TensorProto.FLOAT, [1, width]))
    del out
    model = helper.make_model(b.graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "hetpart.models.synthetic"
    return finalize(model)


def build(params: Mapping[str, Any], path: Path, metadata: Mapping[str, str]) -> None:
    """Zoo builder: write ``synthetic(**params)`` to ``path``."""
    model = synthetic(
        int(params["n_nodes"]),
        str(params["shape"]),
        int(params["seed"]),
        int(params["width"]),
        int(params["branches"]),
    )
    finalize(model, metadata)
    onnx.save_model(model, str(path))
    logger.info(
        "synthetic %s graph of %d nodes written to %s", params["shape"], len(model.graph.node), path
    )
