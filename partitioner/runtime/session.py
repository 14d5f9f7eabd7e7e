"""``partitioner.Session``: run a plan like ``onnxruntime.InferenceSession``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from partitioner.errors import RunError
from partitioner.plan.io import check_model_hash, load_plan
from partitioner.plan.types import Plan, TensorSpec
from partitioner.runtime.executor import Executor, RunResult

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel

#: NumPy dtype name -> ONNX Runtime's type string, for ``get_inputs()[i].type``.
_ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "float16": "tensor(float16)",
    "bool": "tensor(bool)",
    "str": "tensor(string)",
}


@dataclass(frozen=True)
class NodeArg:
    """Name, shape and type of a model input or output (as ``onnxruntime.NodeArg``)."""

    name: str
    shape: list[int]
    type: str
    dtype: str


def _arg(spec: TensorSpec) -> NodeArg:
    kind = _ORT_TYPES.get(spec.dtype, f"tensor({spec.dtype})")
    return NodeArg(spec.name, list(spec.shape), kind, spec.dtype)


class Session:
    """A plan prepared once on its devices; ``run`` executes it partition by partition.

    Args:
        plan: A plan directory, or a Plan object (e.g. from ``partitioner.compile``).
        plan_dir: The directory of a Plan passed as an object; without it, the partitions
            are extracted in memory from ``model`` (its hash is checked against the plan's).
        model: The model a Plan object was compiled from (path, ModelProto or analysed
            model); by default the path the plan records. Needed for plans compiled from an
            in-memory ModelProto.
        emulate: Map devices absent here onto ONNX Runtime CPU (timings are emulated).

    Example:
        >>> sess = Session("out/plan")                       # doctest: +SKIP
        >>> (y,) = sess.run(None, {"x": x})                  # doctest: +SKIP
    """

    def __init__(
        self,
        plan: str | Path | Plan,
        *,
        plan_dir: str | Path | None = None,
        model: str | Path | onnx.ModelProto | AnalysedModel | None = None,
        emulate: bool = False,
    ) -> None:
        self.plan_dir: Path | None
        if isinstance(plan, Plan):
            self.plan = plan
            self.plan_dir = Path(plan_dir) if plan_dir is not None else None
        else:
            self.plan_dir = Path(plan)
            self.plan = load_plan(self.plan_dir)
        models = _extract_in_memory(self.plan, model) if self.plan_dir is None else None
        self._executor = self._make_executor(models, emulate)
        self.last_result: RunResult | None = None

    def _make_executor(
        self, models: dict[int, onnx.ModelProto] | None, emulate: bool
    ) -> Executor:
        """The executor that runs the plan (in-memory ``models``, else the plan directory)."""
        if models is not None:
            return Executor(self.plan, models=models, emulate=emulate)
        return Executor(self.plan, self.plan_dir, emulate=emulate)

    @property
    def emulated(self) -> dict[str, str]:
        """Device id -> why it is emulated (empty when every device is real)."""
        return dict(self._executor.emulated)

    def get_inputs(self) -> list[NodeArg]:
        return [_arg(t) for t in self.plan.model.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_arg(t) for t in self.plan.model.outputs]

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: Any = None,
    ) -> list[np.ndarray]:
        """Run once and return the requested outputs (all when ``output_names`` is None).

        Inputs may be arrays, NumPy or Python scalars, 0-d arrays or lists: each becomes a
        contiguous array of the declared dtype (``partitioner.runtime.feeds.conform``).
        ``run_options`` is accepted for drop-in compatibility with
        ``onnxruntime.InferenceSession.run`` and ignored.

        Raises:
            RunError: an unknown output name, a missing input, an input of the wrong dtype
                or shape (naming it, what it expects and what it got), or a runner failure
                (naming the partition and device).
        """
        names = list(output_names) if output_names else [t.name for t in self.plan.model.outputs]
        known = {t.name for t in self.plan.model.outputs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RunError(f"unknown output(s) {unknown}; the model outputs {sorted(known)}")
        result = self._executor.run(input_feed)
        self.last_result = result
        return [result.outputs[n] for n in names]

    def close(self) -> None:
        self._executor.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _extract_in_memory(
    plan: Plan, model: str | Path | onnx.ModelProto | AnalysedModel | None
) -> dict[int, onnx.ModelProto]:
    """Partition models cut from the model the plan was compiled from (hash checked)."""
    from partitioner.graph.analysis import AnalysedModel, analyse
    from partitioner.plan.extract import PartitionExtractor

    if model is None and plan.source is not None:
        model = plan.source
    if model is None:
        if not Path(plan.model.path).is_file():
            raise RunError(
                f"the plan of {plan.model.name} records no model file ({plan.model.path!r}: "
                "compiled from an in-memory model): pass it as Session(plan, model=...)"
            )
        check_model_hash(plan, plan.model.path)
        model = plan.model.path
    if not isinstance(model, AnalysedModel):
        model = analyse(model, {t.name: t.shape for t in plan.model.inputs})
    if model.facts.model_sha256 != plan.model.sha256:
        raise RunError(
            f"model {model.source} does not match the plan: sha256 "
            f"{model.facts.model_sha256[:12]}... but the plan was compiled for "
            f"{plan.model.sha256[:12]}... ({plan.model.name})"
        )
    extractor = PartitionExtractor(model.model)
    return {p.index: extractor.extract_proto(p) for p in plan.partitions}
