"""The ``llama`` zoo family: a transformers ``LlamaForCausalLM`` with deterministic random
weights, exported with its KV cache as a model *folder* in one of two public layouts.

* ``optimum``: the folder Hugging Face Optimum's ``text-generation-with-past`` export writes
  (``model.onnx`` with ``input_ids``, ``attention_mask``, ``position_ids``,
  ``past_key_values.N.key/value`` in and ``logits``, ``present.N.key/value`` out, dynamic
  batch / sequence / past dims, standard ONNX ops; ``config.json``,
  ``generation_config.json``, ``tokenizer.json``). Optimum itself is not used (it pins an
  older transformers): the same graph is traced here with torch's TorchScript exporter.
* ``genai``: onnxruntime-genai's folder (``genai_config.json`` + ``model.onnx`` with
  com.microsoft GroupQueryAttention, SkipSimplifiedLayerNormalization, RotaryEmbedding),
  written by onnxruntime-genai's own model builder from the saved Hugging Face checkpoint:
  a model nobody here wrote.

Sizes come from ``partitioner.generation.spec.NAMED_SPECS``. Weights are drawn with
``initializer_range`` 0.1 (transformers' 0.02 makes near-uniform logits whose greedy output
settles into one repeated token; tests/test_zoo_llama.py checks it does not).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import random
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from partitioner.errors import ModelError
from partitioner.generation.spec import DecoderSpec, DecoderSpecError, named_spec

logger = logging.getLogger(__name__)

LAYOUTS = ("optimum", "genai")
SIZES = ("llama-tiny", "llama-small")
#: Standard deviation of the random weights (see the module docstring).
INIT_RANGE = 0.1
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")
OPSET = 18


def hf_config(spec: DecoderSpec) -> Any:
    """The ``LlamaConfig`` of ``spec`` (eager attention: the exporters trace plain ops)."""
    from transformers import LlamaConfig

    return LlamaConfig(  # type: ignore[call-arg]  # attn_implementation goes via **kwargs
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_size,
        max_position_embeddings=spec.max_context,
        initializer_range=INIT_RANGE,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )


def make_model(spec: DecoderSpec, seed: int = 0) -> Any:
    """``LlamaForCausalLM`` for ``spec`` with weights drawn from ``seed`` (eval mode)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(hf_config(spec)).eval()


def _corpus(seed: int, words: int) -> list[str]:
    """Deterministic pseudo-English lines (syllable words, Zipf-like frequencies) to train the
    tokenizer on: no file or download involved, same text for the same seed."""
    rng = random.Random(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v",
              "w", "st", "tr", "pl", "ch", "sh", "th"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou", "ai"]
    codas = ["", "n", "r", "s", "t", "l", "nd", "ng", "st"]
    lexicon = ["".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                       for _ in range(rng.randint(1, 3))) for _ in range(4000)]
    weights = [1.0 / (rank + 1) for rank in range(len(lexicon))]
    chosen = rng.choices(lexicon, weights=weights, k=words)
    return [" ".join(chosen[i:i + 12]) + "." for i in range(0, len(chosen), 12)]


def make_tokenizer(vocab_size: int, seed: int = 0) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` of exactly ``vocab_size`` ids: ``<pad>``,
    ``<s>``, ``</s>`` are 0, 1, 2; trained on :func:`_corpus`; ids the training leaves
    unused are filled with ``<extra_N>`` tokens so every id the model emits decodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_corpus(seed, 20 * vocab_size), trainer=trainer)
    extra = vocab_size - tokenizer.get_vocab_size()
    if extra < 0:
        raise ModelError(f"llama tokenizer: {tokenizer.get_vocab_size()} tokens exceed "
                         f"vocab_size {vocab_size}")
    tokenizer.add_special_tokens([f"<extra_{i}>" for i in range(extra)])
    return tokenizer


def save_tokenizer(spec: DecoderSpec, folder: Path, seed: int = 0) -> None:
    """``tokenizer.json`` plus the ``tokenizer_config.json`` transformers needs to load it."""
    make_tokenizer(spec.vocab_size, seed).save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": spec.max_context,
              "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
              "clean_up_tokenization_spaces": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def save_hf_folder(spec: DecoderSpec, folder: Path, seed: int = 0) -> None:
    """The Hugging Face checkpoint (config, generation config, safetensors) and tokenizer."""
    with _quiet():
        make_model(spec, seed).save_pretrained(str(folder))
    save_tokenizer(spec, folder, seed)


def input_names(num_layers: int) -> list[str]:
    return ["input_ids", "attention_mask", "position_ids"] + [
        f"past_key_values.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


def output_names(num_layers: int) -> list[str]:
    return ["logits"] + [f"present.{i}.{kind}" for i in range(num_layers)
                         for kind in ("key", "value")]


def _with_past_module(model: Any, num_layers: int) -> Any:
    """The model as a function of flat tensors: (ids, mask, positions, past k/v per layer) ->
    (logits, present k/v per layer), the signature Optimum's with-past export has."""
    import torch
    from transformers.cache_utils import DynamicCache

    class WithPast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any,
                    *past: Any) -> tuple[Any, ...]:
            cache = DynamicCache(config=self.model.config)
            for layer in range(num_layers):
                cache.update(past[2 * layer], past[2 * layer + 1], layer)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids, past_key_values=cache, use_cache=True,
                             return_dict=True)
            present = [t for layer in out.past_key_values.layers
                       for t in (layer.keys, layer.values)]
            return (out.logits, *present)

    return WithPast().eval()


def export_optimum(spec: DecoderSpec, folder: Path, seed: int = 0) -> None:
    """Write the Optimum ``text-generation-with-past`` folder for ``spec`` into ``folder``."""
    import onnx
    import torch

    layers = spec.num_layers
    model = make_model(spec, seed)
    batch, seq, past = 2, 3, 5  # non-trivial sizes, so no dimension is specialised to 1
    example = (
        torch.randint(3, spec.vocab_size, (batch, seq)),
        torch.ones(batch, past + seq, dtype=torch.int64),
        torch.arange(past, past + seq).expand(batch, seq),
        *(torch.randn(batch, spec.num_kv_heads, past, spec.head_size) for _ in range(2 * layers)),
    )
    names_in, names_out = input_names(layers), output_names(layers)
    dynamic: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    dynamic.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in names_in[3:]})
    dynamic.update({n: {0: "batch_size", 2: "total_sequence_length"} for n in names_out[1:]})
    path = folder / "model.onnx"
    # The TorchScript exporter: the dynamo exporter specialises the cache's past length.
    with _quiet(), torch.no_grad():
        torch.onnx.export(_with_past_module(model, layers), example, str(path), dynamo=False,
                          opset_version=OPSET, input_names=names_in, output_names=names_out,
                          dynamic_axes=dynamic)
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, 10)
    _metadata(proto, spec, "optimum", seed)
    onnx.save_model(proto, str(path))
    with _quiet():
        model.config.save_pretrained(str(folder))
        model.generation_config.save_pretrained(str(folder))
    save_tokenizer(spec, folder, seed)


def export_genai(spec: DecoderSpec, folder: Path, seed: int = 0) -> None:
    """Write onnxruntime-genai's folder for ``spec`` with its model builder (fp32, CPU)."""
    import importlib.util

    import onnx

    if importlib.util.find_spec("onnxruntime_genai") is None:
        raise ModelError("zoo model 'llama' with layout genai needs onnxruntime-genai, which is "
                         "not installed: pip install 'hetpart[genai]'")
    with tempfile.TemporaryDirectory(prefix="hetpart-llama-hf-") as tmp:
        hf_dir, cache = Path(tmp) / "hf", Path(tmp) / "cache"
        hf_dir.mkdir()
        save_hf_folder(spec, hf_dir, seed)
        # Its command line, in a child process: create_model needs the CLI's option parsing
        # first, and the builder prints and sets global torch state.
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir),
                   "-o", str(folder), "-p", "fp32", "-e", "cpu", "-c", str(cache)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"onnxruntime-genai's model builder failed on llama {spec.name} "
                             f"(exit {done.returncode}): {last}")
    path = folder / "model.onnx"
    proto = onnx.load(str(path))  # weights come in from model.onnx.data
    _metadata(proto, spec, "genai", seed)
    onnx.save_model(proto, str(path))  # one self-contained file (the zoo's sizes are small)
    (folder / "model.onnx.data").unlink(missing_ok=True)


def _metadata(proto: Any, spec: DecoderSpec, layout: str, seed: int) -> None:
    for key, value in (("hetpart.zoo.name", "llama"),
                       ("hetpart.zoo.params", json.dumps(
                           {"layout": layout, "seed": seed, "size": spec.name}, sort_keys=True))):
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' and builder's warnings and progress prints."""
    noisy = ("torch.onnx", "transformers", "onnxruntime_genai")
    levels = {name: logging.getLogger(name).level for name in noisy}
    for name in noisy:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


#: Zoo params that override a named size's field (0 keeps the size's value).
OVERRIDES = {"layers": "num_layers", "hidden": "hidden_size", "heads": "num_heads",
             "kv_heads": "num_kv_heads", "intermediate": "intermediate_size",
             "vocab": "vocab_size", "context": "max_context"}


def spec_of(params: Mapping[str, Any]) -> DecoderSpec:
    """The named ``size`` with the non-zero overrides applied (head size recomputed when the
    width or the head count changes).

    Raises:
        ModelError: an inconsistent combination (heads not a multiple of KV heads...).
    """
    base = named_spec(str(params["size"]))
    changes: dict[str, Any] = {field: int(params[key]) for key, field in OVERRIDES.items()
               if int(params.get(key) or 0)}
    if not changes:
        return base
    if {"hidden_size", "num_heads"} & set(changes):
        changes["head_size"] = 0
    try:
        return dataclasses.replace(base, name=f"{base.name}-custom", **changes)
    except DecoderSpecError as exc:
        raise ModelError(f"zoo model 'llama': {exc}") from None


def build_folder(params: Mapping[str, Any], folder: Path) -> None:
    """The zoo's entry point for folder models: ``size`` (+ overrides), ``layout``, ``seed``
    -> ``folder``."""
    spec = spec_of(params)
    folder.mkdir(parents=True, exist_ok=True)
    layout = str(params["layout"])
    if layout == "optimum":
        export_optimum(spec, folder, int(params["seed"]))
    elif layout == "genai":
        export_genai(spec, folder, int(params["seed"]))
    else:  # resolve_params checked the choices
        raise ModelError(f"llama: unknown layout {layout!r} (valid: {', '.join(LAYOUTS)})")
