"""The ``mlp`` zoo family: a stack of Linear + ReLU layers with deterministic random weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

INPUT_NAMES = ("x",)
OUTPUT_NAMES = ("logits",)


def make_module(params: Mapping[str, Any]) -> nn.Module:
    """Build the MLP: ``layers`` hidden Linear+ReLU of ``width``, then a ``classes`` head.

    Args:
        params: ``layers``, ``width``, ``inputs``, ``classes``, ``seed``.

    Returns:
        The module in eval mode, weights drawn from ``torch.manual_seed(seed)``.
    """
    torch.manual_seed(int(params["seed"]))
    dims = [int(params["inputs"])] + [int(params["width"])] * int(params["layers"])
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims, dims[1:], strict=False):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()]
    layers.append(nn.Linear(dims[-1], int(params["classes"])))
    return nn.Sequential(*layers).eval()


def example_inputs(params: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """Return a deterministic ``x`` of shape ``[batch, inputs]``."""
    gen = torch.Generator().manual_seed(int(params["seed"]) + 1)
    return (torch.randn(int(params["batch"]), int(params["inputs"]), generator=gen),)
