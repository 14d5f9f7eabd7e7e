"""Constant folding: Constant nodes, all-constant-input nodes and Shape/Size become initializers."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from partitioner.graph.normalise import Row, read_rows
from partitioner.graph.shapes import ShapeTable

logger = logging.getLogger(__name__)

#: Ops never folded: random generators, and DequantizeLinear (folding would expand
#: compact quantized weights into float ones and change what the model stores).
NEVER_FOLD = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "DequantizeLinear", "If", "Loop", "Scan",
})

#: A folded output larger than this many bytes, and larger than the node's constant
#: inputs, is left as a node: folding it would bloat the weights (e.g. ConstantOfShape).
MAX_FOLDED_BYTES = 1 << 20


def _shape_value(node: onnx.NodeProto, dims: tuple[int, ...]) -> np.ndarray:
    rank = len(dims)
    start, end = 0, rank
    for attr in node.attribute:
        if attr.name == "start":
            start = attr.i
        elif attr.name == "end":
            end = attr.i
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return np.array(dims[start:end], dtype=np.int64)


def fold_constants(
    model: onnx.ModelProto, rows: list[Row], table: ShapeTable, source: str
) -> list[Row]:
    """Fold constant-producing nodes of the main graph into initializers, in place.

    Nodes producing graph outputs, nodes in custom domains, control flow, nodes producing
    sequences or optionals (no initializer can hold them) and the ops in ``NEVER_FOLD``
    stay. Values are computed with ``onnx.reference`` (exact for the integer shape
    arithmetic that makes up most folded subgraphs). Initializers no remaining node reads
    are dropped.

    Args:
        model: Model with nodes in topological order.
        rows: ``read_rows(model.graph)``.
        table: Shapes known so far (``Shape``/``Size`` of a known shape fold).
        source: Model name for log messages.

    Returns:
        The rows of the nodes kept (``rows`` itself when nothing folded).
    """
    graph = model.graph
    graph_outputs = {vi.name for vi in graph.output}
    folder = _Folder(model, table, source)
    folded: set[int] = set()
    for i, row in enumerate(rows):
        const_in = all(n in folder.consts for n in row.deps)
        if _may_fold(row, const_in, graph_outputs) and folder.fold(row, const_in):
            folded.add(i)
    if not folded:
        return rows
    logger.info("%s: folded %d constant nodes", source, len(folded))
    return _keep_rows(graph, [r for i, r in enumerate(rows) if i not in folded], folder.new_inits)


def _may_fold(row: Row, const_in: bool, graph_outputs: set[str]) -> bool:
    """Whether ``row`` is a candidate for folding: all inputs constant (or a Shape/Size, whose
    input shape may be known), a standard-domain op not in ``NEVER_FOLD``, with outputs, no
    subgraphs and no graph output."""
    if not const_in and row.op_type not in ("Shape", "Size"):
        return False
    if row.domain not in ("", "ai.onnx") or row.op_type in NEVER_FOLD or not row.outputs:
        return False
    return not (row.has_subgraphs or any(o in graph_outputs for o in row.outputs))


def _is_constant_value(node: onnx.NodeProto) -> bool:
    """A Constant node holding its tensor in a ``value`` attribute (copied as it is)."""
    return (node.op_type == "Constant" and len(node.attribute) == 1
            and node.attribute[0].name == "value")


class _Folder:
    """The constants known while ``fold_constants`` walks the graph: initializers, the
    initializers folding made (``new_inits``) and their values, computed once."""

    def __init__(self, model: onnx.ModelProto, table: ShapeTable, source: str) -> None:
        self.model = model
        self.table = table
        self.source = source
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.inits = {t.name: t for t in model.graph.initializer}
        self.values: dict[str, np.ndarray] = {}
        self.new_inits: dict[str, onnx.TensorProto] = {}
        self.consts = set(self.inits)

    def value(self, name: str) -> np.ndarray:
        """The value of constant ``name`` (an initializer, old or new)."""
        if name not in self.values:
            tensor = self.inits[name] if name in self.inits else self.new_inits[name]
            self.values[name] = numpy_helper.to_array(tensor)
        return self.values[name]

    def fold(self, row: Row, const_in: bool) -> bool:
        """Fold ``row`` into initializers of its outputs; False (the node stays) when its
        value is unknown, not a tensor, too large or cannot be computed."""
        node = row.proto
        try:
            if _is_constant_value(node):
                self._add_constant(node)
                return True
            outs = self._outputs(row, const_in)
        except Exception as exc:  # reference evaluator errors are untyped; keep the node
            logger.debug("%s: cannot fold %s (%s): %s", self.source, node.name, row.op_type, exc)
            return False
        if outs is None:
            return False
        for name, out in zip(row.outputs, outs, strict=False):
            if not name:
                continue
            arr = np.asarray(out)
            self.values[name] = arr
            self.new_inits[name] = numpy_helper.from_array(arr, name)
            self.consts.add(name)
        return True

    def _add_constant(self, node: onnx.NodeProto) -> None:
        """A Constant's ``value`` tensor, renamed to its output, becomes an initializer."""
        tensor = onnx.TensorProto()
        tensor.CopyFrom(node.attribute[0].t)
        tensor.name = node.output[0]
        self.new_inits[tensor.name] = tensor
        self.consts.add(tensor.name)

    def _outputs(self, row: Row, const_in: bool) -> list[Any] | None:
        """The values of ``row``'s outputs: a Shape/Size of a known shape from the shape
        table, else an all-constant node evaluated; None when neither applies or the result
        may not be folded."""
        op, ins = row.op_type, row.deps
        if op in ("Shape", "Size") and ins and self.table.get(ins[0], (0, None))[1] is not None:
            dims = self.table[ins[0]][1]
            assert dims is not None
            return [_shape_value(row.proto, dims) if op == "Shape"
                    else np.array(int(np.prod(dims, dtype=np.int64)), dtype=np.int64)]
        if const_in and (ins or op == "Constant"):
            return self._evaluated(row.proto, ins)
        return None

    def _evaluated(self, node: onnx.NodeProto, ins: list[str]) -> list[Any] | None:
        """``node`` run by ``onnx.reference`` on its constant inputs; None when an output is
        a sequence or optional, or larger than ``MAX_FOLDED_BYTES`` and its inputs."""
        from onnx.reference import ReferenceEvaluator

        in_bytes = sum(self.value(n).nbytes for n in ins)
        feeds = {n: self.value(n) for n in ins}
        sess = ReferenceEvaluator(_node_model(node, self.opsets, self.model.ir_version))
        outs = list(sess.run(None, feeds))
        if not all(isinstance(o, np.ndarray | np.generic) for o in outs):
            return None  # a sequence or optional: initializers can only hold tensors
        out_bytes = sum(np.asarray(o).nbytes for o in outs)
        if out_bytes > MAX_FOLDED_BYTES and out_bytes > in_bytes:
            logger.debug("%s: not folding %s (%d bytes)", self.source, node.name, out_bytes)
            return None
        return outs


def drop_dead_nodes(model: onnx.GraphProto | onnx.ModelProto, rows: list[Row],
                    source: str) -> list[Row]:
    """Remove the nodes of the main graph whose outputs reach no graph output, in place.

    Exporters leave such nodes behind (a Transpose whose only consumers were shape
    arithmetic that ``fold_constants`` replaced, say). Kept, a dead node would be placed
    like any other and could end up alone in a runner call with nothing to return.

    Returns:
        The rows of the nodes kept (``rows`` itself when every node is live).
    """
    graph = model.graph if isinstance(model, onnx.ModelProto) else model
    live: set[str] = {vi.name for vi in graph.output}
    keep: list[Row] = []
    for row in reversed(rows):
        if any(o in live for o in row.outputs if o):
            live.update(row.deps)
            keep.append(row)
    if len(keep) == len(rows):
        return rows
    keep.reverse()
    kept_names = {r.name for r in keep}
    logger.info("%s: dropped %d node(s) whose outputs nothing reads: %s", source,
                len(rows) - len(keep), [r.name for r in rows if r.name not in kept_names][:10])
    return _keep_rows(graph, keep, {})


def _keep_rows(graph: onnx.GraphProto, kept_rows: list[Row],
               new_inits: dict[str, onnx.TensorProto]) -> list[Row]:
    """Rewrite ``graph`` to the nodes of ``kept_rows`` and the initializers (old, and
    ``new_inits`` from folding) they or the graph outputs still read."""
    inits = {t.name for t in graph.initializer}
    used: set[str] = {vi.name for vi in graph.output}
    for row in kept_rows:
        used.update(row.deps)
    kept_inits = [t for t in graph.initializer if t.name in used]
    kept_inits.extend(t for name, t in new_inits.items() if name in used)
    kept = [r.proto for r in kept_rows]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    input_names = {t.name for t in kept_inits}
    stale = [vi for vi in graph.input if vi.name in inits and vi.name not in input_names]
    for vi in stale:
        graph.input.remove(vi)
    return read_rows(graph)


def _node_model(node: onnx.NodeProto, opsets: dict[str, int], ir_version: int) -> onnx.ModelProto:
    graph = onnx.helper.make_graph(
        [node], "fold", [onnx.helper.make_tensor_value_info(n, 0, None) for n in node.input if n],
        [onnx.helper.make_tensor_value_info(n, 0, None) for n in node.output if n],
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()]
    )
    model.ir_version = ir_version
    return model
