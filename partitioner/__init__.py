"""hetpart's compiler core: graph analysis, costing, CP-SAT placement, plans and reports.

``partitioner.compile(model, cluster, objective=...)`` returns a Plan;
``partitioner.Session(plan_dir)`` runs one like ``onnxruntime.InferenceSession``. Both are
imported lazily so that ``import partitioner`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from partitioner._version import __version__

__all__ = ["Session", "__version__", "compile"]


def __getattr__(name: str) -> Any:
    if name == "compile":
        from partitioner.compiler import compile

        return compile
    if name == "Session":
        from partitioner.runtime.session import Session

        return Session
    raise AttributeError(f"module 'partitioner' has no attribute {name!r}")
