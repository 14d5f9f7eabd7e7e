"""Torch -> ONNX export for the zoo's PyTorch builders (dynamo exporter, IR <= 10, opset 18)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from partitioner.errors import ModelError

logger = logging.getLogger(__name__)

#: Opset the zoo exports at: new enough for LayerNormalization, old enough for every runner.
OPSET = 18
#: Highest IR version written; onnxruntime 1.31 loads at most 13, onnx 1.23 writes 14.
MAX_IR_VERSION = 10

#: Loggers of the torch exporter that warn about optional torchvision ops on every export.
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration", "torch.onnx")


def finalize(model: onnx.ModelProto, metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """Clamp the IR version so onnxruntime loads the model and attach zoo metadata.

    Args:
        model: The model to adjust in place.
        metadata: Key/value pairs stored as ``metadata_props``.

    Returns:
        The same model, for chaining.
    """
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    for key, value in sorted((metadata or {}).items()):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model


def export_module(
    module: Any,
    args: Sequence[Any],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Export ``module(*args)`` with the dynamo exporter and save it to ``path``.

    Args:
        module: A ``torch.nn.Module`` in eval mode.
        args: Example inputs; their shapes become the model's static input shapes.
        path: Destination ``.onnx`` file (weights embedded).
        input_names: Names given to the graph inputs, in ``args`` order.
        output_names: Names given to the graph outputs.
        metadata: Extra ``metadata_props`` (the zoo stores name and params there).

    Raises:
        ModelError: The exporter failed; the message names the module class.
    """
    import torch

    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                tuple(args),
                dynamo=True,
                opset_version=OPSET,
                input_names=list(input_names),
                output_names=list(output_names),
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise ModelError(f"torch.onnx.export of {type(module).__name__} failed: {exc}") from exc
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    if program is None:  # only when exporting to a file, which we do not
        raise ModelError(f"torch.onnx.export of {type(module).__name__} returned no program")
    model = finalize(program.model_proto, metadata)
    onnx.save_model(model, str(path))
    logger.info("exported %s to %s (%d nodes)", type(module).__name__, path, len(model.graph.node))
