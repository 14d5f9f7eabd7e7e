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
    p.add_argument("model", help="path to an .onnx file, or a decoder folder (onnxruntime-genai "
                   "or Optimum with-past: its KV-cache layout is shown too)")
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


def render_layout(layout: dict[str, Any]) -> str:
    """The decoder section of ``inspect`` on a decoder folder (``DecoderLayout.summary()``)."""
    spec, names = layout["spec"], layout["names"]
    per_token = 2 * spec["num_kv_heads"] * spec["head_size"] * spec["kv_bytes_per_element"]
    layers = spec["num_layers"]
    inputs = [n for n in (names["input_ids"], names["attention_mask"], names["position_ids"]) if n]
    lines = [
        f"decoder     {layout['kind']} layout: {layout['model']}",
        f"  sizes     {layers} layers, hidden {spec['hidden_size']}, {spec['num_heads']} heads, "
        f"{spec['num_kv_heads']} KV heads, head size {spec['head_size']}, intermediate "
        f"{spec['intermediate_size']}, vocab {spec['vocab_size']}",
        f"  context   {layout['context_length']} tokens; EOS {layout['eos_token_ids']}; pad "
        f"{layout['pad_token_id']}",
        f"  KV cache  {layout['kv_dtype']} [{', '.join(layout['kv_axes'])}] = [B, "
        f"{spec['num_kv_heads']}, S, {spec['head_size']}]; "
        f"{human(per_token * layers, 'B', 1024)} per token ({layers} layers x "
        f"{human(per_token, 'B', 1024)})",
        f"  inputs    {', '.join(inputs)}, {names['past_keys'][0]} / {names['past_values'][0]} "
        f"... ({layers} layers)",
        f"  outputs   {names['logits']}, {names['present_keys'][0]} / "
        f"{names['present_values'][0]} ...",
        f"  tokenizer {layout['tokenizer'] or '-'}",
    ]
    return "\n".join(lines)


def _decoder(path: str) -> tuple[Any, str | None]:
    """The decoder layout at ``path`` (folder, or a model file inside one), or None.

    A folder must be a valid layout (its error is the command's). A model file beside a
    config that is not a KV-cache decoder is inspected as a plain model, with the reason."""
    from pathlib import Path

    from partitioner.generation.layout import LayoutError, is_decoder_folder, load_layout

    if not is_decoder_folder(path):
        return None, None
    if Path(path).is_dir():
        return load_layout(path), None
    try:
        return load_layout(path), None
    except LayoutError as exc:
        return None, str(exc)


def run(args: argparse.Namespace) -> int:
    """Analyse ``args.model`` and print the summary; for a decoder folder, its layout too."""
    layout, note = _decoder(args.model)
    shapes = parse_input_shapes(args.input_shape)
    analysed_at = None
    if layout is not None and not shapes:  # symbolic dims: one decode step, short context
        from partitioner.generation.phase_plans import analyse_phase

        analysed = analyse_phase(layout, "decode", 1, 127)
        analysed_at = "one decode step, batch 1, 127 cached tokens"
    else:
        analysed = analyse(str(layout.model_path) if layout else args.model, shapes)
    summary = summarise(analysed)
    if layout is not None:
        summary["decoder"] = layout.summary()
        summary["analysed_at"] = analysed_at
    if note:
        summary["note"] = note
    if args.json:
        print_json(summary)
        return 0
    text = render_text(summary)
    if layout is not None:
        text = render_layout(summary["decoder"]) + "\n" + (
            f"graph       analysed at {analysed_at}\n" if analysed_at else "") + text
    if note:
        text = f"note        {note}\n" + text
    print(text)
    return 0
