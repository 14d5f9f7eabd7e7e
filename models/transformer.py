"""Transformer building blocks in plain torch ops shared by the ``gpt`` and ``bert`` families."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention written with MatMul/Softmax (no fused SDPA), optionally causal.

    Weights: ``qkv`` (Linear d -> 3d, split into q, k, v) and ``proj`` (Linear d -> d).
    """

    def __init__(self, d_model: int, heads: int, seq_len: int, causal: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.causal = causal
        self.mask: torch.Tensor
        mask = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(x).split(d, dim=-1)
        q = q.reshape(b, t, self.heads, dh).transpose(1, 2)
        k = k.reshape(b, t, self.heads, dh).transpose(1, 2)
        v = v.reshape(b, t, self.heads, dh).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh))
        if self.causal:
            scores = scores.masked_fill(self.mask[:t, :t], float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """Linear d -> 4d, exact GELU, Linear 4d -> d."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    """One transformer layer: pre-LN (GPT style) or post-LN (BERT style) residual sub-layers."""

    def __init__(self, d_model: int, heads: int, seq_len: int, causal: bool, pre_ln: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, heads, seq_len, causal)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model)
        self.pre_ln = pre_ln

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


def token_inputs(batch: int, seq_len: int, vocab: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Return deterministic int64 ``input_ids`` of shape ``[batch, seq_len]`` below ``vocab``."""
    gen = torch.Generator().manual_seed(seed + 1)
    return (torch.randint(0, vocab, (batch, seq_len), generator=gen, dtype=torch.int64),)


def example_token_inputs(params: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """``token_inputs`` from a family's params (``batch``, ``seq_len``, ``vocab``, ``seed``)."""
    keys = ("batch", "seq_len", "vocab", "seed")
    return token_inputs(*(int(params[k]) for k in keys))


def seeded_transformer(cls: type[nn.Module], params: Mapping[str, Any]) -> nn.Module:
    """``cls(layers, d_model, heads, seq_len, vocab)`` in eval mode, weights from ``seed``."""
    torch.manual_seed(int(params["seed"]))
    keys = ("layers", "d_model", "heads", "seq_len", "vocab")
    return cls(*(int(params[k]) for k in keys)).eval()
