"""What a decoder-only LLM is, as placement sees it: sizes that fix weights, FLOPs and KV bytes.

A :class:`DecoderSpec` comes from a layout's files (``generation.layout``) or from a named
configuration (``NAMED_SPECS``: the zoo's runnable sizes and spec-sheet 7B/70B classes that are
never exported here, only planned for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from partitioner.errors import PartitionerError


class DecoderSpecError(PartitionerError):
    """A decoder configuration that is incomplete or inconsistent."""


@dataclass(frozen=True)
class DecoderSpec:
    """Sizes of a Llama-style decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    head_size: int = 0  # 0: hidden_size // num_heads
    weight_bytes_per_param: float = 4.0  # f32 here; 2 for fp16/bf16 spec-sheet fleets
    kv_bytes_per_element: float = 4.0
    tied_embeddings: bool = False
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for key in ("num_layers", "hidden_size", "num_heads", "num_kv_heads",
                    "intermediate_size", "vocab_size", "max_context"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise DecoderSpecError(f"decoder {self.name!r}: {key} must be a positive "
                                       f"integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise DecoderSpecError(
                f"decoder {self.name!r}: num_heads {self.num_heads} is not a multiple of "
                f"num_kv_heads {self.num_kv_heads}")
        if not self.head_size:
            if self.hidden_size % self.num_heads:
                raise DecoderSpecError(
                    f"decoder {self.name!r}: hidden_size {self.hidden_size} is not a multiple "
                    f"of num_heads {self.num_heads}; give head_size")
            object.__setattr__(self, "head_size", self.hidden_size // self.num_heads)

    # --- parameters -------------------------------------------------------------------------
    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer: q, k, v, o projections, SwiGLU (3 matrices), 2 norms."""
        q_o = 2 * self.hidden_size * self.num_heads * self.head_size
        k_v = 2 * self.hidden_size * self.num_kv_heads * self.head_size
        mlp = 3 * self.hidden_size * self.intermediate_size
        return q_o + k_v + mlp + 2 * self.hidden_size

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def head_params(self) -> int:
        """Final norm and LM head (the head shares the embedding's table when tied)."""
        head = 0 if self.tied_embeddings else self.vocab_size * self.hidden_size
        return self.hidden_size + head

    @property
    def total_params(self) -> int:
        return self.embedding_params + self.num_layers * self.layer_params + self.head_params

    def layer_weight_bytes(self) -> float:
        return self.layer_params * self.weight_bytes_per_param

    # --- KV cache ---------------------------------------------------------------------------
    def kv_bytes_per_token_per_layer(self) -> float:
        """Key and value of one token in one layer."""
        return 2 * self.num_kv_heads * self.head_size * self.kv_bytes_per_element

    def kv_bytes_per_token(self) -> float:
        return self.num_layers * self.kv_bytes_per_token_per_layer()

    # --- FLOPs (multiply-add = 2) -----------------------------------------------------------
    def layer_flops(self, new_tokens: int, past_tokens: int) -> float:
        """One layer over ``new_tokens`` tokens attending to ``past_tokens`` earlier ones plus
        themselves (causal)."""
        matmuls = 2 * new_tokens * (self.layer_params - 2 * self.hidden_size)
        attended = past_tokens * new_tokens + new_tokens * (new_tokens + 1) / 2
        attention = 2 * 2 * self.num_heads * self.head_size * attended  # QK^T and PV
        return matmuls + attention

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], name: str = "",
                       weight_bytes_per_param: float = 4.0,
                       kv_bytes_per_element: float = 4.0) -> DecoderSpec:
        """From a Hugging Face ``config.json`` (Llama naming; missing keys are named)."""
        def need(key: str, *fallbacks: str) -> Any:
            for k in (key, *fallbacks):
                if k in config and config[k] is not None:
                    return config[k]
            raise DecoderSpecError(f"decoder config {name or '?'}: missing key {key!r}")

        heads = int(need("num_attention_heads", "n_head"))
        eos = config.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        return cls(
            name=name or str(config.get("_name_or_path") or config.get("model_type") or "decoder"),
            num_layers=int(need("num_hidden_layers", "n_layer")),
            hidden_size=int(need("hidden_size", "n_embd")),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            intermediate_size=int(need("intermediate_size")),
            vocab_size=int(need("vocab_size")),
            max_context=int(need("max_position_embeddings", "n_positions")),
            head_size=int(config.get("head_dim") or 0),
            weight_bytes_per_param=weight_bytes_per_param,
            kv_bytes_per_element=kv_bytes_per_element,
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            eos_token_ids=eos_ids,
        )


#: Named configurations. ``llama-tiny`` and ``llama-small`` are the zoo's exported sizes (f32,
#: random weights); ``llama-3b-f32`` is a runnable-size config whose weights (~12 GiB f32) do
#: not fit the 2 GiB GPU of the ``smallgpu+cpu`` preset; the 7B and 70B classes (Llama-2-7B and
#: Llama-3-70B shapes, fp16) are planned for spec-sheet fleets only.
NAMED_SPECS: dict[str, DecoderSpec] = {
    spec.name: spec
    for spec in (
        DecoderSpec("llama-tiny", num_layers=4, hidden_size=128, num_heads=4, num_kv_heads=2,
                    intermediate_size=352, vocab_size=512, max_context=2048),
        DecoderSpec("llama-small", num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=2,
                    intermediate_size=1408, vocab_size=4096, max_context=2048),
        DecoderSpec("llama-3b-f32", num_layers=26, hidden_size=3200, num_heads=32,
                    num_kv_heads=32, intermediate_size=8640, vocab_size=32000,
                    max_context=2048),
        DecoderSpec("llama-7b", num_layers=32, hidden_size=4096, num_heads=32, num_kv_heads=32,
                    intermediate_size=11008, vocab_size=32000, max_context=4096,
                    weight_bytes_per_param=2, kv_bytes_per_element=2),
        DecoderSpec("llama-70b", num_layers=80, hidden_size=8192, num_heads=64, num_kv_heads=8,
                    intermediate_size=28672, vocab_size=128256, max_context=8192,
                    weight_bytes_per_param=2, kv_bytes_per_element=2),
    )
}


def named_spec(name: str) -> DecoderSpec:
    try:
        return NAMED_SPECS[name]
    except KeyError:
        raise DecoderSpecError(f"unknown decoder config {name!r} (known: "
                               f"{', '.join(sorted(NAMED_SPECS))})") from None
