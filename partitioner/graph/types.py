"""Plain-data facts about an analysed ONNX graph: tensors, nodes and edges."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorInfo:
    """A value in the graph with a concrete shape.

    Attributes:
        name: Tensor (value) name, unique in the graph.
        shape: Concrete dimensions; ``()`` for scalars.
        dtype: NumPy dtype name, e.g. ``"float32"``.
        nbytes: Size in bytes of one tensor of this shape and dtype.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int


@dataclass(frozen=True)
class NodeInfo:
    """One operator after normalisation, in topological order.

    Attributes:
        name: Unique node name.
        index: Position in topological order (0-based).
        domain: Operator domain; ``""`` is the default ONNX domain.
        op_type: Operator type, e.g. ``"MatMul"``.
        inputs: Names of activation tensors consumed (graph inputs or other nodes'
            outputs); initializers are listed in ``weights`` instead.
        outputs: Names of tensors produced.
        weights: Names of initializers consumed.
        flops: Floating-point operations for one execution (estimate documented in
            ``partitioner.graph.flops``).
        bytes_read: Bytes of all inputs (activations and weights).
        bytes_written: Bytes of all outputs.
        weight_bytes: Bytes of the initializers consumed.
        signature: Stable key of (domain, op, input shapes/dtypes, attributes); equal
            signatures cost the same on a given device.
        subgraph_flops: FLOPs inside control-flow subgraphs (already included in
            ``flops``); 0 for ordinary nodes.
    """

    name: str
    index: int
    domain: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weights: tuple[str, ...]
    flops: int
    bytes_read: int
    bytes_written: int
    weight_bytes: int
    signature: str
    subgraph_flops: int = 0

    @property
    def qualified_op(self) -> str:
        """``domain::op_type`` for custom domains, else just ``op_type``."""
        if self.domain in ("", "ai.onnx"):
            return self.op_type
        return f"{self.domain}::{self.op_type}"


@dataclass(frozen=True)
class EdgeInfo:
    """A tensor flowing from one node to another.

    Attributes:
        tensor: Tensor name.
        src: Producing node name.
        dst: Consuming node name.
        nbytes: Bytes of the tensor.
    """

    tensor: str
    src: str
    dst: str
    nbytes: int


@dataclass(frozen=True)
class GraphFacts:
    """Everything later stages need to know about a model, as plain data.

    Attributes:
        model_name: Human-readable name (file stem).
        model_sha256: SHA-256 of the model bytes as loaded (external data excluded).
        nodes: Nodes in topological order.
        edges: Node-to-node tensor edges.
        inputs: Graph inputs with concrete shapes.
        outputs: Graph outputs with concrete shapes.
        tensors: Every activation tensor with a known shape, by name.
        custom_domain_nodes: Names of nodes outside the default ONNX domain.
    """

    model_name: str
    model_sha256: str
    nodes: tuple[NodeInfo, ...]
    edges: tuple[EdgeInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    tensors: dict[str, TensorInfo] = field(default_factory=dict, hash=False, compare=False)
    custom_domain_nodes: tuple[str, ...] = ()

    def node(self, name: str) -> NodeInfo:
        """Return the node called ``name`` (KeyError if absent)."""
        return self._by_name[name]

    @property
    def _by_name(self) -> dict[str, NodeInfo]:
        cache = self.__dict__.get("_node_index")
        if cache is None:
            cache = {n.name: n for n in self.nodes}
            object.__setattr__(self, "_node_index", cache)
        return cache
