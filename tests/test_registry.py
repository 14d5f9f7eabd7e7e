"""Plug-ins are checked against their protocols when the registry loads them: every shipped
runner and cost model passes; a plug-in missing a member is refused in one line naming it,
its module and the member(s)."""

from __future__ import annotations

import importlib
import pkgutil
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_plan_fixtures import branchy_model, cluster, device, save_and_analyse

import backends
import cost_models
from partitioner import registry
from partitioner.errors import ClusterError, CostModelError, PartitionerError
from partitioner.plan.assign import plan_from_assignment
from partitioner.protocols import CostModel, PreparedPartition, Runner
from partitioner.registry import (
    CostModelProtocolError,
    Registry,
    RunnerProtocolError,
    check_prepared,
    get_cost_model,
    get_runner,
    protocol_members,
    protocol_problems,
)
from partitioner.runtime.executor import Executor


def _plugins(package: Any, suffix: str = "") -> list[str]:
    """Names of the package's modules that expose ``create`` (the registry's entry point)."""
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or not info.name.endswith(suffix):
            continue
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError:  # an optional library (openvino) that is not installed
            continue
        if callable(getattr(module, "create", None)):
            names.append(info.name.removesuffix(suffix))
    return sorted(names)


def _tiny() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def test_protocols_declare_what_the_executor_uses() -> None:
    assert protocol_members(Runner) == (
        ("name",), ("available", "version", "absent_reason", "prepare")
    )
    assert protocol_members(PreparedPartition) == (
        ("input_names", "output_names", "pinned_cpus", "device_resident"),
        ("run", "run_device"),
    )
    assert protocol_members(CostModel) == (("name",), ("estimate",))


def test_every_shipped_runner_and_its_partitions_pass_the_protocol_check() -> None:
    names = _plugins(backends, "_runner")
    assert {"onnxruntime", "reference", "null"} <= set(names)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    for name in names:
        runner = get_runner(name)
        assert protocol_problems(runner, Runner) == [], name
        assert isinstance(runner, Runner)
        assert runner.absent_reason({}) is None, name
        prepared = runner.prepare(_tiny(), {})
        check_prepared(name, prepared)
        assert protocol_problems(prepared, PreparedPartition) == [], name
        assert prepared.pinned_cpus is None and not prepared.device_resident, name
        expected = np.zeros_like(x) if name == "null" else np.maximum(x, 0)
        np.testing.assert_allclose(prepared.run_device({"x": x})["y"], expected)


def test_every_shipped_cost_model_passes_the_protocol_check(tmp_path: Path) -> None:
    names = _plugins(cost_models)
    assert {"roofline", "fitted", "profiled"} <= set(names)
    for name in names:
        options = {"cache": tmp_path / "p.sqlite"} if name in ("profiled", "fitted") else {}
        model = get_cost_model(name, **options)
        assert protocol_problems(model, CostModel) == [], name
        assert model.name == name


def test_runner_absent_reasons_name_the_missing_provider() -> None:
    ort = get_runner("onnxruntime")
    assert ort.absent_reason({"provider": "NoSuchExecutionProvider"}) == (
        "execution provider NoSuchExecutionProvider is not installed"
    )
    try:
        openvino = get_runner("openvino")
    except ClusterError:
        return
    assert openvino.absent_reason({"device": "NPU7"}) == "OpenVINO device NPU7 is not present"


# -- fake plug-ins ------------------------------------------------------------------------------

FAKE_RUNNER = '''
class BrokenRunner:
    name = "broken"
    prepare = None

    def available(self):
        return True

    def version(self):
        return "0"


def create():
    return BrokenRunner()
'''

FAKE_COST_MODEL = '''
class Nameless:
    def estimate(self, model, node, device):
        raise AssertionError("never called")


def create(**options):
    return Nameless()
'''


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A throwaway plug-in package on sys.path: ``hetpart_fake_plugins``."""
    package = tmp_path / "hetpart_fake_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken_runner.py").write_text(textwrap.dedent(FAKE_RUNNER))
    (package / "nameless.py").write_text(textwrap.dedent(FAKE_COST_MODEL))
    (package / "no_entry_runner.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return package.name


def test_a_runner_missing_a_member_is_refused_in_one_line(
    fake_plugins: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = Registry("runner", fake_plugins + ".{name}_runner", Runner, RunnerProtocolError)
    monkeypatch.setattr(registry, "runners", fake)
    with pytest.raises(RunnerProtocolError) as caught:
        get_runner("broken")
    message = str(caught.value)
    assert message == (
        "runner 'broken' (module hetpart_fake_plugins.broken_runner) does not implement the "
        "Runner protocol: missing absent_reason; not callable: prepare"
    )
    assert isinstance(caught.value, ClusterError) and isinstance(caught.value, PartitionerError)
    with pytest.raises(RunnerProtocolError, match=r"^runner 'no_entry' \(module "
                       r"hetpart_fake_plugins\.no_entry_runner\) has no create\(\) entry point$"):
        get_runner("no_entry")


def test_a_cost_model_missing_a_member_is_refused_in_one_line(
    fake_plugins: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = Registry("cost model", fake_plugins + ".{name}", CostModel, CostModelProtocolError)
    monkeypatch.setattr(registry, "cost_models", fake)
    with pytest.raises(CostModelProtocolError) as caught:
        get_cost_model("nameless")
    assert str(caught.value) == (
        "cost model 'nameless' (module hetpart_fake_plugins.nameless) does not implement the "
        "CostModel protocol: missing name"
    )
    assert isinstance(caught.value, CostModelError)


class _OldPartition:
    """A prepared partition written before pinned_cpus / device_resident / run_device."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.input_names = tuple(i.name for i in model.graph.input)
        self.output_names = tuple(o.name for o in model.graph.output)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        raise AssertionError("never run")


class _OldRunner:
    name = "old"

    def available(self) -> bool:
        return True

    def version(self) -> str:
        return "0"

    def absent_reason(self, options: Mapping[str, Any]) -> str | None:
        return None

    def prepare(self, model: Any, options: Mapping[str, Any]) -> _OldPartition:
        return _OldPartition(model if isinstance(model, onnx.ModelProto) else onnx.load(model))


def test_executor_refuses_partitions_missing_protocol_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.runners._factories, "old", _OldRunner)
    monkeypatch.setitem(registry.runners._modules, "old", __name__)
    analysed = save_and_analyse(branchy_model(), tmp_path, "model")
    nodes = [n.name for n in analysed.facts.nodes]
    plan = plan_from_assignment(analysed, cluster(device("a", "old")), dict.fromkeys(nodes, "a"))
    models = {p.index: analysed.model for p in plan.partitions}
    with pytest.raises(RunnerProtocolError) as caught:
        Executor(plan, models=models)
    assert str(caught.value) == (
        "partition 0 on a: runner 'old''s prepared partition _OldPartition (module "
        "test_registry) does not implement the PreparedPartition protocol: missing "
        "pinned_cpus, device_resident, run_device"
    )


def test_a_broken_plugin_is_an_error_even_with_emulate(
    fake_plugins: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An absent device may be emulated; a plug-in that breaks its protocol may not."""
    fake = Registry("runner", fake_plugins + ".{name}_runner", Runner, RunnerProtocolError)
    monkeypatch.setattr(registry, "runners", fake)
    analysed = save_and_analyse(branchy_model(), tmp_path, "model")
    nodes = [n.name for n in analysed.facts.nodes]
    plan = plan_from_assignment(
        analysed, cluster(device("a", "broken")), dict.fromkeys(nodes, "a")
    )
    with pytest.raises(RunnerProtocolError, match="missing absent_reason"):
        Executor(plan, models={p.index: analysed.model for p in plan.partitions}, emulate=True)
