"""Single-node ONNX models cut from an analysed model, and synthetic feeds, for profiling.

Everything here is the profiling *harness*: when it cannot build a well-formed single-node
model or a feed for it, it raises :class:`HarnessError`, which the profiler never caches as
a verdict about the runtime (the runtime was not even asked). Single-node models declare
the concrete shapes of the analysed graph for every input and output (never the symbolic or
rank-less types a model file may carry: OpenVINO refuses a dynamic-rank Parameter, and a
synthetic feed needs concrete dimensions), and feeds are always ``np.ndarray`` (0-d arrays
for scalars: NumPy arithmetic on a 0-d array returns a NumPy scalar, which ONNX Runtime
refuses as a feed).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from partitioner.errors import CostModelError
from partitioner.graph.normalise import outer_scope_inputs, subgraphs
from partitioner.profiling.timing import IR_VERSION


class HarnessError(CostModelError):
    """Our harness could not build a valid single-node model or feed (not a runtime verdict)."""


def _value_infos(graph: onnx.GraphProto) -> dict[str, onnx.ValueInfoProto]:
    infos = {vi.name: vi for vi in graph.value_info}
    infos.update({vi.name: vi for vi in graph.input})
    infos.update({vi.name: vi for vi in graph.output})
    return infos


def concrete_dims(info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    """The dimensions of a tensor value info when its shape is fully known, else None
    (not a tensor, no shape field: rank unknown, or a symbolic / missing dimension)."""
    if info.type.WhichOneof("value") != "tensor_type":
        return None
    ttype = info.type.tensor_type
    if not ttype.HasField("shape"):
        return None
    dims = []
    for d in ttype.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(d.dim_value)
    return tuple(dims)


class SingleNodeBuilder:
    """Builds one-node models from a model; value infos and initializers are indexed once.

    Args:
        model: The (analysed, normalised) model.
        shapes: Concrete shapes of the analysed graph by value name (``facts.tensors``:
            anything with a ``shape`` attribute, or a tuple). They replace a value info
            whose shape is symbolic or missing.
    """

    def __init__(self, model: onnx.ModelProto, shapes: Mapping[str, Any] | None = None) -> None:
        self._model = model
        self._infos = _value_infos(model.graph)
        self._inits = {t.name: t for t in model.graph.initializer}
        self._shapes = shapes or {}

    def _concrete(self, name: str, node: onnx.NodeProto) -> onnx.ValueInfoProto:
        info = self._infos.get(name)
        if info is None:
            raise HarnessError(f"node {node.name!r}: value {name!r} has no known type")
        if info.type.WhichOneof("value") != "tensor_type":
            return info  # sequences, optionals, maps keep their type
        if concrete_dims(info) is not None:
            return info
        known = self._shapes.get(name)
        dims = getattr(known, "shape", known)
        if dims is None or any(int(d) < 0 for d in dims):
            raise HarnessError(
                f"node {node.name!r}: value {name!r} has no concrete shape in the analysed graph"
            )
        return helper.make_tensor_value_info(name, info.type.tensor_type.elem_type,
                                             [int(d) for d in dims])

    def build(self, node: onnx.NodeProto,
              constants: Mapping[str, np.ndarray] | None = None) -> onnx.ModelProto:
        """A model running only ``node``: activations become inputs with concrete shapes,
        weights stay initializers, and so do the values in ``constants`` (see
        :meth:`computed_constants`).

        Raises:
            HarnessError: an input or output of the node has no known type or shape.
        """
        constants = constants or {}
        inputs, inits = [], []
        for name in self._input_names(node):
            if name in self._inits:
                inits.append(self._inits[name])
            elif name in constants:
                inits.append(numpy_helper.from_array(constants[name], name))
            else:
                inputs.append(self._concrete(name, node))
        outputs = [self._concrete(name, node) for name in node.output if name]
        graph = helper.make_graph([node], f"single_{node.name}", inputs, outputs, inits)
        single = helper.make_model(graph, opset_imports=list(self._model.opset_import))
        single.functions.extend(self._model.functions)
        single.ir_version = min(self._model.ir_version or IR_VERSION, IR_VERSION)
        return single

    @staticmethod
    def _input_names(node: onnx.NodeProto) -> list[str]:
        names = [n for n in node.input if n]
        for sub in subgraphs(node):
            names += [n for n in outer_scope_inputs(sub) if n not in names]
        return list(dict.fromkeys(names))

    def computed_constants(self, node: onnx.NodeProto) -> dict[str, np.ndarray]:
        """The values of ``node``'s small integer inputs that the graph computes from shapes
        (axes, sizes, repeats... made by Shape/Gather/Concat chains), evaluated once with ONNX
        Runtime on the subgraph that produces them, fed synthetic graph inputs of the analysed
        shapes. Alone, such an input is a Parameter; OpenVINO then refuses e.g. an Unsqueeze
        whose output rank depends on it ("doesn't support ... dynamic rank"), while in the
        whole model it sees the value. Empty when there is no such input.

        Raises:
            HarnessError: a producing subgraph too large or that cannot be evaluated.
        """
        graph_inputs = {vi.name for vi in self._model.graph.input}
        wanted = [name for name in self._input_names(node)
                  if name not in self._inits and name not in graph_inputs
                  and self._small_integer(name, node)]
        if not wanted:
            return {}
        cone = self._producers_of(wanted)
        used = {n for producer in cone for n in self._input_names(producer)}
        inputs = [self._concrete(n, node) for n in sorted(used & graph_inputs - self._inits.keys())]
        outputs = [self._concrete(n, node) for n in wanted]
        inits = [self._inits[n] for n in sorted(used & self._inits.keys())]
        graph = helper.make_graph(cone, f"constants_of_{node.name}", inputs, outputs, inits)
        producer = helper.make_model(graph, opset_imports=list(self._model.opset_import))
        producer.functions.extend(self._model.functions)
        producer.ir_version = min(self._model.ir_version or IR_VERSION, IR_VERSION)
        import onnxruntime as ort  # the reference runtime for shape arithmetic

        try:
            session = ort.InferenceSession(producer.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
            values = session.run(wanted, random_feeds(producer))
        except Exception as exc:  # noqa: BLE001 - ours: the cut or the synthetic feeds
            raise HarnessError(f"node {node.name!r}: could not evaluate the inputs "
                               f"{', '.join(wanted)}: {str(exc).splitlines()[0]}") from None
        return {name: np.asarray(v) for name, v in zip(wanted, values, strict=True)}

    def _small_integer(self, name: str, node: onnx.NodeProto) -> bool:
        """Whether ``name`` is an integer tensor of at most ``MAX_CONSTANT_ELEMENTS`` elements."""
        info = self._infos.get(name)
        if info is None or info.type.WhichOneof("value") != "tensor_type":
            return False
        if info.type.tensor_type.elem_type not in (onnx.TensorProto.INT64,
                                                   onnx.TensorProto.INT32):
            return False
        try:
            dims = concrete_dims(self._concrete(name, node))
        except HarnessError:
            return False
        return dims is not None and int(np.prod(dims, dtype=np.int64)) <= MAX_CONSTANT_ELEMENTS

    @functools.cached_property
    def _producer(self) -> dict[str, int]:
        """Value name -> position of the node that computes it (built once per model)."""
        return {out: i for i, n in enumerate(self._model.graph.node) for out in n.output}

    def _producers_of(self, names: list[str]) -> list[onnx.NodeProto]:
        """The nodes computing ``names`` from graph inputs and initializers, in graph order;
        at most ``MAX_CONSTANT_CONE`` of them (beyond that the values are not shape
        arithmetic)."""
        producer = self._producer
        needed: set[int] = set()
        stack = [producer[n] for n in names if n in producer]
        while stack:
            index = stack.pop()
            if index in needed:
                continue
            needed.add(index)
            if len(needed) > MAX_CONSTANT_CONE:
                raise HarnessError(f"inputs {', '.join(names)} take more than "
                                   f"{MAX_CONSTANT_CONE} nodes to compute")
            node = self._model.graph.node[index]
            stack += [producer[n] for n in self._input_names(node) if n in producer]
        return [self._model.graph.node[i] for i in sorted(needed)]


#: Producers evaluated at most for one node's integer inputs (shape arithmetic is short).
MAX_CONSTANT_CONE = 64
#: Integer inputs up to this many elements count as parameters (axes, sizes, repeats).
MAX_CONSTANT_ELEMENTS = 16




def random_feed(info: onnx.ValueInfoProto, rng: np.random.Generator) -> np.ndarray:
    """A synthetic value for a graph input: small normal floats, zero ints, true bools.

    Always an ``np.ndarray`` of the declared dtype and shape (0-d for scalars).

    Raises:
        HarnessError: the input is not a tensor, or has no rank or a symbolic dimension.
    """
    if info.type.WhichOneof("value") != "tensor_type":
        raise HarnessError(f"input {info.name!r} is not a tensor; no synthetic feed for it")
    ttype = info.type.tensor_type
    if not ttype.HasField("shape"):
        raise HarnessError(f"input {info.name!r} has no shape (unknown rank)")
    dims = []
    for d in ttype.shape.dim:
        if not d.HasField("dim_value"):
            raise HarnessError(f"input {info.name!r} has a symbolic dimension {d.dim_param!r}")
        dims.append(d.dim_value)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type))
    except Exception as exc:  # unknown or undefined elem_type
        raise HarnessError(f"input {info.name!r}: no NumPy dtype for elem_type "
                           f"{ttype.elem_type} ({exc})") from None
    if np.issubdtype(dtype, np.floating):
        value = np.asarray(rng.standard_normal(dims) * 0.5).astype(dtype)
    elif dtype == np.bool_:
        value = np.ones(dims, dtype=dtype)
    else:
        value = np.zeros(dims, dtype=dtype)
    # Arithmetic on 0-d arrays yields NumPy scalars: make sure every feed is an ndarray.
    return np.ascontiguousarray(np.asarray(value, dtype=dtype)).reshape(dims)


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic feeds for every graph input of ``model`` that is not an initializer."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    return {vi.name: random_feed(vi, rng) for vi in model.graph.input if vi.name not in inits}
