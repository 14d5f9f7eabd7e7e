"""hetpart's Python API: compile an ONNX model for a cluster, run and write the plan.

``partitioner.compile(model, cluster, CompileOptions(...))`` returns a ``Plan``;
``partitioner.Session(plan)`` runs it like ``onnxruntime.InferenceSession`` (in process, or with
``ray="local"`` / an address on Ray actors, one per device);
``partitioner.write_plan(plan, model, plan_dir)`` writes it and ``load_plan`` reads it back;
``partitioner.Generator(plan_dir).generate(ids, max_new_tokens)`` generates greedily on a
generation plan (prefill and decode phases, the KV cache kept between steps).
Every name is imported on first use, so ``import partitioner`` stays cheap: it loads neither
ONNX Runtime, OpenVINO nor OR-Tools.

Example:
    >>> import partitioner                                              # doctest: +SKIP
    >>> opts = partitioner.CompileOptions(objective="latency", time_limit_s=5)
    >>> plan = partitioner.compile("model.onnx", "cpu+l4", opts)        # doctest: +SKIP
    >>> (y,) = partitioner.Session(plan).run(None, {"x": x})            # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from partitioner._version import __version__

if TYPE_CHECKING:
    from partitioner.cluster.types import Cluster
    from partitioner.compiler import CompileOptions, compile, write_plan
    from partitioner.distributed.session import Session
    from partitioner.generation.generator import Generator
    from partitioner.plan.io import load_plan
    from partitioner.plan.types import Plan

__all__ = [
    "Cluster",
    "CompileOptions",
    "Generator",
    "Plan",
    "Session",
    "__version__",
    "compile",
    "load_plan",
    "write_plan",
]

#: Public name -> the module that defines it (imported on first access).
_LAZY = {
    "compile": "partitioner.compiler",
    "CompileOptions": "partitioner.compiler",
    "write_plan": "partitioner.compiler",
    "Session": "partitioner.distributed.session",
    "Plan": "partitioner.plan.types",
    "load_plan": "partitioner.plan.io",
    "Cluster": "partitioner.cluster.types",
    "Generator": "partitioner.generation.generator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'partitioner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
