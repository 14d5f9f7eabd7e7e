"""A decoder model folder with a KV cache, read from its files and checked against its graph.

Two public layouts are recognised:

* ``genai``: onnxruntime-genai's folder, ``genai_config.json`` whose ``model.decoder``
  section names the graph file, the input/output names (``past_key_values.%d.key`` ...) and
  the sizes (layers, heads, KV heads, head size), plus ``model.context_length`` and the
  EOS / pad ids.
* ``optimum``: Hugging Face Optimum's ``text-generation-with-past`` folder, ``model.onnx``
  with ``past_key_values.N.key/value`` -> ``present.N.key/value`` beside the checkpoint's
  ``config.json`` (sizes, ``max_position_embeddings``, EOS) and ``generation_config.json``.

:func:`load_layout` reads either (given the folder or the ``model.onnx`` inside it) into a
:class:`DecoderLayout`, and refuses, in one line each, a decoder without KV-cache inputs, a
config that disagrees with the graph, and (:meth:`DecoderLayout.check_context`) a context
beyond the model's maximum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partitioner.errors import ModelError
from partitioner.generation.spec import DecoderSpec, DecoderSpecError
from partitioner.jsonfile import read_json_object

if TYPE_CHECKING:
    import onnx

KINDS = ("genai", "optimum")
GENAI_CONFIG = "genai_config.json"
HF_CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"
#: The KV tensors' axes, in order, for both layouts.
KV_AXES = ("batch", "kv_heads", "seq", "head_size")

_ONNX_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64"}
_KV_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "float64": 8.0}


class LayoutError(ModelError):
    """A decoder folder that is not a usable KV-cache layout (named file, key or tensor)."""


@dataclass(frozen=True)
class DecoderLayout:
    """What a generate loop needs to know about a decoder folder.

    Attributes:
        kind: ``genai`` or ``optimum``.
        model_path: The ONNX graph (absolute).
        spec: Sizes (layers, heads, KV heads, head size, vocab, context).
        input_ids, attention_mask, position_ids, logits: Tensor names (``position_ids``
            None when the graph computes positions itself, as genai's GQA graphs do).
        past_keys, past_values, present_keys, present_values: Per-layer KV tensor names.
        kv_dtype: NumPy dtype name of the KV cache (``float32``...).
        context_length: The longest sequence (prompt + generated) the model accepts.
        eos_token_ids, pad_token_id, bos_token_id: From the layout's configs.
        tokenizer_path: ``tokenizer.json`` beside the model, or None.
        kv_axes: The KV tensors' axes: always (batch, kv_heads, seq, head_size) here.
    """

    kind: str
    model_path: Path
    spec: DecoderSpec
    input_ids: str
    attention_mask: str | None
    position_ids: str | None
    logits: str
    past_keys: tuple[str, ...]
    past_values: tuple[str, ...]
    present_keys: tuple[str, ...]
    present_values: tuple[str, ...]
    kv_dtype: str
    context_length: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    bos_token_id: int | None = None
    tokenizer_path: Path | None = None
    kv_axes: tuple[str, ...] = KV_AXES

    @property
    def folder(self) -> Path:
        return self.model_path.parent

    @property
    def num_layers(self) -> int:
        return len(self.past_keys)

    @property
    def past_names(self) -> tuple[str, ...]:
        """Every past input, layer by layer, key before value."""
        return tuple(n for kv in zip(self.past_keys, self.past_values, strict=True) for n in kv)

    @property
    def present_names(self) -> tuple[str, ...]:
        return tuple(n for kv in zip(self.present_keys, self.present_values, strict=True)
                     for n in kv)

    @property
    def present_to_past(self) -> dict[str, str]:
        """Output name -> the input that takes it at the next step."""
        return dict(zip(self.present_names, self.past_names, strict=True))

    def kv_shape(self, batch: int, seq: int) -> tuple[int, int, int, int]:
        return (batch, self.spec.num_kv_heads, seq, self.spec.head_size)

    def kv_bytes(self, batch: int, seq: int) -> int:
        """Bytes of the whole cache (every layer, key and value) at ``seq`` tokens."""
        return int(batch * seq * self.spec.kv_bytes_per_token())

    def check_context(self, tokens: int, what: str = "context") -> None:
        """Refuse ``tokens`` beyond the model's maximum context.

        Raises:
            LayoutError: naming the value, the limit and the file the limit comes from.
        """
        if tokens > self.context_length:
            source = GENAI_CONFIG if self.kind == "genai" else HF_CONFIG
            raise LayoutError(
                f"{what} {tokens} tokens exceeds the model's maximum context "
                f"{self.context_length} ({self.folder / source})")

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (``generation.json``'s ``layout``; ``hetpart inspect``)."""
        spec = asdict(self.spec)
        spec["eos_token_ids"] = list(self.spec.eos_token_ids)
        return {
            "kind": self.kind,
            "model": str(self.model_path),
            "spec": spec,
            "names": {
                "input_ids": self.input_ids,
                "attention_mask": self.attention_mask,
                "position_ids": self.position_ids,
                "logits": self.logits,
                "past_keys": list(self.past_keys),
                "past_values": list(self.past_values),
                "present_keys": list(self.present_keys),
                "present_values": list(self.present_values),
            },
            "kv_dtype": self.kv_dtype,
            "kv_axes": list(self.kv_axes),
            "context_length": self.context_length,
            "eos_token_ids": list(self.eos_token_ids),
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "tokenizer": str(self.tokenizer_path) if self.tokenizer_path else None,
        }

    @classmethod
    def from_summary(cls, data: Mapping[str, Any], base: Path | None = None) -> DecoderLayout:
        """Inverse of :meth:`summary` (relative paths resolve against ``base``)."""
        try:
            spec_data = dict(data["spec"])
            spec_data["eos_token_ids"] = tuple(spec_data.get("eos_token_ids") or ())
            names = data["names"]

            def path(value: str | None) -> Path | None:
                if not value:
                    return None
                p = Path(value)
                return p if p.is_absolute() or base is None else base / p

            model = path(data["model"])
            assert model is not None
            return cls(
                kind=str(data["kind"]),
                model_path=model,
                spec=DecoderSpec(**spec_data),
                input_ids=names["input_ids"],
                attention_mask=names.get("attention_mask"),
                position_ids=names.get("position_ids"),
                logits=names["logits"],
                past_keys=tuple(names["past_keys"]),
                past_values=tuple(names["past_values"]),
                present_keys=tuple(names["present_keys"]),
                present_values=tuple(names["present_values"]),
                kv_dtype=str(data["kv_dtype"]),
                context_length=int(data["context_length"]),
                eos_token_ids=tuple(int(e) for e in data.get("eos_token_ids") or ()),
                pad_token_id=int(data.get("pad_token_id") or 0),
                bos_token_id=data.get("bos_token_id"),
                tokenizer_path=path(data.get("tokenizer")),
            )
        except (KeyError, TypeError, ValueError, DecoderSpecError) as exc:
            raise LayoutError(f"layout summary: bad or missing field ({exc})") from None


# --- reading a folder ---------------------------------------------------------------------

def is_decoder_folder(path: str | Path) -> bool:
    """True when ``path`` (a folder, or a model file inside one) has a layout's config."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    return (folder / GENAI_CONFIG).is_file() or (
        (folder / HF_CONFIG).is_file() and (folder / "model.onnx").is_file())


def load_layout(path: str | Path) -> DecoderLayout:
    """Read the decoder folder at ``path`` (or the folder of the model file ``path``).

    Raises:
        LayoutError: no layout config there, an unreadable config, a decoder without KV-cache
            inputs (naming the missing ones), or a config that disagrees with the graph
            (naming the key and both values).
    """
    p = Path(path)
    if not p.exists():
        raise LayoutError(f"{p} does not exist")
    folder = p if p.is_dir() else p.parent
    if (folder / GENAI_CONFIG).is_file():
        return _load_genai(folder, None if p.is_dir() else p)
    if (folder / HF_CONFIG).is_file():
        return _load_optimum(folder, None if p.is_dir() else p)
    raise LayoutError(
        f"{folder} is not a decoder folder: neither {GENAI_CONFIG} (onnxruntime-genai) nor "
        f"{HF_CONFIG} beside model.onnx (Optimum text-generation-with-past)")


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, LayoutError)


def _load_graph(model_path: Path) -> onnx.ModelProto:
    """The model without its external weights, loaded once per layout: every check and size
    below reads this one copy."""
    import onnx

    if not model_path.is_file():
        raise LayoutError(f"model file {model_path} does not exist")
    try:
        return onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise LayoutError(f"{model_path}: not an ONNX model ({exc})") from None


def _graph_io(proto: onnx.ModelProto) -> tuple[dict[str, tuple[int, list[Any]]], list[str]]:
    """Inputs (name -> (ONNX elem type, dims: int or str)) and output names."""
    inputs = {}
    for value in proto.graph.input:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in tensor.shape.dim]
        inputs[value.name] = (tensor.elem_type, dims)
    return inputs, [o.name for o in proto.graph.output]


def _eos(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, list) else (int(value),)


def _load_genai(folder: Path, model_file: Path | None) -> DecoderLayout:
    config_path = folder / GENAI_CONFIG
    config = _read_json(config_path)
    model = config.get("model")
    decoder = model.get("decoder") if isinstance(model, dict) else None
    if not isinstance(decoder, dict):
        raise LayoutError(f"{config_path}: missing section 'model.decoder'")

    def need(section: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in section:
            raise LayoutError(f"{config_path}: missing key '{where}.{key}'")
        return section[key]

    assert isinstance(model, dict)
    model_path = (model_file or folder / str(need(decoder, "filename", "model.decoder"))).absolute()
    inputs = decoder.get("inputs") or {}
    outputs = decoder.get("outputs") or {}
    layers = int(need(decoder, "num_hidden_layers", "model.decoder"))
    heads = int(need(decoder, "num_attention_heads", "model.decoder"))
    kv_heads = int(decoder.get("num_key_value_heads") or heads)
    head_size = int(decoder.get("head_size") or 0)
    hidden = int(need(decoder, "hidden_size", "model.decoder"))
    context = int(need(model, "context_length", "model"))
    eos = _eos(model.get("eos_token_id"))
    names = {
        "input_ids": str(inputs.get("input_ids", "input_ids")),
        "attention_mask": inputs.get("attention_mask"),
        "position_ids": inputs.get("position_ids"),
        "logits": str(outputs.get("logits", "logits")),
    }
    patterns = {
        "past_keys": str(inputs.get("past_key_names", "past_key_values.%d.key")),
        "past_values": str(inputs.get("past_value_names", "past_key_values.%d.value")),
        "present_keys": str(outputs.get("present_key_names", "present.%d.key")),
        "present_values": str(outputs.get("present_value_names", "present.%d.value")),
    }
    proto = _load_graph(model_path)
    graph_inputs, graph_outputs = _graph_io(proto)
    kv = _kv_names(model_path, graph_inputs, graph_outputs, patterns)
    if len(kv["past_keys"]) != layers:
        raise LayoutError(
            f"{config_path}: model.decoder.num_hidden_layers is {layers} but {model_path.name} "
            f"has {len(kv['past_keys'])} layers of KV-cache inputs")
    # Graph inputs genai's config does not name but the graph has (position_ids).
    if names["position_ids"] is None and "position_ids" in graph_inputs:
        names["position_ids"] = "position_ids"
    vocab = int(model.get("vocab_size") or 0) or _vocab_from_graph(proto, model_path,
                                                                    str(names["logits"]))
    try:
        spec = DecoderSpec(
            name=str(model.get("type") or folder.name), num_layers=layers, hidden_size=hidden,
            num_heads=heads, num_kv_heads=kv_heads, head_size=head_size,
            intermediate_size=_intermediate_size(proto, hidden),
            vocab_size=vocab, max_context=context, eos_token_ids=eos,
            kv_bytes_per_element=_KV_BYTES.get(_kv_dtype(model_path, graph_inputs, kv), 4.0),
        )
    except DecoderSpecError as exc:
        raise LayoutError(f"{config_path}: {exc}") from None
    return _finish(folder, model_path, proto, spec, names, kv, graph_inputs, graph_outputs,
                   config_path, context, eos, int(model.get("pad_token_id") or 0),
                   model.get("bos_token_id"), "genai", "model.decoder")


def _load_optimum(folder: Path, model_file: Path | None) -> DecoderLayout:
    config_path = folder / HF_CONFIG
    config = _read_json(config_path)
    model_path = (model_file or folder / "model.onnx").absolute()
    proto = _load_graph(model_path)
    graph_inputs, graph_outputs = _graph_io(proto)
    patterns = {"past_keys": "past_key_values.%d.key", "past_values": "past_key_values.%d.value",
                "present_keys": "present.%d.key", "present_values": "present.%d.value"}
    kv = _kv_names(model_path, graph_inputs, graph_outputs, patterns)
    generation: dict[str, Any] = {}
    if (folder / GENERATION_CONFIG).is_file():
        generation = _read_json(folder / GENERATION_CONFIG)
    try:
        spec = DecoderSpec.from_hf_config(
            config, name=str(config.get("model_type") or folder.name),
            kv_bytes_per_element=_KV_BYTES.get(_kv_dtype(model_path, graph_inputs, kv), 4.0))
    except DecoderSpecError as exc:
        raise LayoutError(f"{config_path}: {exc}") from None
    if len(kv["past_keys"]) != spec.num_layers:
        raise LayoutError(
            f"{config_path}: num_hidden_layers is {spec.num_layers} but {model_path.name} has "
            f"{len(kv['past_keys'])} layers of KV-cache inputs")
    names = {"input_ids": "input_ids", "logits": "logits",
             "attention_mask": "attention_mask" if "attention_mask" in graph_inputs else None,
             "position_ids": "position_ids" if "position_ids" in graph_inputs else None}
    eos = _eos(generation.get("eos_token_id", config.get("eos_token_id")))
    pad = generation.get("pad_token_id", config.get("pad_token_id"))
    return _finish(folder, model_path, proto, spec, names, kv, graph_inputs, graph_outputs,
                   config_path, spec.max_context, eos,
                   int(pad if pad is not None else (eos or (0,))[0]),
                   generation.get("bos_token_id", config.get("bos_token_id")), "optimum", "")


def _kv_names(model_path: Path, graph_inputs: Mapping[str, Any], graph_outputs: Sequence[str],
              patterns: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Per-layer KV names found in the graph for ``patterns`` (``%d`` = layer).

    Raises:
        LayoutError: the graph has no past inputs (a decoder without KV cache: it can still be
            compiled as a single pass), or some layers lack a past or present tensor.
    """
    found: dict[str, tuple[str, ...]] = {}
    for key, pattern in patterns.items():
        pool = graph_inputs if key.startswith("past") else graph_outputs
        regex = re.compile("^" + re.escape(pattern).replace("%d", r"(\d+)") + "$")
        indices = sorted(int(m.group(1)) for n in pool if (m := regex.match(n)))
        found[key] = tuple(pattern % i for i in indices)
    counts = {key: len(names) for key, names in found.items()}
    layers = max(counts.values())
    if counts["past_keys"] == 0 and counts["past_values"] == 0:
        expected = [patterns["past_keys"] % 0, patterns["past_values"] % 0]
        raise LayoutError(
            f"{model_path}: a decoder without KV-cache inputs: missing {', '.join(expected)} "
            f"(... one pair per layer); it can still be compiled as a single pass with "
            f"`hetpart compile`, but not generated from with a cache")
    for key, pattern in patterns.items():
        missing = [pattern % i for i in range(layers) if pattern % i not in found[key]]
        if missing:
            where = "inputs" if key.startswith("past") else "outputs"
            raise LayoutError(f"{model_path}: KV-cache {where} missing: {', '.join(missing)}")
    return found


def _kv_dtype(model_path: Path, graph_inputs: Mapping[str, Any],
              kv: Mapping[str, tuple[str, ...]]) -> str:
    elem = graph_inputs[kv["past_keys"][0]][0]
    if elem not in _ONNX_DTYPES:
        raise LayoutError(f"{model_path}: KV-cache input {kv['past_keys'][0]!r} has element "
                          f"type {elem}, not a float type")
    return _ONNX_DTYPES[elem]


def _finish(folder: Path, model_path: Path, proto: onnx.ModelProto, spec: DecoderSpec,
            names: Mapping[str, Any],
            kv: Mapping[str, tuple[str, ...]], graph_inputs: Mapping[str, Any],
            graph_outputs: Sequence[str], config_path: Path, context: int,
            eos: tuple[int, ...], pad: int, bos: Any, kind: str, section: str) -> DecoderLayout:
    """Check the names and KV shapes against the graph and build the layout."""
    spec = replace(spec, weight_bytes_per_param=_weight_width(proto, spec))
    prefix = f"{section}." if section else ""
    for key in ("input_ids", "attention_mask", "position_ids"):
        name = names.get(key)
        if name is not None and name not in graph_inputs:
            raise LayoutError(f"{config_path}: {key} {name!r} is not an input of {model_path.name}"
                              f" (inputs: {', '.join(list(graph_inputs)[:6])}...)")
    if names["logits"] not in graph_outputs:
        raise LayoutError(f"{config_path}: logits {names['logits']!r} is not an output of "
                          f"{model_path.name}")
    dims = graph_inputs[kv["past_keys"][0]][1]
    if len(dims) != 4:
        raise LayoutError(f"{model_path}: KV-cache input {kv['past_keys'][0]!r} has rank "
                          f"{len(dims)}; expected 4 ({', '.join(KV_AXES)})")
    for axis, key, value in ((1, "num_key_value_heads", spec.num_kv_heads),
                             (3, "head_size", spec.head_size)):
        if isinstance(dims[axis], int) and dims[axis] != value:
            raise LayoutError(
                f"{config_path}: {prefix}{key} is {value} but {model_path.name}'s "
                f"{kv['past_keys'][0]} has {dims[axis]} on axis {axis} ({KV_AXES[axis]})")
    _check_sizes(proto, model_path, spec, config_path, prefix, str(names["logits"]), eos)
    tokenizer = folder / TOKENIZER_FILE
    return DecoderLayout(
        kind=kind, model_path=model_path, spec=spec,
        input_ids=str(names["input_ids"]), attention_mask=names.get("attention_mask"),
        position_ids=names.get("position_ids"), logits=str(names["logits"]),
        past_keys=kv["past_keys"], past_values=kv["past_values"],
        present_keys=kv["present_keys"], present_values=kv["present_values"],
        kv_dtype=_kv_dtype(model_path, graph_inputs, kv), context_length=context,
        eos_token_ids=eos, pad_token_id=pad, bos_token_id=None if bos is None else int(bos),
        tokenizer_path=tokenizer.absolute() if tokenizer.is_file() else None)


def _check_sizes(proto: onnx.ModelProto, model_path: Path, spec: DecoderSpec, config_path: Path,
                 prefix: str, logits: str, eos: tuple[int, ...]) -> None:
    """The config's sizes against what the graph fixes: the logits' width (vocabulary),
    GroupQueryAttention's head counts, a weight of the hidden width, EOS ids in the
    vocabulary. Costs are computed from the config, so a wrong size would misprice the
    plan silently."""
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        if out.name == logits and dims and dims[-1].HasField("dim_value") and \
                dims[-1].dim_value != spec.vocab_size:
            raise LayoutError(f"{config_path}: vocab_size is {spec.vocab_size} but "
                              f"{model_path.name}'s {logits} has {dims[-1].dim_value} columns")
    beyond = [e for e in eos if not 0 <= e < spec.vocab_size]
    if beyond:
        raise LayoutError(f"{config_path}: eos_token_id {beyond[0]} is outside the vocabulary "
                          f"(vocab_size {spec.vocab_size})")
    for node in proto.graph.node:
        if node.op_type != "GroupQueryAttention":
            continue
        attrs = {a.name: a.i for a in node.attribute}
        for attr, key, value in (("num_heads", "num_attention_heads", spec.num_heads),
                                 ("kv_num_heads", "num_key_value_heads", spec.num_kv_heads)):
            if attr in attrs and attrs[attr] != value:
                raise LayoutError(f"{config_path}: {prefix}{key} is {value} but "
                                  f"{model_path.name}'s GroupQueryAttention {node.name!r} has "
                                  f"{attr}={attrs[attr]}")
        break
    matrices = _initializer_dims(proto)
    if matrices and not any(spec.hidden_size in d for d in matrices):
        raise LayoutError(f"{config_path}: {prefix}hidden_size is {spec.hidden_size} but no "
                          f"weight of {model_path.name} has that width (e.g. "
                          f"{max(matrices, key=lambda d: d[0] * d[1])})")
    # The query projection (alone, or packed with keys and values), where weights are plain
    # matrices (quantized ones are packed otherwise).
    query = spec.num_heads * spec.head_size
    packed = (spec.num_heads + 2 * spec.num_kv_heads) * spec.head_size
    with_hidden = [d for d in matrices if spec.hidden_size in d]
    if with_hidden and not any(query in d or packed in d for d in with_hidden):
        raise LayoutError(f"{config_path}: {prefix}num_attention_heads {spec.num_heads} x "
                          f"head_size {spec.head_size} = {query}, but no weight of "
                          f"{model_path.name} projects the hidden width to that")
    for t in proto.graph.initializer:  # genai's rotary tables end at the context they hold
        if t.name.endswith("cos_cache") and t.dims and t.dims[0] < spec.max_context:
            raise LayoutError(f"{config_path}: context length {spec.max_context} is beyond "
                              f"the {t.dims[0]} positions of {model_path.name}'s rotary table "
                              f"{t.name!r}")


def _initializer_dims(proto: onnx.ModelProto) -> list[tuple[int, ...]]:
    """The shapes of the graph's matrices (2-D initializers)."""
    return [tuple(t.dims) for t in proto.graph.initializer if len(t.dims) == 2]


#: Weight widths (bytes per parameter) a stored model is recognised as: int4, int8, 16 and
#: 32-bit floats.
_WEIGHT_WIDTHS = (0.5, 1.0, 2.0, 4.0)


def _weight_width(proto: onnx.ModelProto, spec: DecoderSpec) -> float:
    """Bytes per parameter as stored: the initializers' bytes (from their declared types and
    shapes, external data not read) over the parameters the config implies, snapped to a
    known width within 25% (quantization scales, rotary tables and a duplicated tied head
    add a little). Neither layout's config says it reliably; the graph does."""
    import numpy as np
    import onnx

    stored = 0.0
    for t in proto.graph.initializer:
        if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            itemsize = 0.5
        else:
            try:
                itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
            except (KeyError, TypeError):
                continue  # strings and the like are no weights
        stored += itemsize * float(np.prod(t.dims, dtype=np.float64))
    width = stored / spec.total_params if spec.total_params else 0.0
    near = min(_WEIGHT_WIDTHS, key=lambda w: abs(width - w) / w)
    return near if abs(width - near) <= 0.25 * near else (width or spec.weight_bytes_per_param)


def _intermediate_size(proto: onnx.ModelProto, hidden: int) -> int:
    """genai_config does not record the MLP width: the widest 2-D weight with ``hidden`` on
    one side that is not the vocabulary projection is the SwiGLU's (gate/up/down)."""
    widths = [d[0] if d[1] == hidden else d[1] for d in _initializer_dims(proto)
              if hidden in d and d != (hidden, hidden)]
    counts: dict[int, int] = {}
    for w in widths:
        counts[w] = counts.get(w, 0) + 1
    # The MLP widths occur 3x per layer; the vocabulary once or twice.
    return max(counts, key=lambda w: (counts[w], w)) if counts else 4 * hidden


def _vocab_from_graph(proto: onnx.ModelProto, model_path: Path, logits: str) -> int:
    for out in proto.graph.output:
        if out.name == logits and out.type.tensor_type.shape.dim:
            last = out.type.tensor_type.shape.dim[-1]
            if last.HasField("dim_value"):
                return int(last.dim_value)
    raise LayoutError(f"{model_path}: cannot tell the vocabulary size (model.vocab_size absent "
                      f"and {logits!r} has no static last dimension)")
