"""FLOP counts per ONNX node from concrete shapes: exact formulas, documented estimates otherwise.

Conventions (one multiply-add = 2 FLOPs):

- MatMul ``[..., M, K] x [..., K, N]``: ``2 * K * numel(out)`` (batch and broadcast included);
  Gemm: ``2*M*N*K`` plus ``M*N`` when C is given. MatMulInteger/QLinearMatMul and
  com.microsoft FusedMatMul/MatMulNBits/MatMulInteger16 count the same way.
- Conv: ``2 * numel(out) * (C_in/group) * prod(kernel)`` plus ``numel(out)`` for a bias;
  strides/dilations/pads enter through the output shape. ConvTranspose:
  ``2 * numel(X) * (C_out/group) * prod(kernel)`` plus bias. QLinearConv/ConvInteger alike.
- Attention with query length S, key length L, total query width E (heads x head size),
  value width Ev and H heads: ``2*B*S*L*E + 2*B*S*L*Ev + 5*B*H*S*L`` (scores, weighted sum,
  softmax). com.microsoft Attention adds its QKV projection ``2*B*S*D_in*W_cols``.
- Element-wise: ``ELEMENTWISE_COST[op] * numel(out)`` (1 for plain arithmetic; more for
  transcendental and normalisation ops, constants below).
- Reductions and global pooling: ``numel(input)`` (2x for SumSquare/L2/LogSumExp); local
  pooling ``numel(out) * prod(kernel)``.
- RNN/GRU/LSTM: ``2 * seq * batch * dirs * gates*hidden * (input + hidden)`` plus
  ``4 * seq * batch * dirs * gates*hidden`` for gate non-linearities.
- Einsum: ``2 * prod(size of every index)`` when some index is contracted, else the product.
- Pure data movement (Reshape, Transpose, Gather, Concat, Slice, Cast, ...): 0 (their cost is
  in bytes read/written).
- Anything else: ``numel(all outputs)`` (one operation per output element).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import onnx

from partitioner.graph.shapes import shape_table

Dims = tuple[int, ...]

#: Operations per output element for element-wise and normalisation ops.
ELEMENTWISE_COST: dict[str, int] = {
    **dict.fromkeys(
        ("Add", "Sub", "Mul", "Div", "Neg", "Abs", "Relu", "Max", "Min", "Sum", "Mean", "Sqrt",
         "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Pow", "Exp", "Log", "Equal", "Less",
         "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Where", "Mod",
         "BitShift", "IsNaN", "IsInf", "Sin", "Cos", "Tan"), 1),
    **dict.fromkeys(("LeakyRelu", "PRelu", "Clip", "ThresholdedRelu", "Shrink"), 2),
    **dict.fromkeys(("Elu", "Celu", "HardSigmoid", "Softplus", "Softsign"), 3),
    **dict.fromkeys(("Sigmoid", "Tanh", "Erf", "Selu", "HardSwish", "BatchNormalization",
                     "QuickGelu"), 4),
    **dict.fromkeys(("Swish", "Mish", "Softmax", "LogSoftmax", "Hardmax",
                     "SimplifiedLayerNormalization", "RMSNormalization",
                     "SkipSimplifiedLayerNormalization"), 5),
    **dict.fromkeys(("Gelu", "FastGelu", "LayerNormalization", "InstanceNormalization",
                     "GroupNormalization", "MeanVarianceNormalization", "BiasGelu"), 8),
    "SkipLayerNormalization": 9,
    "BiasSplitGelu": 9,
}

#: Ops that only move or reinterpret data.
DATA_MOVEMENT = frozenset({
    "Reshape", "Transpose", "Gather", "GatherElements", "GatherND", "Concat", "Slice", "Split",
    "Squeeze", "Unsqueeze", "Flatten", "Identity", "Expand", "Tile", "Pad", "Cast", "CastLike",
    "Shape", "Size", "Constant", "ConstantOfShape", "ScatterND", "ScatterElements", "Scatter",
    "DepthToSpace", "SpaceToDepth", "Trilu", "OneHot", "Range", "NonZero", "Compress",
    "SequenceConstruct", "SequenceAt", "SplitToSequence", "ConcatFromSequence", "Dropout",
    "ReverseSequence", "EyeLike", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
})

#: Nodes whose cost lives in their subgraphs (see ``control_flow_flops``).
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})

REDUCTIONS = {
    **dict.fromkeys(("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                     "ReduceL1", "ArgMax", "ArgMin", "GlobalAveragePool", "GlobalMaxPool",
                     "TopK"), 1),
    **dict.fromkeys(("ReduceSumSquare", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                     "GlobalLpPool"), 2),
}


def numel(dims: Sequence[int] | None) -> int:
    """Number of elements of a shape (0 for an unknown shape)."""
    if dims is None:
        return 0
    n = 1
    for d in dims:
        n *= d
    return n


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


class _Ctx:
    """Shapes of one node's inputs and outputs (``None`` where unknown)."""

    __slots__ = ("node", "ins", "outs")

    def __init__(self, node: onnx.NodeProto, ins: list[Dims | None], outs: list[Dims | None]):
        self.node = node
        self.ins = ins
        self.outs = outs

    def inp(self, i: int) -> Dims | None:
        return self.ins[i] if i < len(self.ins) else None

    @property
    def out_numel(self) -> int:
        return sum(numel(s) for s in self.outs)


def _matmul(c: _Ctx) -> int:
    a = c.inp(0)
    if not a or c.outs[0] is None:
        return c.out_numel
    return 2 * a[-1] * numel(c.outs[0])


def _gemm(c: _Ctx) -> int:
    a, out = c.inp(0), c.outs[0]
    if not a or out is None or len(a) != 2:
        return c.out_numel
    k = a[0] if _attr(c.node, "transA", 0) else a[1]
    return 2 * k * numel(out) + (numel(out) if c.inp(2) is not None else 0)


def _conv(c: _Ctx) -> int:
    x, w, out = c.inp(0), c.inp(1), c.outs[0]
    if c.node.op_type == "QLinearConv":
        x, w = c.inp(0), c.inp(3)
    if not w or out is None or x is None:
        return c.out_numel
    kernel = numel(w[2:])
    bias_idx = 8 if c.node.op_type == "QLinearConv" else 2
    bias = numel(out) if c.inp(bias_idx) is not None else 0
    if c.node.op_type == "ConvTranspose":
        return 2 * numel(x) * w[1] * kernel + bias
    return 2 * numel(out) * w[1] * kernel + bias


def _attention_core(b: int, s: int, length: int, e: int, ev: int, heads: int) -> int:
    return 2 * b * s * length * e + 2 * b * s * length * ev + 5 * b * heads * s * length


def _onnx_attention(c: _Ctx) -> int:
    q, k, v = c.inp(0), c.inp(1), c.inp(2)
    if not q or not k or not v:
        return c.out_numel
    if len(q) == 4:  # [B, H, S, D]
        b, h, s, d = q
        return _attention_core(b, s, k[2], h * d, h * v[3], h)
    h = int(_attr(c.node, "q_num_heads", 1) or 1)
    kv_heads = int(_attr(c.node, "kv_num_heads", h) or h)
    ev = v[2] * h // max(kv_heads, 1)
    return _attention_core(q[0], q[1], k[1], q[2], ev, h)


def _ms_attention(c: _Ctx) -> int:
    x, w = c.inp(0), c.inp(1)
    if not x or not w or len(x) != 3:
        return c.out_numel
    b, s, d_in = x
    heads = int(_attr(c.node, "num_heads", 1))
    sizes = list(_attr(c.node, "qkv_hidden_sizes", []) or [])
    e = sizes[0] if sizes else w[1] // 3
    ev = sizes[2] if sizes else w[1] // 3
    return 2 * b * s * d_in * w[1] + _attention_core(b, s, s, e, ev, heads)


def _ms_mha(c: _Ctx) -> int:
    q, k, v = c.inp(0), c.inp(1), c.inp(2)
    if not q or len(q) != 3:
        return c.out_numel
    heads = int(_attr(c.node, "num_heads", 1))
    length = k[1] if k and len(k) == 3 else k[2] if k and len(k) == 4 else q[1]
    ev = v[2] if v and len(v) == 3 else q[2]
    return _attention_core(q[0], q[1], length, q[2], ev, heads)


def _pool(c: _Ctx) -> int:
    kernel = _attr(c.node, "kernel_shape", [])
    return c.out_numel * max(numel(list(kernel)), 1)


def _rnn(c: _Ctx) -> int:
    x, w = c.inp(0), c.inp(1)
    r = c.inp(2)
    if not x or not w or not r:
        return c.out_numel
    layout = int(_attr(c.node, "layout", 0))
    seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
    dirs, gates_hidden, inp = w
    hidden = r[2]
    steps = seq * batch * dirs * gates_hidden
    return 2 * steps * (inp + hidden) + 4 * steps


def _einsum(c: _Ctx) -> int:
    raw = _attr(c.node, "equation", b"")
    eq = raw.decode() if isinstance(raw, bytes) else str(raw)
    lhs, arrow, rhs = eq.replace(" ", "").partition("->")
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, c.ins, strict=False):
        if shape is None or "..." in term or len(term) != len(shape):
            return c.out_numel
        for letter, d in zip(term, shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), d)
    if arrow:
        out_letters = set(rhs)
    else:
        out_letters = {x for x in sizes if lhs.count(x) == 1}
    total = numel(list(sizes.values()))
    return 2 * total if any(x not in out_letters for x in sizes) else total


_FORMULAS: dict[str, Callable[[_Ctx], int]] = {
    "MatMul": _matmul, "MatMulInteger": _matmul, "FusedMatMul": _matmul,
    "MatMulNBits": _matmul, "MatMulInteger16": _matmul, "QLinearMatMul": _matmul,
    "Gemm": _gemm, "Conv": _conv, "ConvTranspose": _conv, "ConvInteger": _conv,
    "QLinearConv": _conv, "FusedConv": _conv, "NhwcConv": _conv,
    "MaxPool": _pool, "AveragePool": _pool, "LpPool": _pool,
    "RNN": _rnn, "GRU": _rnn, "LSTM": _rnn, "Einsum": _einsum,
}
_MS_FORMULAS: dict[str, Callable[[_Ctx], int]] = {
    "Attention": _ms_attention, "MultiHeadAttention": _ms_mha,
    "GroupQueryAttention": _ms_mha, "PackedMultiHeadAttention": _ms_mha,
}


def node_flops(
    node: onnx.NodeProto,
    shape_of: Callable[[str], Dims | None],
    op_type: str | None = None,
    domain: str | None = None,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
) -> int:
    """FLOPs of one execution of ``node`` (control flow excluded: see ``control_flow_flops``).

    Args:
        node: The node.
        shape_of: Concrete dims of a value name, or ``None`` if unknown.
        op_type: ``node.op_type`` if the caller already read it (saves protobuf reads).
        domain: ``node.domain``, likewise.
        inputs: ``list(node.input)``, likewise.
        outputs: ``list(node.output)``, likewise.

    Returns:
        FLOPs following the conventions in this module's docstring.
    """
    op = node.op_type if op_type is None else op_type
    if op in DATA_MOVEMENT or op in CONTROL_FLOW:
        return 0
    dom = node.domain if domain is None else domain
    outs = node.output if outputs is None else outputs
    cost = ELEMENTWISE_COST.get(op)
    if cost is not None and dom in ("", "ai.onnx", "com.microsoft"):
        return cost * sum([numel(shape_of(n)) for n in outs if n])
    ins = node.input if inputs is None else inputs
    c = _Ctx(node, [shape_of(n) if n else None for n in ins],
             [shape_of(n) if n else None for n in outs])
    if op == "QLinearMatMul":
        c.ins = [c.inp(0), c.inp(3)]
    if dom in ("", "ai.onnx") and op == "Attention":
        return _onnx_attention(c)
    if dom == "com.microsoft" and op in _MS_FORMULAS:
        return _MS_FORMULAS[op](c)
    formula = _FORMULAS.get(op)
    if formula is not None:
        return formula(c)
    if cost is not None:
        return cost * c.out_numel
    reduction = REDUCTIONS.get(op)
    if reduction is not None:
        return reduction * numel(c.inp(0))
    return c.out_numel


def graph_flops(
    graph: onnx.GraphProto, shape_of: Callable[[str], Dims | None], opsets: Mapping[str, int]
) -> int:
    """Total FLOPs of a (sub)graph, recursing into nested control flow."""
    return sum(
        node_flops(n, shape_of) + (control_flow_flops(n, shape_of, opsets, None)
                                   if n.op_type in CONTROL_FLOW else 0)
        for n in graph.node
    )


def control_flow_flops(
    node: onnx.NodeProto,
    shape_of: Callable[[str], Dims | None],
    opsets: Mapping[str, int],
    constant_of: Callable[[str], Any] | None,
) -> int:
    """FLOPs inside an If/Loop/Scan node's subgraphs.

    If: the more expensive branch. Loop: body x trip count when the trip count is a
    constant, otherwise body x 1 (unknown at compile time). Scan: body x the length of
    the first scan input along its scan axis.

    Args:
        node: The control-flow node.
        shape_of: Shapes of outer values; subgraph values are read from the subgraph's
            value_info (filled by onnx shape inference).
        opsets: Opset versions of the model.
        constant_of: Value of an initializer by name (for Loop trip counts), or None.

    Returns:
        Subgraph FLOPs for one execution of ``node``.
    """

    def inner(graph: onnx.GraphProto) -> int:
        table = shape_table(graph)

        def lookup(name: str) -> Dims | None:
            entry = table.get(name)
            if entry is not None and entry[1] is not None:
                return entry[1]
            return shape_of(name)

        return graph_flops(graph, lookup, opsets)

    bodies = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
    if node.op_type == "If":
        return max((inner(g) for g in bodies.values()), default=0)
    body = bodies.get("body")
    if body is None:
        return 0
    per_iter = inner(body)
    if node.op_type == "Loop":
        trips = 1
        if node.input and node.input[0] and constant_of is not None:
            value = constant_of(node.input[0])
            if value is not None:
                trips = max(int(value), 0)
        return per_iter * trips
    n_scan = int(_attr(node, "num_scan_inputs", 1))
    first = len(node.input) - n_scan
    axes = list(_attr(node, "scan_input_axes", []) or [])
    shape = shape_of(node.input[first]) if first < len(node.input) else None
    if not shape:
        return per_iter
    axis = axes[0] if axes else 0
    return per_iter * shape[axis if axis >= 0 else axis + len(shape)]
