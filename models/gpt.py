"""The ``gpt`` zoo family: a decoder-only transformer with causal attention in plain torch ops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.transformer import Block, example_token_inputs, seeded_transformer

#: Deterministic ``input_ids`` of shape ``[batch, seq_len]``.
example_inputs = example_token_inputs

INPUT_NAMES = ("input_ids",)
OUTPUT_NAMES = ("logits",)


class GPT(nn.Module):
    """Token + learned position embeddings, pre-LN causal blocks, final LN, untied LM head.

    ``models.gpt_large`` builds the same graph directly in ONNX, with the same parameter names.
    """

    def __init__(self, layers: int, d_model: int, heads: int, seq_len: int, vocab: int) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            Block(d_model, heads, seq_len, causal=True, pre_ln=True) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(input_ids) + self.pos_emb[: input_ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def make_module(params: Mapping[str, Any]) -> nn.Module:
    """Build the GPT.

    Args:
        params: ``layers``, ``d_model``, ``heads``, ``seq_len``, ``vocab``, ``seed``.

    Returns:
        The module in eval mode with deterministic random weights.
    """
    return seeded_transformer(GPT, params)
