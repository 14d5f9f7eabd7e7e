"""Phase plans with the existing compiler: the decoder analysed at one phase's shapes, and a
layer split forced with pins (for tests, the CLI and comparisons; the planner's CP-SAT
placement per layer group lives elsewhere in this package).

A phase plan is compiled at concrete shapes (prefill: ``[batch, prompt]`` tokens and an empty
past; decode: one token over ``past`` cached ones), but its partitions are cut from the
original graph (:func:`symbolic_source`), so they keep the model's symbolic dimensions and
run at every prompt and past length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from partitioner.errors import PlanError

if TYPE_CHECKING:
    import onnx

    from partitioner.compiler import Compilation
    from partitioner.generation.layout import DecoderLayout
    from partitioner.graph.analysis import AnalysedModel
    from partitioner.plan.types import Plan

PHASES = ("prefill", "decode")
_LAYER = re.compile(r"layers\.(\d+)[/.]")


def symbolic_source(model_path: str | Path) -> onnx.ModelProto:
    """The model as analysis loads it (unique node names, topological order) but without
    input shapes applied or shape arithmetic folded: what generation partitions are cut from."""
    import onnx

    from partitioner.graph.loading import load
    from partitioner.graph.normalise import read_rows, topological_sort, unique_node_names

    loaded = load(model_path)
    unique_node_names(loaded.model.graph)
    topological_sort(loaded.model.graph, read_rows(loaded.model.graph), loaded.source)
    try:  # symbolic shapes of the boundary tensors, so each partition declares them
        return onnx.shape_inference.infer_shapes(loaded.model)
    except (onnx.shape_inference.InferenceError, ValueError):  # > 2 GiB, unknown ops
        return loaded.model


def with_symbolic_inputs(plan: Plan, source: onnx.ModelProto) -> Plan:
    """``plan`` with the graph inputs each partition needs once cut from ``source``.

    Analysis folds shape arithmetic at the compile shapes (genai graphs compute the total
    sequence length from ``Shape(attention_mask)``), so a partition that consumed a folded
    constant in the plan computes it from a graph input in the symbolic graph: that input is
    added to the partition's inputs (the executor then feeds it).

    Raises:
        PlanError: a partition would need a tensor another partition computes but does not
            hand over (naming both).
    """
    import dataclasses

    from partitioner.plan.types import PartitionInput

    producer = {out: node for node in source.graph.node for out in node.output if out}
    weights = {t.name for t in source.graph.initializer}
    graph_inputs = {t.name: t for t in plan.model.inputs}
    partitions = []
    for part in plan.partitions:
        bounded = {i.name for i in part.inputs}
        needed: list[str] = []
        stack = [o.name for o in part.outputs]
        seen: set[str] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in bounded or tensor in weights or not tensor:
                continue
            seen.add(tensor)
            if tensor in graph_inputs:
                needed.append(tensor)
                continue
            node = producer.get(tensor)
            if node is None:
                continue
            where = plan.placement.get(node.name)
            if where is not None and where.partition != part.index:
                raise PlanError(
                    f"partition {part.index} ({part.device}) needs {tensor!r} from node "
                    f"{node.name!r} of partition {where.partition} to run at every sequence "
                    f"length, and the plan does not hand it over")
            stack.extend(node.input)
        extra = [PartitionInput(name, _nbytes(graph_inputs[name]), None)
                 for name in sorted(set(needed))]
        partitions.append(dataclasses.replace(part, inputs=part.inputs + tuple(extra))
                          if extra else part)
    return dataclasses.replace(plan, partitions=tuple(partitions))


def _nbytes(spec: Any) -> int:
    return int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize


def phase_input_shapes(layout: DecoderLayout, phase: str, batch: int, tokens: int
                       ) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes of one phase: prefill runs ``tokens`` prompt tokens over an empty
    past; decode runs one token over ``tokens`` cached ones."""
    if phase not in PHASES:
        raise PlanError(f"unknown phase {phase!r} (valid: {', '.join(PHASES)})")
    new, past = (tokens, 0) if phase == "prefill" else (1, tokens)
    layout.check_context(past + new, f"{phase} context")
    shapes: dict[str, tuple[int, ...]] = {layout.input_ids: (batch, new)}
    if layout.attention_mask:
        shapes[layout.attention_mask] = (batch, past + new)
    if layout.position_ids:
        shapes[layout.position_ids] = (batch, new)
    for name in layout.past_names:
        shapes[name] = layout.kv_shape(batch, past)
    return shapes


def layer_of(node_name: str) -> int | None:
    """The decoder layer a node belongs to, from its exporter name (``.../layers.3/...``)."""
    match = _LAYER.search(node_name)
    return int(match.group(1)) if match else None


def layer_split_pins(analysed: AnalysedModel, num_layers: int, devices: Sequence[str]
                     ) -> list[str]:
    """``NODE=DEVICE`` pins splitting the layers into ``len(devices)`` contiguous groups:
    nodes before the first layer (embedding, rotary tables, mask) go with the first group,
    nodes after the last (final norm, LM head; genai names its final norm ``layers.N``) with
    the last."""
    if not devices:
        raise PlanError("a layer split needs at least one device")
    groups = len(devices)
    pins = []
    seen_layer = False
    for node in analysed.facts.nodes:
        layer = layer_of(node.name)
        if layer is None:
            group = groups - 1 if seen_layer else 0
        elif layer >= num_layers:
            group = groups - 1
        else:
            seen_layer = True
            group = min(groups - 1, layer * groups // num_layers)
        pins.append(f"{node.name}={devices[group]}")
    return pins


def analyse_phase(layout: DecoderLayout, phase: str, batch: int, tokens: int
                  ) -> AnalysedModel:
    """``layout``'s model analysed at one phase's shapes (:func:`phase_input_shapes`)."""
    from partitioner.generation.generator import empty_past, step_feeds
    from partitioner.graph.analysis import analyse

    shapes = phase_input_shapes(layout, phase, batch, tokens)
    # Real-looking samples (ones in the mask): genai's GroupQueryAttention refuses the zeros
    # analysis would otherwise run it on to shape its outputs.
    new, past = shapes[layout.input_ids][1], shapes[layout.past_names[0]][2]
    kv = {name: np.zeros(layout.kv_shape(batch, past), dtype=layout.kv_dtype)
          for name in layout.past_names}
    samples = step_feeds(layout, np.ones((batch, new), dtype=np.int64), past,
                         kv if past else empty_past(layout, batch))
    return analyse(str(layout.model_path), shapes, samples)


def compile_phase(layout: DecoderLayout, phase: str, cluster: Any = "local", *, batch: int = 1,
                  tokens: int = 16, split: Sequence[str] | None = None,
                  options: Mapping[str, Any] | None = None) -> Compilation:
    """Compile ``layout``'s model for one phase.

    Args:
        layout: The decoder folder.
        phase: ``prefill`` (``tokens`` = prompt length) or ``decode`` (``tokens`` = past).
        cluster: What ``compile_model`` takes (``local``, a preset, a ``Cluster``).
        batch: Concurrent sequences.
        split: Device ids: pin the layers into that many contiguous groups, one per device;
            None lets the compiler place every node.
        options: Further ``CompileOptions`` fields (``time_limit_s``, ``measure_rounds``...).
    """
    from partitioner.compiler import CompileOptions, compile_model
    analysed = analyse_phase(layout, phase, batch, tokens)
    fields: dict[str, Any] = {"time_limit_s": 10.0, **(options or {})}
    if split:
        fields["pins"] = tuple(fields.get("pins", ())) + tuple(
            layer_split_pins(analysed, layout.num_layers, split))
    return compile_model(analysed, cluster, CompileOptions(**fields))


def compile_split_plan(layout: DecoderLayout, out_dir: str | Path, cluster: Any = "local", *,
                       prefill_split: Sequence[str] | None = None,
                       decode_split: Sequence[str] | None = None, batch: int = 1,
                       prompt: int = 16, context: int = 64,
                       options: Mapping[str, Any] | None = None, overwrite: bool = False
                       ) -> Path:
    """Compile both phases (layer splits as given, else the compiler's choice) and write the
    generation plan directory; returns the path of ``generation.json``."""
    from partitioner.generation.plan_dir import write_generation_plan

    prefill = compile_phase(layout, "prefill", cluster, batch=batch, tokens=prompt,
                            split=prefill_split, options=options)
    decode = compile_phase(layout, "decode", cluster, batch=batch, tokens=context,
                           split=decode_split, options=options)
    workload = {"prompt": prompt, "new": max(context - prompt, 1), "batch": batch,
                "context": context}
    placement = {phase: {"split": list(split) if split else None,
                         "devices": sorted({p.device for p in c.plan.partitions})}
                 for phase, split, c in (("prefill", prefill_split, prefill),
                                         ("decode", decode_split, decode))}
    return write_generation_plan(out_dir, layout, prefill, decode, workload=workload,
                                 placement=placement, overwrite=overwrite)
