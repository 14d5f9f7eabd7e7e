"""``hetpart inspect``: summarise an analysed model as text or one JSON object."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from partitioner.cli.common import add_input_shape_arg, parse_input_shapes, print_json
from partitioner.graph.analysis import AnalysedModel, analyse
from partitioner.graph.shapes import tensor_nbytes
from partitioner.graph.types import TensorInfo


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` sub-command."""
    p = subparsers.add_parser(
        "inspect",
        help="analyse an ONNX model: nodes, ops, parameters, FLOPs, activations",
        description="Analyse an ONNX model and print nodes, op histogram, parameters, weight "
        "bytes, FLOPs, largest activation, inputs/outputs and custom-domain nodes.",
    )
    p.add_argument("model", help="path to an .onnx file")
    add_input_shape_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def human(value: float, unit: str = "", base: int = 1000) -> str:
    """Format ``value`` with a k/M/G/T/P prefix (``base`` 1024 for bytes)."""
    prefixes = ["", "k", "M", "G", "T", "P"] if base == 1000 else ["", "Ki", "Mi", "Gi", "Ti", "Pi"]
    v = float(value)
    i = 0
    while abs(v) >= base and i < len(prefixes) - 1:
        v /= base
        i += 1
    return f"{v:.0f} {prefixes[i]}{unit}" if i == 0 else f"{v:.2f} {prefixes[i]}{unit}"


def _tensor(t: TensorInfo) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "nbytes": t.nbytes}


def summarise(analysed: AnalysedModel) -> dict[str, Any]:
    """The inspect summary as JSON-ready data.

    Args:
        analysed: The analysed model.

    Returns:
        A dict with keys ``model``, ``nodes``, ``edges``, ``ops``, ``flops``,
        ``weight_bytes``, ``parameters``, ``largest_activation``, ``inputs``, ``outputs``,
        ``custom_domain_nodes`` and ``sha256``.
    """
    facts = analysed.facts
    ops = Counter(n.qualified_op for n in facts.nodes)
    graph = analysed.model.graph
    used = {w for n in facts.nodes for w in n.weights}
    parameters = 0
    weight_bytes = 0
    for init in graph.initializer:
        if init.name in used:
            count = 1
            for d in init.dims:
                count *= d
            parameters += count
            weight_bytes += tensor_nbytes(init.data_type, init.dims)
    largest = max(facts.tensors.values(), key=lambda t: t.nbytes, default=None)
    return {
        "model": facts.model_name,
        "sha256": facts.model_sha256,
        "nodes": len(facts.nodes),
        "edges": len(facts.edges),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "flops": sum(n.flops for n in facts.nodes),
        "weight_bytes": weight_bytes,
        "parameters": parameters,
        "largest_activation": _tensor(largest) if largest is not None else None,
        "inputs": [_tensor(t) for t in facts.inputs],
        "outputs": [_tensor(t) for t in facts.outputs],
        "custom_domain_nodes": [
            {"name": name, "op": facts.node(name).qualified_op}
            for name in facts.custom_domain_nodes
        ],
    }


def render_text(summary: dict[str, Any]) -> str:
    """Render ``summarise``'s output as a human-readable block."""
    def shape(t: dict[str, Any]) -> str:
        return f"{t['name']}: {t['dtype']}[{','.join(map(str, t['shape']))}]"

    lines = [
        f"model       {summary['model']}  (sha256 {summary['sha256'][:12]})",
        f"nodes       {summary['nodes']}  ({summary['edges']} edges)",
        f"parameters  {summary['parameters']:,}  ({human(summary['weight_bytes'], 'B', 1024)})",
        f"FLOPs       {human(summary['flops'], 'FLOP')}",
    ]
    largest = summary["largest_activation"]
    if largest:
        lines.append(f"largest     {shape(largest)}  ({human(largest['nbytes'], 'B', 1024)})")
    lines.append("inputs")
    lines.extend(f"  {shape(t)}" for t in summary["inputs"])
    lines.append("outputs")
    lines.extend(f"  {shape(t)}" for t in summary["outputs"])
    lines.append("ops")
    width = max((len(op) for op in summary["ops"]), default=0)
    lines.extend(f"  {op:<{width}}  {count}" for op, count in summary["ops"].items())
    custom = summary["custom_domain_nodes"]
    lines.append(f"custom-domain nodes  {len(custom)}")
    lines.extend(f"  {c['name']} ({c['op']})" for c in custom[:20])
    if len(custom) > 20:
        lines.append(f"  ... and {len(custom) - 20} more")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Analyse ``args.model`` and print the summary."""
    analysed = analyse(args.model, parse_input_shapes(args.input_shape))
    summary = summarise(analysed)
    if args.json:
        print_json(summary)
    else:
        print(render_text(summary))
    return 0
