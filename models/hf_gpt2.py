"""The ``hf-gpt2`` zoo family: transformers' GPT-2 built from a config with random weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from models.hf import TupleOutputs, config_kwargs
from models.transformer import example_token_inputs

#: Deterministic ``input_ids`` of shape ``[batch, seq_len]``.
example_inputs = example_token_inputs

INPUT_NAMES = ("input_ids",)
OUTPUT_NAMES = ("logits",)


def make_module(params: Mapping[str, Any]) -> nn.Module:
    """Build ``GPT2LMHeadModel`` (no KV cache, eager attention) wrapped for export.

    Args:
        params: ``layers``, ``d_model``, ``heads``, ``seq_len``, ``vocab``, ``seed``.
    """
    c = config_kwargs(params)
    config = GPT2Config(  # type: ignore[call-arg]  # attn_implementation goes via **kwargs
        n_layer=c["layers"],
        n_embd=c["d_model"],
        n_head=c["heads"],
        n_positions=c["seq_len"],
        vocab_size=c["vocab"],
        bos_token_id=c["vocab"] - 1,
        eos_token_id=c["vocab"] - 1,
        use_cache=False,
        attn_implementation="eager",
    )
    return TupleOutputs(GPT2LMHeadModel(config), INPUT_NAMES, len(OUTPUT_NAMES)).eval()
