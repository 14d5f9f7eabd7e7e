"""The ``inception`` zoo family: a CNN whose blocks run four independent branches, concatenated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.resnet import example_inputs

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "example_inputs", "make_module"]

INPUT_NAMES = ("image",)
OUTPUT_NAMES = ("logits",)


def _conv(c_in: int, c_out: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU())


class InceptionBlock(nn.Module):
    """Branches 1x1 | 1x1->3x3 | 1x1->3x3->3x3 (a 5x5 field) | maxpool->1x1, concatenated.

    The branches share only the block input and the final Concat, so a placement can run
    them on different devices at the same time.
    """

    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()
        self.branch1 = _conv(c_in, c, 1)
        self.branch3 = nn.Sequential(_conv(c_in, c, 1), _conv(c, c, 3))
        self.branch5 = nn.Sequential(_conv(c_in, c, 1), _conv(c, c, 3), _conv(c, c, 3))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv(c_in, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([b(x) for b in branches], dim=1)


class Inception(nn.Module):
    """Stem conv, ``blocks`` inception blocks at full resolution, global pool, linear head."""

    def __init__(self, blocks: int, channels: int, classes: int) -> None:
        super().__init__()
        self.stem = _conv(3, 2 * channels, 3)
        c_in = 2 * channels
        body: list[nn.Module] = []
        for _ in range(blocks):
            body.append(InceptionBlock(c_in, channels))
            c_in = 4 * channels
        self.body = nn.Sequential(*body)
        self.head = nn.Linear(c_in, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        y = self.body(self.stem(image))
        return self.head(y.mean(dim=(2, 3)))


def make_module(params: Mapping[str, Any]) -> nn.Module:
    """Build the inception CNN.

    Args:
        params: ``blocks``, ``channels`` (per branch), ``classes``, ``seed``.

    Returns:
        The module in eval mode with deterministic random weights.
    """
    torch.manual_seed(int(params["seed"]))
    return Inception(int(params["blocks"]), int(params["channels"]), int(params["classes"])).eval()
