"""Graph analysis: load, normalise, shape, fold, and describe an ONNX model as GraphFacts."""

from __future__ import annotations

import gc
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import onnx
from onnx import numpy_helper

from partitioner.errors import ShapeError
from partitioner.graph import shapes as sh
from partitioner.graph.flops import control_flow_flops, node_flops
from partitioner.graph.folding import drop_dead_nodes, fold_constants
from partitioner.graph.loading import load
from partitioner.graph.normalise import Row, read_rows, topological_sort, unique_node_names
from partitioner.graph.types import EdgeInfo, GraphFacts, NodeInfo, TensorInfo

logger = logging.getLogger(__name__)

_DEFAULT_DOMAINS = ("", "ai.onnx")
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


@dataclass
class AnalysedModel:
    """A normalised model and the plain-data facts about it.

    Attributes:
        source: The path given, or ``"<ModelProto>"``.
        model: Normalised ModelProto: unique node names, topological order, every
            activation with a concrete shape in ``value_info``, constants folded into
            initializers, ``ir_version <= 10``, initializer data in memory.
        facts: Nodes, edges, inputs, outputs and tensors as plain data.
        base_dir: Folder of the file (external data lives there), or ``None``.
    """

    source: str
    model: onnx.ModelProto
    facts: GraphFacts
    base_dir: Path | None
    _nodes: dict[str, onnx.NodeProto] = field(default_factory=dict, repr=False)

    def node_proto(self, name: str) -> onnx.NodeProto:
        """Return the NodeProto called ``name`` (KeyError if absent)."""
        if not self._nodes:
            self._nodes = {n.name: n for n in self.model.graph.node}
        return self._nodes[name]

    def to_networkx(self) -> nx.DiGraph:
        """A DiGraph of the facts: nodes keyed by name with attribute ``info`` (NodeInfo).

        Edges carry ``tensor`` (the first tensor between the pair), ``tensors`` (all of
        them) and ``nbytes`` (their total).
        """
        g = nx.DiGraph()
        g.add_nodes_from((n.name, {"info": n}) for n in self.facts.nodes)
        for e in self.facts.edges:
            data = g.get_edge_data(e.src, e.dst)
            if data is None:
                g.add_edge(e.src, e.dst, tensor=e.tensor, tensors=(e.tensor,), nbytes=e.nbytes)
            else:
                data["tensors"] = (*data["tensors"], e.tensor)
                data["nbytes"] += e.nbytes
        return g


def analyse(
    model: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    sample_inputs: Mapping[str, Any] | None = None,
) -> AnalysedModel:
    """Load and analyse an ONNX model.

    Args:
        model: Path to an ONNX file (external data beside it) or a ModelProto (copied).
        input_shapes: Concrete shapes for inputs with symbolic dimensions.
        sample_inputs: Example input values (arrays; lists or None for sequence and
            optional inputs). Used only when onnx shape inference leaves values unshaped
            and the model is run on onnxruntime to read their shapes: shapes that depend on
            input values (a size read from an input) or on sequence inputs come out right
            only with real samples; without them tensor inputs are zeros.

    Returns:
        The normalised model with its facts.

    Raises:
        ModelError: The file is missing, not ONNX, truncated, has bad external data,
            reads undefined values, or has a cycle.
        ShapeError: An input keeps a symbolic dimension, ``input_shapes`` names an
            unknown input, or a node's output shape cannot be determined.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # analysis allocates ~10 objects per node and frees none of them
    try:
        return _analyse(model, input_shapes, sample_inputs)
    finally:
        if gc_was_enabled:
            gc.enable()


def _analyse(
    model: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None,
    sample_inputs: Mapping[str, Any] | None,
) -> AnalysedModel:
    loaded = load(model)
    m, source = loaded.model, loaded.source
    graph = m.graph
    _check_opsets(m, source)
    unique_node_names(graph)
    rows = topological_sort(graph, read_rows(graph), source)
    sh.apply_input_shapes(graph, input_shapes or {}, source)
    sh.check_inputs_concrete(graph, source)

    table, inferred, others = _infer_into(m, rows, source)
    missing = _unshaped(rows, table, others)
    kept = drop_dead_nodes(m, fold_constants(m, rows, table, source), source)
    if missing and kept is not rows:
        table, inferred, others = _infer_into(m, kept, source)
        missing = _unshaped(kept, table, others)
    rows = kept
    if missing:
        _shape_by_running(m, rows, missing, table, source, sample_inputs)
    _write_value_info(m, rows, table, inferred, others)
    facts = _facts(m, rows, table, others, loaded.name, loaded.sha256)
    logger.info("%s: %d nodes, %d edges", source, len(facts.nodes), len(facts.edges))
    return AnalysedModel(source=source, model=m, facts=facts, base_dir=loaded.base_dir)


def _check_opsets(m: onnx.ModelProto, source: str) -> None:
    newest = onnx.defs.onnx_opset_version()
    for opset in m.opset_import:
        if opset.domain in _DEFAULT_DOMAINS and opset.version > newest:
            first = m.graph.node[0]
            raise ShapeError(
                f"{source}: opset ai.onnx {opset.version} is newer than the newest this "
                f"analysis knows ({newest}); cannot shape node {first.name or '(unnamed)'!r} "
                f"({first.op_type})"
            )


def _infer_into(
    m: onnx.ModelProto, rows: list[Row], source: str
) -> tuple[sh.ShapeTable, onnx.GraphProto, dict[str, onnx.TypeProto]]:
    """Infer shapes; copy subgraph value_info back into control-flow nodes.

    Returns:
        The shape table, the inferred graph, and the types of non-tensor values
        (sequences, optionals, maps: they have no shape to find).
    """
    inferred = sh.infer(m, source)
    for i, row in enumerate(rows):
        if row.has_subgraphs:
            row.proto.CopyFrom(inferred.node[i])
    table: sh.ShapeTable = {}
    others: dict[str, onnx.TypeProto] = {}
    sh.shape_table(m.graph, table, others=others)
    sh.shape_table(inferred, table, initializers=False, others=others)
    return table, inferred, others


def _unshaped(
    rows: list[Row], table: sh.ShapeTable, others: Mapping[str, onnx.TypeProto]
) -> list[str]:
    """Tensor outputs (or outputs of unknown type) whose shape is still unknown."""
    return [
        out for row in rows for out in row.outputs
        if out and table.get(out, (0, None))[1] is None and out not in others
    ]


def _shape_by_running(m: onnx.ModelProto, rows: list[Row], missing: list[str],
                      table: sh.ShapeTable, source: str,
                      samples: Mapping[str, Any] | None) -> None:
    producer = {out: row.proto for row in rows for out in row.outputs}
    first = producer[missing[0]]
    logger.info("%s: onnx inference left %d values unshaped (first from %s); running "
                "onnxruntime to read them", source, len(missing), first.name)
    try:
        found = sh.shapes_by_running(m, missing, table, source, samples)
    except ShapeError as exc:
        op = f"{first.domain}::{first.op_type}" if first.domain else first.op_type
        raise ShapeError(
            f"{source}: cannot determine the shape of {missing[0]!r} produced by node "
            f"{first.name!r} ({op}): onnx shape inference has no result and onnxruntime "
            f"cannot run the model ({exc})"
        ) from None
    table.update(found)


def _write_value_info(
    m: onnx.ModelProto, rows: list[Row], table: sh.ShapeTable, inferred: onnx.GraphProto,
    others: Mapping[str, onnx.TypeProto],
) -> None:
    """Record every activation's concrete shape: value_info, and graph outputs' types.

    Non-tensor values (``others``) keep their sequence/optional/map type: a tensor type
    in their place makes onnxruntime refuse the model.
    """
    graph = m.graph
    outputs = {vi.name: vi for vi in graph.output}
    needed = dict.fromkeys(
        out for row in rows for out in row.outputs if out and out not in outputs
    )
    graph.ClearField("value_info")
    infos = []
    for vi in inferred.value_info:
        name = vi.name
        if name in needed and (table[name][1] is not None or name in others):
            del needed[name]
            infos.append(vi)
    make = onnx.helper.make_tensor_value_info
    for name in needed:
        other = others.get(name)
        infos.append(onnx.helper.make_value_info(name, other) if other is not None
                     else make(name, *table[name]))
    graph.value_info.extend(infos)
    for name, vi in outputs.items():
        other = others.get(name)
        if other is not None:
            if vi.type.WhichOneof("value") != other.WhichOneof("value"):
                vi.type.CopyFrom(other)
            continue
        elem, dims = table[name]
        tt = vi.type.tensor_type
        tt.elem_type = elem
        tt.ClearField("shape")
        for d in dims or ():
            tt.shape.dim.add().dim_value = d


def _facts(
    m: onnx.ModelProto, rows: list[Row], table: sh.ShapeTable,
    others: Mapping[str, onnx.TypeProto], name: str, sha: str
) -> GraphFacts:
    """Plain-data facts. Non-tensor values get shape ``()``, a type name such as
    ``sequence(float32)`` as dtype, and 0 bytes (their size is only known at run time)."""
    graph = m.graph
    inits = {t.name: t for t in graph.initializer}
    opsets = {o.domain or "": o.version for o in m.opset_import}
    nbytes: dict[str, int] = {}
    dims_of: dict[str, tuple[int, ...] | None] = {}
    tensor_nbytes = sh.tensor_nbytes
    size_cache: dict[tuple[int, tuple[int, ...] | None], int] = {}
    for key, entry in table.items():
        dims = entry[1]
        dims_of[key] = dims
        size = size_cache.get(entry)
        if size is None:
            size = size_cache[entry] = tensor_nbytes(entry[0], dims) if dims is not None else 0
        nbytes[key] = size
    shape_of = dims_of.get
    dtype_name = sh.dtype_name
    get_nbytes = nbytes.get

    def constant_of(value_name: str) -> Any:
        t = inits.get(value_name)
        return numpy_helper.to_array(t).item() if t is not None and not t.dims else None

    tensors: dict[str, TensorInfo] = {}

    def info(value_name: str) -> TensorInfo:
        t = tensors.get(value_name)
        if t is None:
            other = others.get(value_name)
            if other is not None:
                t = tensors[value_name] = TensorInfo(value_name, (), sh.type_name(other), 0)
                return t
            elem, dims = table.get(value_name, (0, None))
            if dims is None:
                logger.warning("value %s has no concrete shape; counted as 0 bytes", value_name)
            t = TensorInfo(value_name, dims or (), sh.dtype_name(elem), get_nbytes(value_name, 0))
            tensors[value_name] = t
        return t

    inputs = tuple(info(vi.name) for vi in sh.real_inputs(graph))
    producer: dict[str, str] = {}
    nodes: list[NodeInfo] = []
    edges: list[EdgeInfo] = []
    custom: list[str] = []
    sig_cache: dict[tuple, str] = {}
    table_get = table.get
    for index, row in enumerate(rows):
        node = row.proto
        node_name, op_type, domain = row.name, row.op_type, row.domain
        all_ins, all_outs = row.inputs, row.outputs
        acts: list[str] = []
        weight_list: list[str] = []
        for n in row.deps:
            (weight_list if n in inits else acts).append(n)
        outs = tuple(all_outs) if all(all_outs) else tuple([n for n in all_outs if n])
        read = 0
        for a in acts:
            size = get_nbytes(a, 0)
            read += size
            src = producer.get(a)
            if src is not None:
                edges.append(EdgeInfo(a, src, node_name, size))
        written = 0
        for out in outs:
            size = get_nbytes(out, 0)
            written += size
            producer[out] = node_name
            elem, dims = table_get(out, (0, None))
            if dims is None:
                if out in others:
                    tensors[out] = TensorInfo(out, (), sh.type_name(others[out]), 0)
                    continue
                logger.warning("value %s has no concrete shape; counted as 0 bytes", out)
            tensors[out] = TensorInfo(out, dims or (), dtype_name(elem), size)
        weight_bytes = sum([get_nbytes(w, 0) for w in weight_list])
        sub = (control_flow_flops(node, shape_of, opsets, constant_of)
               if op_type in _CONTROL_FLOW else 0)
        if domain not in _DEFAULT_DOMAINS:
            custom.append(node_name)
        attributes = node.attribute
        attrs = (b"".join([a.SerializeToString(deterministic=True) for a in attributes])
                 if len(attributes) else b"")
        sig_key = (domain, op_type, tuple([table_get(n) for n in all_ins]), attrs)
        signature = sig_cache.get(sig_key)
        if signature is None:
            digest = hashlib.blake2b(repr(sig_key[:3]).encode() + b"|" + attrs, digest_size=12)
            signature = sig_cache[sig_key] = digest.hexdigest()
        nodes.append(NodeInfo(
            name=node_name, index=index, domain=domain, op_type=op_type,
            inputs=tuple(acts), outputs=outs, weights=tuple(weight_list),
            flops=node_flops(node, shape_of, op_type, domain, all_ins, all_outs) + sub,
            bytes_read=read + weight_bytes, bytes_written=written, weight_bytes=weight_bytes,
            signature=signature, subgraph_flops=sub,
        ))
    outputs = tuple(info(vi.name) for vi in graph.output)
    return GraphFacts(
        model_name=name, model_sha256=sha, nodes=tuple(nodes), edges=tuple(edges),
        inputs=inputs, outputs=outputs, tensors=tensors, custom_domain_nodes=tuple(custom),
    )
