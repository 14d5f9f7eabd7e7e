"""``partitioner.Session(plan, ray=...)``: a Session whose devices are Ray actors.

``partitioner.Session`` is this class: without ``ray`` it is exactly
``partitioner.runtime.session.Session`` (in-process); with ``ray="local"`` or an address the
plan runs on :class:`~partitioner.distributed.executor.RayExecutor`. Ray is imported only then.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from partitioner.plan.types import Plan
from partitioner.runtime import session as runtime_session

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel


class Session(runtime_session.Session):
    """Run a plan like ``onnxruntime.InferenceSession``, in process or on Ray.

    Args:
        plan, plan_dir, model, emulate: as ``partitioner.runtime.session.Session``.
        ray: None (in process), ``"local"`` (a throwaway loopback Ray cluster, one node per
            host the plan names, torn down by :meth:`close`) or a Ray address (``"auto"``,
            ``"HOST:PORT"``).
        restarts: With ``ray``: how many times Ray may restart a device's actor.

    Example:
        >>> with Session("out/plan", ray="local") as sess:      # doctest: +SKIP
        ...     (y,) = sess.run(None, {"x": x})
    """

    def __init__(
        self,
        plan: str | Path | Plan,
        *,
        plan_dir: str | Path | None = None,
        model: str | Path | onnx.ModelProto | AnalysedModel | None = None,
        emulate: bool = False,
        ray: str | None = None,
        restarts: int = 0,
    ) -> None:
        self._ray = ray
        self._restarts = restarts
        super().__init__(plan, plan_dir=plan_dir, model=model, emulate=emulate)

    def _make_executor(self, models: dict[int, onnx.ModelProto] | None, emulate: bool) -> Any:
        if self._ray is None:
            return super()._make_executor(models, emulate)
        from partitioner.distributed.executor import RayExecutor

        return RayExecutor(self.plan, self.plan_dir, models=models, address=self._ray,
                           emulate=emulate, restarts=self._restarts)
