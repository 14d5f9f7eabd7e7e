"""Profiled cost model and profile cache: measure, reuse, unsupported reasons, corrupt caches."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cost_models.profiled as profiled_module
import partitioner.profiling.timing as timing_module
from cost_models.profiled import ProfiledCostModel
from partitioner.cluster.local import detect_local_cluster
from partitioner.cluster.types import Cluster
from partitioner.costing.table import build_cost_table, default_cost_model
from partitioner.costing.types import Supported, Unsupported
from partitioner.graph.analysis import AnalysedModel, analyse
from partitioner.profiling.cache import ProfileCache, ProfileRecord


def tiny_mlp(n: int = 32, layers: int = 2) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32),
                                             f"w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"mm{i}"))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}"))
        x = f"r{i}"
    nodes.append(helper.make_node("Foo", [x], ["y"], name="foo", domain="my.domain"))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, n])], inits,
        value_info=[helper.make_tensor_value_info(x, TensorProto.FLOAT, [4, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("my.domain", 1)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared with the other cost/cluster tests: the local cluster is measured once a session.
    return tmp_path_factory.getbasetemp() / "hetpart-cache" / "profiles.sqlite"


@pytest.fixture(scope="module")
def ort_cluster(cache_path: Path) -> Cluster:
    return detect_local_cluster(cache=ProfileCache(cache_path)).restricted_to(["ort-cpu"])


@pytest.fixture(scope="module")
def analysed() -> AnalysedModel:
    return analyse(tiny_mlp())


def test_measures_then_reuses(analysed: AnalysedModel, ort_cluster: Cluster,
                              cache_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    first = ProfiledCostModel(ProfileCache(cache_path), repeats=3)
    stats = first.prepare(analysed, ort_cluster, lambda d, t: calls.append((d, t)))
    signatures = len({n.signature for n in analysed.facts.nodes})
    assert stats.measured == signatures == 3 and stats.reused == 0  # MatMul, Relu, Foo
    assert calls[-1] == (signatures, signatures)
    second = ProfiledCostModel(ProfileCache(cache_path), repeats=3)
    again = second.prepare(analysed, ort_cluster)
    assert (again.measured, again.reused) == (0, signatures)


def test_node_timed_while_others_hold_the_cpu_is_used_not_cached(
        analysed: AnalysedModel, ort_cluster: Cluster, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Busy(timing_module.OthersLoad):
        def __exit__(self, *exc: object) -> None:
            self.share = 0.9  # others took 90% of the machine while the node was timed

    monkeypatch.setattr(profiled_module, "OthersLoad", Busy)
    monkeypatch.setattr(timing_module, "CACHE_OTHERS_SHARE", 0.25)
    cache = ProfileCache(tmp_path / "profiles.sqlite")
    stats = ProfiledCostModel(cache, repeats=3).prepare(analysed, ort_cluster)
    assert stats.measured == 3  # measured and used ...
    again = ProfiledCostModel(cache, repeats=3).prepare(analysed, ort_cluster)
    # ... but timed again next time; Foo's refusal is a verdict, not a timing: kept.
    assert (again.measured, again.reused) == (2, 1)


def test_cost_table_from_profiles(analysed: AnalysedModel, ort_cluster: Cluster,
                                  cache_path: Path) -> None:
    model = ProfiledCostModel(ProfileCache(cache_path), repeats=3)
    table = build_cost_table(analysed, ort_cluster, model)
    assert len(table) == len(analysed.facts.nodes)
    mm = table.get("mm0", "ort-cpu")
    assert isinstance(mm, Supported) and mm.source == "profiled" and mm.latency_s >= 0
    foo = table.get("foo", "ort-cpu")
    assert isinstance(foo, Unsupported)
    assert "ort-cpu: onnxruntime cannot run it" in foo.reason and "Foo" in foo.reason
    assert "\n" not in foo.reason


def test_default_model_is_profiled_for_local_roofline_for_presets(ort_cluster: Cluster) -> None:
    from partitioner.cluster.file import load_cluster

    assert default_cost_model(load_cluster("cpu+l4")).name == "roofline"
    assert default_cost_model(ort_cluster, cache=ProfileCache(":memory:")).name == "profiled"


def test_non_local_device_gets_roofline(analysed: AnalysedModel, cache_path: Path) -> None:
    from partitioner.cluster.file import load_cluster

    l4 = load_cluster("cpu+l4").device("l4")
    cost = ProfiledCostModel(ProfileCache(cache_path)).estimate(analysed,
                                                                analysed.facts.nodes[0], l4)
    assert isinstance(cost, Supported) and cost.source == "roofline"


@pytest.mark.openvino
def test_openvino_device_measured(analysed: AnalysedModel, cache_path: Path) -> None:
    pytest.importorskip("openvino")
    cluster = detect_local_cluster(cache=ProfileCache(cache_path)).restricted_to(["ov-cpu"])
    model = ProfiledCostModel(ProfileCache(cache_path), repeats=3)
    table = build_cost_table(analysed, cluster, model)
    assert isinstance(table.get("mm0", "ov-cpu"), Supported)
    foo = table.get("foo", "ov-cpu")
    assert isinstance(foo, Unsupported) and "openvino" in foo.reason


def test_measure_false_falls_back_without_measuring(analysed: AnalysedModel,
                                                    ort_cluster: Cluster,
                                                    tmp_path: Path) -> None:
    model = ProfiledCostModel(ProfileCache(tmp_path / "empty.sqlite"), measure=False)
    stats = model.prepare(analysed, ort_cluster)
    assert stats.measured == 0
    cost = model.estimate(analysed, analysed.facts.nodes[0], ort_cluster.devices[0])
    assert isinstance(cost, Supported) and cost.source == "roofline"


def test_correction_from_calibrations(tmp_path: Path, ort_cluster: Cluster) -> None:
    cache = ProfileCache(tmp_path / "c.sqlite")
    model = ProfiledCostModel(cache)
    device = ort_cluster.devices[0]
    assert model.correction(device).models == 0  # identity without calibrations
    fp = model.fingerprint(device)
    # whole = 0.8 * tensor sum + 0.2 * other sum + 5 us per node, exactly
    rows = {"a": (2e-3, 1e-3, 10), "b": (1e-3, 2e-3, 50), "c": (4e-3, 1e-4, 20),
            "d": (5e-4, 5e-4, 80), "e": (3e-3, 3e-3, 30)}
    for name, (t, o, n) in rows.items():
        cache.put_calibration(fp, name, (t, o, 0.8 * t + 0.2 * o + 5e-6 * n, 1e-5, n))
    model = ProfiledCostModel(cache)  # corrections are memoised per model object
    corr = model.correction(device)
    assert corr.tensor_scale == pytest.approx(0.8, rel=1e-3)
    assert corr.other_scale == pytest.approx(0.2, rel=1e-3)
    assert corr.per_node_s == pytest.approx(5e-6, rel=1e-3)
    assert corr.apply(1e-3, tensor_op=True) == pytest.approx(0.8e-3 + 5e-6, rel=1e-3)
    held_out = model.correction(device, exclude="e")
    assert held_out.models == 4


def test_cache_roundtrip_and_isolation_by_fingerprint(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path / "p.sqlite")
    rec = ProfileRecord("sig", "MatMul", 10.0, 20.0, 1e-5, 1e-6, 5)
    cache.put("fp-a", rec)
    assert cache.get("fp-a", "sig") == rec
    assert cache.get("fp-b", "sig") is None
    cache.put_fact("fp-a", "call_overhead_s", 1e-5)
    assert cache.get_fact("fp-a", "call_overhead_s") == 1e-5
    assert ProfileCache(tmp_path / "p.sqlite").records("fp-a") == [rec]


def test_corrupt_cache_is_rebuilt_with_warning(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "profiles.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING):
        cache = ProfileCache(path)
    assert "unusable" in caplog.text and "rebuilt" in caplog.text
    assert (tmp_path / "profiles.sqlite.bad").exists()
    cache.put("fp", ProfileRecord("s", "Add", 1.0, 1.0, 1e-6, 0.0, 3))
    assert cache.get("fp", "s") is not None


def test_foreign_sqlite_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "profiles.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                       "INSERT INTO meta VALUES ('schema', 'someone-else');")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING):
        cache = ProfileCache(path)
    assert "foreign schema 'someone-else'" in caplog.text
    assert cache.records("anything") == []


def test_sqlite_of_another_program_is_moved_aside(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "profiles.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x');")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING):
        ProfileCache(path)
    assert "foreign database (tables: songs)" in caplog.text
    bad = sqlite3.connect(tmp_path / "profiles.sqlite.bad")
    assert bad.execute("SELECT title FROM songs").fetchall() == [("x",)]  # left untouched


def test_unopenable_cache_is_a_clear_error(tmp_path: Path) -> None:
    from partitioner.errors import CostModelError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CostModelError, match="cannot open the profile cache .*HETPART_CACHE"):
        ProfileCache(blocker / "profiles.sqlite")


def test_model_timed_whole_scales_its_nodes_to_that_time(tmp_path: Path,
                                                          ort_cluster: Cluster) -> None:
    """Partition-level calibration: node costs of a model timed whole sum to its whole time."""
    # Nodes well above the timing noise: node times are measured minus the per-call overhead.
    proto = tiny_mlp(384, 3)
    del proto.graph.node[-1]  # drop the custom op: only models that run whole are timed whole
    proto.graph.output[0].name = "r2"
    del proto.graph.value_info[:]
    model = analyse(proto)
    device = ort_cluster.devices[0]
    profiled = ProfiledCostModel(ProfileCache(tmp_path / "p.sqlite"), repeats=3, calibrate=True)
    assert profiled.model_scale(model, device) is None  # not timed whole yet
    stats = profiled.prepare(model, ort_cluster)
    node_sum, measured = stats.calibrated[device.id]
    scale = profiled.model_scale(model, device)
    assert scale == pytest.approx(measured / node_sum)
    total = sum(profiled.estimate(model, n, device).latency_s for n in model.facts.nodes)
    assert total == pytest.approx(measured, rel=1e-9)
    # With holdout (as the accuracy benchmark judges other models), the scale is not used.
    held_out = ProfiledCostModel(ProfileCache(tmp_path / "p.sqlite"), holdout=True)
    raw = sum(held_out.estimate(model, n, device).latency_s for n in model.facts.nodes)
    assert raw == pytest.approx(node_sum, rel=1e-9)


def _uses_a_value_computed_from_data(op: str, combine: str, constant: list[int]) -> onnx.ModelProto:
    """``op(relu(x), v)`` where ``v = combine(int(max(relu(x) * 0)), constant)`` is an integer
    input the graph computes from the data, so analysis cannot fold it: alone, the node sees
    it as a Parameter (with a synthetic value)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "zero_f"], ["z"], name="zeroed"),
        helper.make_node("ReduceMax", ["z"], ["m"], keepdims=0, name="max"),
        helper.make_node("Cast", ["m"], ["m_int"], to=TensorProto.INT64, name="cast"),
        helper.make_node(combine, ["m_int", "constant"], ["v"], name="value"),
        helper.make_node(op, ["r", "v"], ["y"], name=op.lower()),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
             numpy_helper.from_array(np.array(constant, np.int64), "constant")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _unsqueeze_by_computed_axes() -> onnx.ModelProto:
    """``Unsqueeze`` with axes ``[0]`` computed from the data: alone, OpenVINO refuses it
    ("dynamic rank")."""
    return _uses_a_value_computed_from_data("Unsqueeze", "Reshape", [1])


@pytest.mark.openvino
def test_node_refused_alone_is_measured_in_its_minimal_subgraph(tmp_path: Path) -> None:
    """A node is unsupported only when the runtime also refuses it with its computed integer
    inputs as constants; here OpenVINO runs it, so it gets a measured cost."""
    pytest.importorskip("openvino")
    analysed = analyse(_unsqueeze_by_computed_axes())
    cluster = detect_local_cluster(cache=ProfileCache(tmp_path / "c.sqlite")).restricted_to(
        ["ov-cpu"])
    model = ProfiledCostModel(ProfileCache(tmp_path / "c.sqlite"), repeats=3)
    builder_constants = model._builder(analysed).computed_constants(
        analysed.node_proto("unsqueeze"))
    assert {k: v.tolist() for k, v in builder_constants.items()} == {"v": [0]}
    from partitioner.registry import get_runner

    alone = model._builder(analysed).build(analysed.node_proto("unsqueeze"))
    with pytest.raises(Exception, match="dynamic rank"):
        get_runner("openvino").prepare(alone, {})
    cost = build_cost_table(analysed, cluster, model).get("unsqueeze", "ov-cpu")
    assert isinstance(cost, Supported) and cost.source == "profiled", cost
    assert model.fallbacks == {}


@pytest.mark.openvino
def test_refusal_in_the_minimal_subgraph_too_is_quoted(tmp_path: Path) -> None:
    """When the minimal subgraph is refused as well, the verdict quotes the runtime and says
    it was tried (the report shows this reason)."""
    pytest.importorskip("openvino")
    analysed = analyse(_unsqueeze_by_computed_axes())
    cluster = detect_local_cluster(cache=ProfileCache(tmp_path / "c.sqlite")).restricted_to(
        ["ov-cpu"])
    model = ProfiledCostModel(ProfileCache(tmp_path / "c.sqlite"), repeats=3)
    builder = model._builder(analysed)
    # A runtime that cannot run Unsqueeze at all: the axes value cannot help it.
    real_build = builder.build
    builder.build = lambda node, constants=None: _rename_op(real_build(node, constants))
    cost = build_cost_table(analysed, cluster, model).get("unsqueeze", "ov-cpu")
    assert isinstance(cost, Unsupported)
    assert "also with its computed inputs v as constants" in cost.reason
    assert "ov-cpu: openvino cannot run it" in cost.reason


def _rename_op(model: onnx.ModelProto) -> onnx.ModelProto:
    """The single-node model with its op renamed to one no runtime knows."""
    model.graph.node[0].op_type = "UnsqueezeNobodyKnows"
    return model


def test_node_failing_on_synthetic_shape_inputs_runs_with_their_computed_values(
        tmp_path: Path, ort_cluster: Cluster) -> None:
    """An Expand whose shape the graph computes from data: alone, the synthetic zeros make
    an invalid shape and the run fails; with the computed shape as a constant it is
    measured (decoders' attention-mask arithmetic does this; no fallback is used)."""
    model = _uses_a_value_computed_from_data("Expand", "Add", [2, 4, 16])
    analysed = analyse(model)
    profiled = ProfiledCostModel(ProfileCache(tmp_path / "c.sqlite"), repeats=3)
    from partitioner.registry import get_runner

    alone = profiled.single_node_model(analysed, analysed.facts.node("expand"))
    prepared = get_runner("onnxruntime").prepare(alone, {})
    with pytest.raises(Exception, match="(?i)expand"):
        prepared.run(profiled.make_feeds(alone))
    cost = build_cost_table(analysed, ort_cluster, profiled).get("expand", "ort-cpu")
    assert isinstance(cost, Supported) and cost.source == "profiled", cost
    assert profiled.fallbacks == {}
