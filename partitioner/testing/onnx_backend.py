"""An ``onnx.backend`` Backend that runs every model through partitioned execution.

``PartitionedBackend.prepare`` analyses the model, places its nodes alternately on two local
ONNX Runtime CPU devices (so consecutive nodes sit in different partitions and every
boundary is exercised), extracts the partitions in memory and runs them with the plan
executor. ``node_test_pass_rate`` runs ONNX's own backend node tests through it, restricted
to the tests plain ONNX Runtime passes, and reports the pass rate.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.errors import ShapeError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.extract import PartitionExtractor
from partitioner.runtime.executor import Executor
from partitioner.runtime.feeds import conform, onnx_input_specs

logger = logging.getLogger(__name__)

#: The two-device local cluster every backend model is compiled onto.
DEVICE_IDS = ("cpu0", "cpu1")

#: A representative subset of node-test modules: elementwise, matmul/gemm, pooling, shape ops,
#: multi-node function expansions (softmax, layer norm, gelu, mish) and control flow (If, Loop,
#: Range's Loop expansion) and sequence/optional-typed values crossing partitions. The full run
#: is in the execution benchmark; the test suite and `make bench --quick` run this subset.
REPRESENTATIVE_MODULES = (
    "abs",
    "relu",
    "add",
    "matmul",
    "gemm",
    "softmax",
    "layernormalization",
    "gelu",
    "concat",
    "gather",
    "transpose",
    "clip",
    "rangeop",
    "if_",
    "loop",
    "where",
    "maxpool",
    "mish",
    "hardswish",
    "batch_normalization",
    "identity",
    "sequenceinsert",
    "splittosequence",
    "optionalgetelement",
    "optionalhaselement",
)


def local_pair(ids: tuple[str, ...] = DEVICE_IDS, name: str = "backend-pair") -> Cluster:
    """Two (or more) ONNX Runtime CPU devices of this machine with one thread each."""
    devices = tuple(
        DeviceSpec(
            id=d,
            device_class="cpu",
            runner="onnxruntime",
            memory_bytes=1 << 34,
            peak_flops={"float32": 1e10},
            memory_bandwidth=1e10,
            runner_options={"threads": 1},
            local=True,
        )
        for d in ids
    )
    return Cluster(name, devices)


class PartitionedRep(BackendRep):
    """A model compiled as alternating partitions on two devices.

    Models whose inputs have symbolic dimensions or are not tensors, and models whose
    shapes depend on input values, are compiled at ``run`` for the inputs given (their
    shapes, and their values as the analysis' samples), and recompiled for other inputs,
    since plans need static shapes.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        self._model = model
        #: The declared inputs: what is fed is conformed to them (NumPy or Python scalars).
        self._specs = onnx_input_specs(model)
        init = {t.name for t in model.graph.initializer}
        self._inputs = [i for i in model.graph.input if i.name not in init]
        self._compiled: dict[tuple[Any, ...], Executor] = {}
        self._compiled_static = False
        self.executor: Executor | None = None
        if all(_static(i) for i in self._inputs):
            try:
                self.executor = self._compile({})
                self._compiled_static = True
            except ShapeError as exc:  # e.g. zero-sized dims: retry with the fed shapes
                logger.debug("compiling at first run instead: %s", exc)

    @property
    def num_partitions(self) -> int:
        return len(self.executor.plan.partitions) if self.executor else 0

    def _compile(
        self, shapes: dict[str, tuple[int, ...]], samples: dict[str, Any] | None = None
    ) -> Executor:
        from partitioner.graph.analysis import analyse

        analysed = analyse(self._model, shapes or None, sample_inputs=samples)
        assignment = {
            n.name: DEVICE_IDS[i % len(DEVICE_IDS)] for i, n in enumerate(analysed.facts.nodes)
        }
        plan = plan_from_assignment(analysed, local_pair(), assignment)
        extractor = PartitionExtractor(analysed.model)
        models = {p.index: extractor.extract_proto(p) for p in plan.partitions}
        return Executor(plan, models=models)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            values = [inputs] if isinstance(inputs, np.ndarray | np.generic) else list(inputs)
            feeds = dict(zip([i.name for i in self._inputs], values, strict=False))
        for spec in self._specs:
            if spec.name in feeds:
                feeds[spec.name] = conform(spec, feeds[spec.name])
        executor = self.executor
        if executor is None or not self._compiled_static:
            shapes = {k: tuple(np.shape(v)) for k, v in feeds.items() if isinstance(v, np.ndarray)}
            key = _feeds_key(feeds)
            if key not in self._compiled:
                self._compiled[key] = self._compile(shapes, feeds)
            executor = self.executor = self._compiled[key]
        result = executor.run(feeds)
        return tuple(result.outputs[t.name] for t in executor.plan.model.outputs)


def _feeds_key(feeds: dict[str, Any]) -> tuple[Any, ...]:
    """A hashable key of input values (shapes, dtypes and a digest of their bytes)."""

    def key(value: Any) -> Any:
        if isinstance(value, np.ndarray | np.generic):
            arr = np.asarray(value)
            data = arr.tobytes() if arr.dtype != object else repr(arr.tolist()).encode()
            return (arr.shape, str(arr.dtype), hashlib.blake2b(data, digest_size=12).digest())
        if isinstance(value, list | tuple):
            return tuple(key(v) for v in value)
        return repr(value)

    return tuple(sorted((name, key(v)) for name, v in feeds.items()))


def _static(value: onnx.ValueInfoProto) -> bool:
    """True for a tensor input whose every dimension is a number."""
    if not value.type.HasField("tensor_type"):
        return False
    dims = value.type.tensor_type.shape.dim
    return value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims)


class PartitionedBackend(Backend):
    """Compiles each model onto two local devices with placement alternating between them."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> PartitionedRep:
        super().prepare(model, device, **kwargs)
        return PartitionedRep(model)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


@dataclass
class PassRate:
    """Outcome of running node tests through ONNX Runtime and through the partitioned backend.

    ``multi_partition`` counts passing tests whose model ran as two or more partitions (the
    rest are single-node models: one partition).
    """

    selected: int
    ort_passed: int
    passed: int
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    multi_partition: int = 0

    @property
    def rate(self) -> float:
        """Share of the tests ONNX Runtime passes that the partitioned backend also passes."""
        return self.passed / self.ort_passed if self.ort_passed else 0.0


def node_test_cases(
    include: Sequence[str] = (r"^test_",), modules: Sequence[str] | None = None
) -> list[Any]:
    """ONNX's backend node test cases (generated in memory; the wheel ships no data files).

    Args:
        include: Regexes; a test is kept when its name matches any of them.
        modules: Names of ``onnx.backend.test.case.node`` modules to generate (e.g. ``"abs"``);
            None generates every node test (about half a minute).
    """
    import onnx.backend.test.case.node as node_cases

    if modules is None:
        from onnx.backend.test.loader import load_node_model_tests

        load_node_model_tests()
    else:
        for module in modules:
            importlib.import_module(f"onnx.backend.test.case.node.{module}")
    patterns = [re.compile(p) for p in include]
    seen: dict[str, Any] = {}
    for case in node_cases._NodeTestCases:
        if any(p.search(case.name) for p in patterns):
            seen.setdefault(case.name, case)
    return [seen[name] for name in sorted(seen)]


def _normalise(value: Any) -> Any:
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    return value


def run_node_test(backend: Any, case: Any) -> str | None:
    """Run one node test case on ``backend``; None when it passes, else the reason.

    Compares with the onnx test runner's own ``assert_similar_outputs`` and the case's
    tolerances.
    """
    return _run_case(backend, case)[0]


def _run_case(backend: Any, case: Any) -> tuple[str | None, int]:
    """(failure reason or None, partitions the prepared model ran as; 0 if not ours)."""
    from onnx.backend.test.runner import Runner

    rep = None
    try:
        if hasattr(backend, "is_compatible") and not backend.is_compatible(case.model):
            return "not compatible with the backend", 0
        rep = backend.prepare(case.model, "CPU")
        for inputs, expected in case.data_sets:
            outputs = rep.run([_normalise(v) for v in inputs])
            Runner.assert_similar_outputs(
                [_normalise(v) for v in expected], list(outputs), case.rtol, case.atol, case.name
            )
    except Exception as exc:  # a failing test is data here, whatever it raised
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()
        return " ".join(text)[:300], 0
    return None, int(getattr(rep, "num_partitions", 0))


def node_test_pass_rate(
    include: Sequence[str] = (r"^test_",),
    modules: Sequence[str] | None = None,
    limit: int | None = None,
) -> PassRate:
    """Run ONNX backend node tests on ONNX Runtime, then the ones it passes on our backend.

    Args:
        include: Regexes of test names to keep.
        modules: Node-case modules to generate (None: all of them).
        limit: Keep only the first ``limit`` selected tests (sorted by name).

    Returns:
        Counts and the failures of the partitioned backend (test name -> reason).
    """
    import onnxruntime
    import onnxruntime.backend as ort_backend

    onnxruntime.set_default_logger_severity(3)
    started = time.perf_counter()
    cases = node_test_cases(include, modules)[:limit]
    quiet = logging.getLogger("partitioner")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        ort_ok = [c for c in cases if run_node_test(ort_backend, c) is None]
        failures = {}
        multi = 0
        for case in ort_ok:
            reason, partitions = _run_case(PartitionedBackend, case)
            if reason is not None:
                failures[case.name] = reason
            multi += partitions > 1
    finally:
        quiet.setLevel(level)
    return PassRate(
        len(cases),
        len(ort_ok),
        len(ort_ok) - len(failures),
        failures,
        time.perf_counter() - started,
        multi,
    )


def failure_kinds(failures: dict[str, str]) -> dict[str, int]:
    """Group failure reasons by their error type (first word before a colon)."""
    kinds: dict[str, int] = {}
    for reason in failures.values():
        match = re.match(r"([\w.]+(?:Error|Exception|Fail\w*))", reason)
        key = match.group(1) if match else reason[:40]
        kinds[key] = kinds.get(key, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


__all__ = [
    "PartitionedBackend",
    "PartitionedRep",
    "PassRate",
    "failure_kinds",
    "local_pair",
    "REPRESENTATIVE_MODULES",
    "node_test_pass_rate",
]
