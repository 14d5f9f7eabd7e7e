"""ONNX Runtime runner: one InferenceSession per partition, on any execution provider."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from backends._common import (
    ORT_TYPE_NAMES,
    ModelSource,
    model_bytes,
    model_label,
    parse_cpu_list,
    run_failure,
)
from partitioner.errors import ClusterError, RunError
from partitioner.profiling.timing import thread_affinity
from partitioner.runtime.feeds import InputSpec, check_feeds, conform, conform_feeds

logger = logging.getLogger(__name__)

DEFAULT_PROVIDER = "CPUExecutionProvider"

#: OrtValue / IOBinding device type per GPU provider whose outputs we keep on the device.
DEVICE_TYPES = {"CUDAExecutionProvider": "cuda", "ROCMExecutionProvider": "cuda"}

_KNOWN_OPTIONS = {
    "provider",
    "provider_options",
    "threads",
    "inter_threads",
    "affinity",
    "allow_spinning",
    "optimization",
    "allow_fallback_ops",
    "label",
    "io_binding",
}

_OPT_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}


class OrtPartition:
    """A partition prepared as one ONNX Runtime InferenceSession.

    Attributes:
        input_names: Graph inputs the session needs.
        output_names: Outputs it returns, in graph order.
        device_resident: True when outputs may stay on the accelerator (GPU providers, or
            the option ``io_binding``): :meth:`run_device` then returns OrtValues the next
            partition, or the next decode step, binds directly.
        assignment: execution provider -> node count, as ONNX Runtime placed the nodes.

    No ``memory_stats`` (``partitioner.protocols.MemoryReporting``): ONNX Runtime 1.32's
    Python API binds no allocator statistics (the C API's ``AllocatorGetStats`` and the
    arena's counters are not exposed; ``get_provider_options`` and the OrtMemoryInfo of
    inputs and outputs say where memory lives, not how much), so ``hetpart run`` measures
    these partitions by process RSS.
    """

    def __init__(
        self,
        session: Any,
        label: str,
        provider: str,
        cpus: tuple[int, ...] | None,
        main_thread_pinned: bool,
        io_binding: bool | None = None,
    ) -> None:
        self._session = session
        self.label = label
        self.provider = provider
        #: What each input needs (dtype, shape): feeds are conformed to it
        #: (``partitioner.runtime.feeds``).
        self.inputs = tuple(
            InputSpec.of(i.name, ORT_TYPE_NAMES.get(i.type, i.type), i.shape)
            for i in session.get_inputs()
        )
        self.input_names = tuple(spec.name for spec in self.inputs)
        self.output_names = tuple(o.name for o in session.get_outputs())
        self._pin = cpus if main_thread_pinned else None
        #: CPUs this partition's calls run on; the executor pins the device's thread to them.
        self.pinned_cpus = self._pin
        self._device_type = DEVICE_TYPES.get(provider)
        if io_binding is False:
            self._device_type = None
        elif io_binding and self._device_type is None:
            self._device_type = "cpu"  # OrtValues in host memory, bound in place
        self.device_resident = self._device_type is not None
        self.device_id = int(session.get_provider_options().get(provider, {}).get("device_id", 0))
        self.assignment: dict[str, int] = {}
        import onnxruntime as ort

        # Per-call costs measured on a one-node session (docs/pitfalls.md): run(None, feeds)
        # 7.2 us; naming the outputs and reusing one RunOptions 5.3 us; calling the binding
        # under InferenceSession.run (skipping its per-call Python validation, which
        # conform_feeds replaces) 4.0 us.
        self._outputs = list(self.output_names)
        self._run_options = ort.RunOptions()
        self._call = getattr(session, "_sess", session).run

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once; inputs may be arrays, NumPy or Python scalars or lists (converted to the
        declared dtype). Returns every output as a NumPy array."""
        inputs = conform_feeds(self.label, self.inputs, feeds)
        try:
            if self._pin is None:
                values = self._call(self._outputs, inputs, self._run_options)
            else:
                with thread_affinity(self._pin):
                    values = self._call(self._outputs, inputs, self._run_options)
        except Exception as exc:  # ORT raises its own pybind exception types
            raise run_failure("onnxruntime", self.label, exc) from exc
        return dict(zip(self.output_names, values, strict=True))

    def run_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run with IOBinding: inputs may be OrtValues on the device, outputs stay there.

        Falls back to :meth:`run` for host providers.
        """
        if self._device_type is None:
            return self.run(feeds)
        import onnxruntime as ort

        check_feeds(self.label, self.input_names, feeds)
        inputs = {}
        for spec in self.inputs:
            value = feeds[spec.name]
            is_device = isinstance(value, ort.OrtValue)
            inputs[spec.name] = value if is_device else conform(spec, value, self.label, False)
        try:
            binding = self._session.io_binding()
            for name, value in inputs.items():
                if isinstance(value, ort.OrtValue):
                    binding.bind_ortvalue_input(name, value)
                else:
                    binding.bind_cpu_input(name, value)
            for name in self.output_names:
                binding.bind_output(name, self._device_type, self.device_id)
            self._session.run_with_iobinding(binding)
            return dict(zip(self.output_names, binding.get_outputs(), strict=True))
        except Exception as exc:
            raise run_failure("onnxruntime", self.label, exc) from exc


class OnnxRuntimeRunner:
    """Runs partitions with ONNX Runtime.

    Device options: ``provider`` (default ``CPUExecutionProvider``), ``provider_options``
    (dict), ``threads`` (intra-op threads), ``inter_threads`` (>1 enables parallel execution
    mode), ``affinity`` (0-based CPU ids: worker threads through
    ``session.intra_op_thread_affinities``, the calling thread through
    ``sched_setaffinity`` around each run), ``allow_spinning`` (bool), ``optimization``
    (``disable``/``basic``/``extended``/``all``), ``allow_fallback_ops`` (op types the
    runtime may leave on the CPU provider without failing).
    """

    name = "onnxruntime"

    def available(self) -> bool:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return True

    def version(self) -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def absent_reason(self, options: Mapping[str, Any]) -> str | None:
        """Why a device with ``options`` cannot run here: its execution provider is absent."""
        import onnxruntime as ort

        provider = options.get("provider", DEFAULT_PROVIDER)
        if provider not in ort.get_available_providers():
            return f"execution provider {provider} is not installed"
        return None

    def prepare(self, model: ModelSource, options: Mapping[str, Any]) -> OrtPartition:
        """Create the session once; verify every node runs on the requested provider.

        Raises:
            ClusterError: unknown option, provider not available here, bad affinity.
            RunError: the session cannot be created, or nodes were moved to another provider.
        """
        import onnxruntime as ort

        label = model_label(model, options)
        unknown = sorted(set(options) - _KNOWN_OPTIONS)
        if unknown:
            raise ClusterError(f"onnxruntime runner: unknown option(s) {unknown} for {label}")
        provider = str(options.get("provider", DEFAULT_PROVIDER))
        if provider not in ort.get_available_providers():
            raise ClusterError(
                f"execution provider {provider!r} is not available here "
                f"(available: {ort.get_available_providers()}) for {label}"
            )
        so, cpus, pinned = _session_options(ort, options, label)
        providers: list[Any] = [(provider, dict(options.get("provider_options", {})))]
        try:
            if isinstance(model, onnx.ModelProto):
                session = ort.InferenceSession(model_bytes(model), so, providers=providers)
            else:
                session = ort.InferenceSession(str(model), so, providers=providers)
        except Exception as exc:
            raise RunError(f"onnxruntime cannot load {label}: {exc}") from exc
        io_binding = options.get("io_binding")
        if io_binding is not None and not isinstance(io_binding, bool):
            raise ClusterError(f"onnxruntime runner: option io_binding must be true or false, "
                               f"got {io_binding!r} for {label}")
        part = OrtPartition(session, label, provider, cpus, pinned, io_binding)
        part.assignment = _check_assignment(session, provider, label, options)
        return part


def _session_options(ort: Any, options: Mapping[str, Any], label: str) -> tuple[Any, Any, bool]:
    so = ort.SessionOptions()
    # Fatal only: errors come back as exceptions that hetpart reports in one line; at the
    # default level ONNX Runtime also logs each one to stderr, a second message in its own format.
    so.log_severity_level = 4
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    threads = int(options.get("threads", 0))
    if threads < 0:
        raise ClusterError(f"runner option threads={threads} must be >= 0 for {label}")
    so.intra_op_num_threads = threads
    inter = int(options.get("inter_threads", 0))
    if inter > 1:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = inter
    if "allow_spinning" in options:
        value = "1" if options["allow_spinning"] else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", value)
    level = str(options.get("optimization", "all"))
    if level not in _OPT_LEVELS:
        raise ClusterError(
            f"runner option optimization={level!r}: expected one of {sorted(_OPT_LEVELS)}"
        )
    so.graph_optimization_level = ort.GraphOptimizationLevel(_OPT_LEVELS[level])
    cpus = parse_cpu_list(options["affinity"]) if "affinity" in options else None
    if cpus is not None and threads > 1:
        # ORT pins its threads-1 worker threads; ids in that string are 1-based.
        ids = ",".join(str(c + 1) for c in cpus)
        affinities = ";".join([ids] * (threads - 1))
        so.add_session_config_entry("session.intra_op_thread_affinities", affinities)
    # ORT never pins the calling thread, which also does intra-op work: pin it per run.
    return so, cpus, cpus is not None


def _check_assignment(
    session: Any, provider: str, label: str, options: Mapping[str, Any]
) -> dict[str, int]:
    """Count nodes per provider; raise if any node left the requested provider."""
    actual = session.get_providers()
    if not actual or actual[0] != provider:
        raise RunError(f"onnxruntime did not register {provider} for {label} (got {actual})")
    allowed = set(options.get("allow_fallback_ops", ()))
    counts: dict[str, int] = {}
    moved: list[str] = []
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except Exception as exc:  # older runtimes lack the API: the provider list is all we have
        logger.debug("no graph assignment info for %s: %s", label, exc)
        return {provider: -1}
    for sub in subgraphs:
        nodes = sub.get_nodes()
        counts[sub.ep_name] = counts.get(sub.ep_name, 0) + len(nodes)
        if sub.ep_name != provider:
            moved.extend(
                f"{n.name or '?'} ({n.op_type})" for n in nodes if n.op_type not in allowed
            )
    if moved:
        raise RunError(
            f"onnxruntime moved {len(moved)} node(s) of {label} off {provider}: "
            + ", ".join(moved[:10])
            + (" ..." if len(moved) > 10 else "")
        )
    return counts


def create() -> OnnxRuntimeRunner:
    """Registry entry point."""
    return OnnxRuntimeRunner()
