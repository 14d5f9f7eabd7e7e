"""The Python API: partitioner.compile(...) -> Plan, and Session(plan) running it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_plan_fixtures import branchy_model, cluster, device

import partitioner
from partitioner.errors import PlanError
from partitioner.plan.types import Plan
from partitioner.registry import cost_models


def test_compile_returns_a_plan_that_a_session_runs_without_a_plan_dir(tmp_path: Path) -> None:
    path = tmp_path / "branchy.onnx"
    onnx.save(branchy_model(), path)
    two = cluster(device("a"), device("b"))
    roofline = cost_models.create("roofline")
    plan = partitioner.compile(str(path), two, "latency", time_limit_s=2, cost_model=roofline)
    assert isinstance(plan, Plan) and plan.objective == "latency"
    assert set(plan.assignment) == {n.name for n in branchy_model().graph.node}
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    with partitioner.Session(plan) as session:
        outputs = session.run(None, {"x": x})
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # A plan whose model changed since compiling is refused, not run on the wrong weights.
    onnx.save(branchy_model(seed=3), path)
    with pytest.raises(PlanError, match="does not match the plan"):
        partitioner.Session(plan)

