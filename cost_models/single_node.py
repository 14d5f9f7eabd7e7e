"""Single-node ONNX models cut from an analysed model, and synthetic feeds, for profiling."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from partitioner.errors import CostModelError
from partitioner.measure import IR_VERSION
from partitioner.normalise import outer_scope_inputs, subgraphs


def _value_infos(graph: onnx.GraphProto) -> dict[str, onnx.ValueInfoProto]:
    infos = {vi.name: vi for vi in graph.value_info}
    infos.update({vi.name: vi for vi in graph.input})
    infos.update({vi.name: vi for vi in graph.output})
    return infos


class SingleNodeBuilder:
    """Builds one-node models from a model; value infos and initializers are indexed once."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self._model = model
        self._infos = _value_infos(model.graph)
        self._inits = {t.name: t for t in model.graph.initializer}

    def build(self, node: onnx.NodeProto) -> onnx.ModelProto:
        """A model running only ``node``: activations become inputs, weights stay initializers.

        Raises:
            CostModelError: an input or output of the node has no known type and shape.
        """
        names = [n for n in node.input if n]
        for sub in subgraphs(node):
            names += [n for n in outer_scope_inputs(sub) if n not in names]
        inputs, inits = [], []
        for name in dict.fromkeys(names):
            if name in self._inits:
                inits.append(self._inits[name])
            elif name in self._infos:
                inputs.append(self._infos[name])
            else:
                raise CostModelError(f"node {node.name!r}: input {name!r} has no known shape")
        outputs = []
        for name in node.output:
            if not name:
                continue
            if name not in self._infos:
                raise CostModelError(f"node {node.name!r}: output {name!r} has no known shape")
            outputs.append(self._infos[name])
        graph = helper.make_graph([node], f"single_{node.name}", inputs, outputs, inits)
        single = helper.make_model(graph, opset_imports=list(self._model.opset_import))
        single.functions.extend(self._model.functions)
        single.ir_version = min(self._model.ir_version or IR_VERSION, IR_VERSION)
        return single


def random_feed(info: onnx.ValueInfoProto, rng: np.random.Generator) -> np.ndarray:
    """A synthetic value for a graph input: small normal floats, zero ints, true bools.

    Raises:
        CostModelError: the input has a symbolic or missing dimension.
    """
    ttype = info.type.tensor_type
    dims = []
    for d in ttype.shape.dim:
        if not d.HasField("dim_value"):
            raise CostModelError(f"input {info.name!r} has a symbolic dimension {d.dim_param!r}")
        dims.append(d.dim_value)
    dtype = helper.tensor_dtype_to_np_dtype(ttype.elem_type)
    if np.issubdtype(dtype, np.floating):
        return (rng.standard_normal(dims) * 0.5).astype(dtype)
    if dtype == np.bool_:
        return np.ones(dims, dtype=dtype)
    return np.zeros(dims, dtype=dtype)


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, Any]:
    """Synthetic feeds for every graph input of ``model`` that is not an initializer."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    return {vi.name: random_feed(vi, rng) for vi in model.graph.input if vi.name not in inits}
