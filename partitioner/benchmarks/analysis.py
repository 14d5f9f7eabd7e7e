"""Benchmark: graph-analysis time on synthetic graphs of 1k-100k nodes against the 10 s budget."""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import onnx

from partitioner.graph.analysis import analyse

COMMAND = "python -m partitioner.benchmarks --only analysis"
BUDGET_S = 10.0
T = TypeVar("T")
SIZES = (1_000, 5_000, 20_000, 100_000)
QUICK_SIZES = (1_000, 5_000, 20_000)


def _chain(n: int) -> onnx.ModelProto:
    """Fallback builder: a MatMul/Add/Relu chain on [1, 64] floats."""
    import numpy as np
    from onnx import helper, numpy_helper

    nodes = []
    prev = "x"
    for i in range(n):
        op = ("MatMul", "Add", "Relu")[i % 3]
        ins = [prev, "w"] if op == "MatMul" else [prev, "b"] if op == "Add" else [prev]
        nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"n{i}"))
        prev = f"t{i}"
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info(prev, onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.full((64, 64), 0.01, np.float32), "w"),
         numpy_helper.from_array(np.zeros((1, 64), np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _build(n: int, shape: str) -> onnx.ModelProto:
    try:
        from models.synthetic import synthetic
    except ImportError:
        return _chain(n)
    return synthetic(n, shape=shape, seed=0, width=64)


def _timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Run ``fn``; return its result, wall seconds and this process's CPU seconds."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def run(quick: bool = False) -> str:
    """Time ``analyse`` on synthetic chain/layered/random graphs; return a Markdown section.

    Args:
        quick: Stop at 20k nodes instead of 100k.

    Returns:
        A Markdown section with one row per (shape, size).
    """
    rows = []
    for shape in ("chain", "layered", "random"):
        for n in QUICK_SIZES if quick else SIZES:
            model = _build(n, shape)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{shape}_{n}.onnx"
                onnx.save(model, path)
                mb = path.stat().st_size / 1e6
                _, infer_s, _ = _timed(partial(onnx.shape_inference.infer_shapes, model))
                analysed, total_s, cpu_s = _timed(partial(analyse, path))
            facts = analysed.facts
            rows.append(
                (shape, n, mb, len(facts.nodes), len(facts.edges), total_s, cpu_s, infer_s)
            )
            del analysed, facts, model
    lines = [
        "## Graph analysis speed",
        "",
        "`analyse()` on synthetic graphs (`models.synthetic`, [1, 64] float tensors): load,",
        "normalise (names, SSA check, topological order), onnx shape inference, constant",
        "folding, FLOPs/bytes/signatures and edges, from the saved .onnx file as",
        "`hetpart inspect` does (reading, SHA-256 and parsing included; every MatMul/Mul/Add",
        "of these graphs has its own weight, so the files are large). Measured once per row",
        "in this run: wall time, and the CPU time of this process (less sensitive to other",
        "load on a shared machine). The last columns are onnx's C++ `infer_shapes` alone on",
        f"the same model, for scale. Budget: {BUDGET_S:.0f} s wall for 100k nodes.",
        "",
        "| graph | nodes | edges | file (MB) | analyse wall (s) | analyse CPU (s) "
        "| µs / node (wall) | within budget | infer_shapes alone (s) | analyse / infer_shapes |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for shape, n, mb, nodes, edges, total_s, cpu_s, infer_s in rows:
        lines.append(
            f"| {shape} | {nodes:,} | {edges:,} | {mb:.0f} | {total_s:.2f} | {cpu_s:.2f} | "
            f"{1e6 * total_s / n:.1f} | "
            f"{'yes' if n < 100_000 or total_s < BUDGET_S else 'NO'} | "
            f"{infer_s:.2f} | {total_s / infer_s:.1f}x |"
        )
    lines += ["", f"Command: `{COMMAND}`" + (" (quick)" if quick else ""), ""]
    return "\n".join(lines)
