"""Shared pieces of the ``hf-*`` zoo families: transformers models from configs, random weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import transformers  # noqa: F401  (imported here so a missing extra fails at builder import)
from torch import nn


class TupleOutputs(nn.Module):
    """Calls a transformers model with keyword inputs and returns its first ``n_outputs``.

    The exporter wants positional tensors in and a tuple of tensors out; transformers models
    take keywords and return ``ModelOutput`` objects.
    """

    def __init__(self, model: nn.Module, input_names: tuple[str, ...], n_outputs: int) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.n_outputs = n_outputs

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kwargs = dict(zip(self.input_names, inputs, strict=True))
        outputs = self.model(**kwargs, return_dict=False)
        return tuple(outputs[: self.n_outputs])


def config_kwargs(params: Mapping[str, Any]) -> dict[str, int]:
    """The integer params every ``hf-*`` family shares, seeded into torch's RNG first."""
    torch.manual_seed(int(params["seed"]))
    keys = ("layers", "d_model", "heads", "seq_len", "vocab")
    return {k: int(params[k]) for k in keys}
