"""OpenVINO runner: compile each partition once for a device, reuse one infer request."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from backends._common import ModelSource, load_proto, model_bytes, model_label, run_failure
from partitioner.errors import ClusterError, RunError
from partitioner.runtime.feeds import InputSpec, conform_feeds, one_line, onnx_input_specs

logger = logging.getLogger(__name__)

_KNOWN_OPTIONS = {"device", "threads", "hint", "precision", "streams", "config", "label"}


class OpenVinoPartition:
    """A partition compiled by OpenVINO with one reusable infer request.

    Inputs and outputs go by their ONNX names: a compiled port's ``get_any_name()`` may be
    another name of the same tensor that OpenVINO merged in while fusing (an Identity or a
    no-op Reshape before a graph output; the dynamo-exported GPT-2's ``view_53`` came back
    as ``layer_norm_8``), so every port is matched to the ONNX name among ``get_names()``.
    """

    #: Host outputs only; calls are not pinned to CPUs (the PreparedPartition defaults).
    device_resident = False
    pinned_cpus: tuple[int, ...] | None = None

    def __init__(
        self,
        compiled: Any,
        label: str,
        inputs: tuple[InputSpec, ...],
        outputs: tuple[str, ...],
        core: Any = None,
        device: str = "CPU",
    ) -> None:
        self.label = label
        self._core = core
        self.device = device
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self.inputs = inputs
        self.input_names = tuple(spec.name for spec in inputs)
        self.output_names = outputs
        in_ports = _match_ports(compiled.inputs, self.input_names, "input", label, required=False)
        #: (ONNX input name, compiled input index); inputs OpenVINO dropped are not fed.
        self._feed = [(name, index) for name, index in in_ports if index is not None]
        out_ports = _match_ports(compiled.outputs, outputs, "output", label, required=True)
        self._outputs = [(name, compiled.outputs[index]) for name, index in out_ports]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once; outputs are copied out of the request's buffers."""
        inputs = conform_feeds(self.label, self.inputs, feeds)
        try:
            results = self._request.infer({index: inputs[name] for name, index in self._feed})
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses
            raise run_failure("openvino", self.label, exc) from exc
        return {name: np.array(results[port], copy=True) for name, port in self._outputs}

    def run_device(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs stay on the host here: the same as :meth:`run`."""
        return self.run(feeds)

    def memory_stats(self) -> dict[str, Any] | None:
        """``partitioner.protocols.MemoryReporting``: on GPU plugins, the device memory the
        plugin holds (``GPU_MEMORY_STATISTICS``, summed over allocation types); None on the
        CPU plugin, which reports no memory statistics (the executor then measures RSS)."""
        if self._core is None or not self.device.startswith("GPU"):
            return None
        try:
            stats = self._core.get_property(self.device, "GPU_MEMORY_STATISTICS")
            total = sum(int(v) for v in dict(stats).values())
        except Exception as exc:  # older plugins lack the property
            logger.debug("no GPU_MEMORY_STATISTICS for %s: %s", self.label, exc)
            return None
        return {
            "peak_bytes": total,
            "detail": f"OpenVINO {self.device} GPU_MEMORY_STATISTICS after the first run "
            "(memory the plugin holds, all allocation types)",
        }


def _match_ports(
    ports: Any, names: tuple[str, ...], kind: str, label: str, required: bool
) -> list[tuple[str, int | None]]:
    """Pair each ONNX name with the index of the compiled port that carries it.

    The ONNX frontend keeps the graph's order, so port ``i`` is tried first.
    """
    port_names = [set(p.get_names()) for p in ports]
    matched: list[tuple[str, int | None]] = []
    for i, name in enumerate(names):
        if i < len(port_names) and name in port_names[i]:
            matched.append((name, i))
            continue
        index = next((j for j, known in enumerate(port_names) if name in known), None)
        if index is None and required:
            raise RunError(
                f"openvino compiled {label} without its {kind} {name!r} "
                f"(its {kind}s carry the names {[sorted(n) for n in port_names]})"
            )
        matched.append((name, index))
    return matched


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

    def absent_reason(self, options: Mapping[str, Any]) -> str | None:
        """Why a device with ``options`` cannot run here: its OpenVINO plugin is absent."""
        import openvino as ov

        wanted = str(options.get("device", "CPU")).split(".")[0]
        if wanted not in {d.split(".")[0] for d in ov.Core().available_devices}:
            return f"OpenVINO device {wanted} is not present"
        return None

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
            message = f"openvino cannot compile {label} for {device}: {exc}"
            raise RunError(one_line(message)) from exc
        # The graph's input and output names and types (weights stay on disk).
        proto = load_proto(model, label, load_external=False)
        outputs = tuple(o.name for o in proto.graph.output)
        return OpenVinoPartition(
            compiled, label, onnx_input_specs(proto), outputs, core=core, device=device
        )


def create() -> OpenVinoRunner:
    """Registry entry point."""
    return OpenVinoRunner()
