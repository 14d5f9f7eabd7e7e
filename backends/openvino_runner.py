"""OpenVINO runner: compile each partition once for a device, reuse one infer request."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from backends._common import ModelSource, check_feeds, model_bytes, model_label
from partitioner.errors import ClusterError, RunError

logger = logging.getLogger(__name__)

_KNOWN_OPTIONS = {"device", "threads", "hint", "precision", "streams", "config", "label"}


class OpenVinoPartition:
    """A partition compiled by OpenVINO with one reusable infer request."""

    device_resident = False

    def __init__(self, compiled: Any, label: str) -> None:
        self.label = label
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self.input_names = tuple(p.get_any_name() for p in compiled.inputs)
        self._outputs = [(p.get_any_name(), p) for p in compiled.outputs]
        self.output_names = tuple(name for name, _ in self._outputs)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once; outputs are copied out of the request's buffers."""
        check_feeds(self.label, self.input_names, feeds)
        inputs = {name: np.ascontiguousarray(feeds[name]) for name in self.input_names}
        try:
            results = self._request.infer(inputs)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses
            raise RunError(f"openvino failed running {self.label}: {exc}") from exc
        return {name: np.array(results[port], copy=True) for name, port in self._outputs}


class OpenVinoRunner:
    """Runs partitions with OpenVINO (CPU here; GPU and NPU plugins where present).

    Device options: ``device`` (default ``CPU``), ``threads`` (``INFERENCE_NUM_THREADS``),
    ``hint`` (``PERFORMANCE_HINT``, default ``LATENCY``), ``precision``
    (``INFERENCE_PRECISION_HINT``, default ``f32`` so results match ONNX Runtime),
    ``streams`` (``NUM_STREAMS``), ``config`` (extra properties passed verbatim).
    """

    name = "openvino"

    def available(self) -> bool:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False
        return True

    def version(self) -> str:
        import openvino as ov

        return str(ov.__version__)

    def prepare(self, model: ModelSource, options: Mapping[str, Any]) -> OpenVinoPartition:
        """Read the ONNX model and compile it once for ``options["device"]``.

        Raises:
            ClusterError: unknown option or device absent here.
            RunError: OpenVINO cannot read or compile the model.
        """
        import openvino as ov

        label = model_label(model, options)
        unknown = sorted(set(options) - _KNOWN_OPTIONS)
        if unknown:
            raise ClusterError(f"openvino runner: unknown option(s) {unknown} for {label}")
        core = ov.Core()
        device = str(options.get("device", "CPU"))
        if device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise ClusterError(
                f"OpenVINO device {device!r} is not available here "
                f"(available: {core.available_devices}) for {label}"
            )
        config: dict[str, Any] = {"PERFORMANCE_HINT": str(options.get("hint", "LATENCY"))}
        if device.startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = str(options.get("precision", "f32"))
        elif "precision" in options:
            config["INFERENCE_PRECISION_HINT"] = str(options["precision"])
        if "threads" in options:
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        if "streams" in options:
            config["NUM_STREAMS"] = str(options["streams"])
        config.update(options.get("config", {}))
        try:
            if isinstance(model, onnx.ModelProto):
                ov_model = core.read_model(model_bytes(model), b"")
            else:
                ov_model = core.read_model(str(Path(model)))
            compiled = core.compile_model(ov_model, device, config)
        except Exception as exc:
            raise RunError(f"openvino cannot compile {label} for {device}: {exc}") from exc
        return OpenVinoPartition(compiled, label)


def create() -> OpenVinoRunner:
    """Registry entry point."""
    return OpenVinoRunner()
