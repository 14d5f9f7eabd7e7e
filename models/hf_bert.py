"""The ``hf-bert`` zoo family: transformers' BertModel built from a config with random weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel

from models.hf import TupleOutputs, config_kwargs
from models.transformer import token_inputs

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("last_hidden_state", "pooler_output")


def make_module(params: Mapping[str, Any]) -> nn.Module:
    """Build ``BertModel`` (eager attention, with pooler) wrapped for export.

    Args:
        params: ``layers``, ``d_model``, ``heads``, ``seq_len``, ``vocab``, ``seed``.
    """
    c = config_kwargs(params)
    config = BertConfig(  # type: ignore[call-arg]  # attn_implementation goes via **kwargs
        num_hidden_layers=c["layers"],
        hidden_size=c["d_model"],
        num_attention_heads=c["heads"],
        intermediate_size=4 * c["d_model"],
        max_position_embeddings=c["seq_len"],
        vocab_size=c["vocab"],
        attn_implementation="eager",
    )
    return TupleOutputs(BertModel(config), INPUT_NAMES, len(OUTPUT_NAMES)).eval()


def example_inputs(params: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """Return deterministic ``input_ids`` and an all-ones ``attention_mask``."""
    keys = ("batch", "seq_len", "vocab", "seed")
    (ids,) = token_inputs(*(int(params[k]) for k in keys))
    return ids, torch.ones_like(ids)
