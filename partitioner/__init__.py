"""hetpart's compiler core: graph analysis, costing, CP-SAT placement, plans and reports.

``partitioner.compile(model, cluster, objective=...)`` returns a Plan;
``partitioner.Session(plan_dir)`` runs one like ``onnxruntime.InferenceSession``. Both are
imported lazily so that ``import partitioner`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Session", "compile"]


def __getattr__(name: str) -> Any:
    if name == "compile":
        from partitioner.compiler import compile

        return compile
    if name == "Session":
        from partitioner.runtime.session import Session

        return Session
    raise AttributeError(f"module 'partitioner' has no attribute {name!r}")
