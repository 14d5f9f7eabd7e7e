"""The ``resnet`` zoo family: a residual CNN of basic blocks (conv-BN-ReLU pairs plus skips)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

INPUT_NAMES = ("image",)
OUTPUT_NAMES = ("logits",)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv, ``blocks`` basic blocks (every second one halves resolution, doubles width)."""

    def __init__(self, blocks: int, channels: int, classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        body: list[nn.Module] = []
        c = channels
        for i in range(blocks):
            downsample = i > 0 and i % 2 == 0
            c_out = c * 2 if downsample else c
            body.append(BasicBlock(c, c_out, 2 if downsample else 1))
            c = c_out
        self.body = nn.Sequential(*body)
        self.head = nn.Linear(c, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        y = self.body(self.stem(image))
        return self.head(y.mean(dim=(2, 3)))


def _randomise_batchnorm(module: nn.Module, gen: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial statistics so their folding is actually exercised."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def make_module(params: Mapping[str, Any]) -> nn.Module:
    """Build the residual CNN.

    Args:
        params: ``blocks``, ``channels``, ``classes``, ``seed``.

    Returns:
        The module in eval mode with deterministic random weights and BN statistics.
    """
    torch.manual_seed(int(params["seed"]))
    model = ResNet(int(params["blocks"]), int(params["channels"]), int(params["classes"]))
    with torch.no_grad():
        _randomise_batchnorm(model, torch.Generator().manual_seed(int(params["seed"]) + 2))
    return model.eval()


def example_inputs(params: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """Return a deterministic ``image`` of shape ``[batch, 3, image, image]``."""
    gen = torch.Generator().manual_seed(int(params["seed"]) + 1)
    size = int(params["image"])
    return (torch.randn(int(params["batch"]), 3, size, size, generator=gen),)
