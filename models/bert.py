"""The ``bert`` zoo family: a post-LN transformer encoder with a tanh pooler, plain torch ops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.transformer import Block, example_token_inputs, seeded_transformer

#: Deterministic ``input_ids`` of shape ``[batch, seq_len]``.
example_inputs = example_token_inputs

INPUT_NAMES = ("input_ids",)
OUTPUT_NAMES = ("hidden", "pooled")


class Bert(nn.Module):
    """Embeddings + LayerNorm, bidirectional post-LN blocks, pooler over the first token."""

    def __init__(self, layers: int, d_model: int, heads: int, seq_len: int, vocab: int) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        self.ln_emb = nn.LayerNorm(d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, heads, seq_len, causal=False, pre_ln=False) for _ in range(layers)
        )
        self.pooler = nn.Linear(d_model, d_model)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.ln_emb(self.tok_emb(input_ids) + self.pos_emb[: input_ids.shape[1]])
        for block in self.blocks:
            x = block(x)
        return x, torch.tanh(self.pooler(x[:, 0]))


def make_module(params: Mapping[str, Any]) -> nn.Module:
    """Build the BERT-style encoder.

    Args:
        params: ``layers``, ``d_model``, ``heads``, ``seq_len``, ``vocab``, ``seed``.

    Returns:
        The module in eval mode with deterministic random weights.
    """
    return seeded_transformer(Bert, params)
