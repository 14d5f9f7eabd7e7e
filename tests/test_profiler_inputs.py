"""The profiler's harness: 0-d inputs are fed as arrays and measured, single-node models
carry the analysed graph's concrete shapes, failures of our harness are never cached (a
later run measures again), and op-support verdicts do not depend on the cache's history."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import partitioner.profiling.cache as profile_cache
from cost_models.profiled import UNMEASURED, ProfiledCostModel
from cost_models.single_node import HarnessError, SingleNodeBuilder, random_feed, random_feeds
from partitioner.cluster.local import detect_local_cluster
from partitioner.cluster.types import Cluster
from partitioner.costing.table import build_cost_table, fallback_summary
from partitioner.costing.types import CostTable, Supported, Unsupported
from partitioner.graph.analysis import AnalysedModel, analyse
from partitioner.profiling.cache import ProfileCache, ProfileRecord, runner_fingerprint


def scalar_model() -> onnx.ModelProto:
    """``Add(x, s)`` with ``s`` a 0-d input, a 0-d intermediate (Gather with a scalar index),
    and ``Shape -> Gather(scalar index) -> Cast`` (folded by analysis into a 0-d weight)."""
    nodes = [
        helper.make_node("Add", ["x", "s"], ["y"], name="add"),
        helper.make_node("Gather", ["v", "idx"], ["g"], name="gather", axis=0),
        helper.make_node("Mul", ["y", "g"], ["z"], name="mul"),
        helper.make_node("Shape", ["x"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "idx"], ["n"], name="gather_shape", axis=0),
        helper.make_node("Cast", ["n"], ["nf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Div", ["z", "nf"], ["w"], name="div"),
    ]
    graph = helper.make_graph(
        nodes, "scalars",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [5])],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 8])],
        [numpy_helper.from_array(np.array(1, np.int64), "idx")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def recurrent_model() -> onnx.ModelProto:
    """A tiny recognizer tail: Conv, Reshape, Transpose, LSTM, MatMul, Softmax."""
    rng = np.random.default_rng(0)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32),
                                       name)

    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["f"], name="reshape"),   # [1, 8*4, 6]
        helper.make_node("Transpose", ["f"], ["t"], name="transpose", perm=[2, 0, 1]),
        helper.make_node("LSTM", ["t", "W", "R", "B"], ["h"], name="lstm", hidden_size=8,
                         direction="bidirectional"),                          # [6, 2, 1, 8]
        helper.make_node("Transpose", ["h"], ["ht"], name="transpose2", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ht", "shape2"], ["hs"], name="reshape2"),  # [6, 16]
        helper.make_node("MatMul", ["hs", "fc"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "recognizer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 5])],
        [w("cw", 8, 3, 3, 3), numpy_helper.from_array(np.array([1, 32, 6], np.int64), "shape"),
         w("W", 2, 32, 32), w("R", 2, 32, 8), w("B", 2, 64),
         numpy_helper.from_array(np.array([6, 16], np.int64), "shape2"), w("fc", 16, 5)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared with the other cost/cluster tests: the local cluster is measured once a session.
    return tmp_path_factory.getbasetemp() / "hetpart-cache" / "profiles.sqlite"


@pytest.fixture(scope="module")
def local(cache_path: Path) -> Cluster:
    return detect_local_cluster(cache=ProfileCache(cache_path))


@pytest.fixture(scope="module")
def ort_cluster(local: Cluster) -> Cluster:
    return local.restricted_to(["ort-cpu"])


@pytest.fixture(scope="module")
def scalars() -> AnalysedModel:
    return analyse(scalar_model())


def quick(cache: ProfileCache, **options: Any) -> ProfiledCostModel:
    return ProfiledCostModel(cache, repeats=3, warmup=1, budget_s=0.05, min_time_s=0.0,
                             **options)


def verdicts(table: CostTable, model: AnalysedModel, cluster: Cluster) -> dict[Any, str]:
    """(node, device) -> "supported" or the unsupported reason: what op support says."""
    out = {}
    for node in model.facts.nodes:
        for device in cluster.devices:
            cost = table.get(node.name, device.id)
            out[(node.name, device.id)] = ("supported" if isinstance(cost, Supported)
                                           else cost.reason)
    return out


# -- feeds ---------------------------------------------------------------------------------
@pytest.mark.parametrize("elem", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE,
                                  TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL])
@pytest.mark.parametrize("shape", [[], [3], [2, 0], [2, 3]])
def test_feeds_are_arrays_of_the_declared_dtype_and_shape(elem: int, shape: list[int]) -> None:
    info = helper.make_tensor_value_info("a", elem, shape)
    value = random_feed(info, np.random.default_rng(0))
    assert type(value) is np.ndarray  # never a NumPy scalar, even for 0-d
    assert value.shape == tuple(shape) and value.flags.c_contiguous
    assert value.dtype == helper.tensor_dtype_to_np_dtype(elem)


def test_scalar_feeds_run_on_a_bare_onnxruntime_session() -> None:
    # No runner in between (runners conform feeds themselves): the feeds alone must do.
    import onnxruntime as ort

    model = analyse(scalar_model())
    single = SingleNodeBuilder(model.model, model.facts.tensors).build(model.node_proto("add"))
    feeds = random_feeds(single)
    assert feeds["s"].shape == () and type(feeds["s"]) is np.ndarray
    session = ort.InferenceSession(single.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], feeds)
    np.testing.assert_allclose(y, feeds["x"] + feeds["s"], rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3]),
    lambda: helper.make_tensor_value_info("a", TensorProto.FLOAT, None),  # rank unknown
    lambda: helper.make_tensor_sequence_value_info("a", TensorProto.FLOAT, [2]),
], ids=["symbolic", "rankless", "sequence"])
def test_unfeedable_inputs_are_harness_errors(make: Any) -> None:
    with pytest.raises(HarnessError):
        random_feed(make(), np.random.default_rng(0))


# -- single-node models declare concrete shapes --------------------------------------------
def _strip_shapes(model: AnalysedModel, names: set[str]) -> None:
    """Make the analysed graph's value infos of ``names`` rank-less, as a model file whose
    shapes analysis found only by running it may leave them."""
    for vi in model.model.graph.value_info:
        if vi.name in names:
            vi.type.tensor_type.ClearField("shape")


def test_single_node_models_take_concrete_shapes_from_the_analysis() -> None:
    model = analyse(scalar_model())
    _strip_shapes(model, {"y", "g"})
    builder = SingleNodeBuilder(model.model, model.facts.tensors)
    mul = builder.build(model.node_proto("mul"))
    dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in mul.graph.input}
    assert dims == {"y": [4, 8], "g": []}
    assert all(vi.type.tensor_type.HasField("shape") for vi in mul.graph.input)
    # Without the analysis' shapes the builder refuses (a harness error), never guesses.
    with pytest.raises(HarnessError):
        SingleNodeBuilder(model.model).build(model.node_proto("mul"))


@pytest.mark.openvino
def test_openvino_measures_a_node_whose_value_info_lost_its_shape(local: Cluster,
                                                                  tmp_path: Path) -> None:
    # OpenVINO refuses a dynamic-rank Parameter ("doesn't support Parameter op"): a
    # single-node model that declared one would make "openvino cannot run it" a verdict
    # about our harness. With the analysed shapes it is measured.
    pytest.importorskip("openvino")
    if "ov-cpu" not in {d.id for d in local.devices}:
        pytest.skip("no ov-cpu device here")
    model = analyse(recurrent_model())
    _strip_shapes(model, {"t", "r"})
    cluster = local.restricted_to(["ov-cpu"])
    cache = ProfileCache(tmp_path / "p.sqlite")
    table = build_cost_table(model, cluster, quick(cache, calibrate=False))
    for node in ("lstm", "reshape"):
        cost = table.get(node, "ov-cpu")
        assert isinstance(cost, Supported) and cost.source == "profiled", cost


# -- 0-d inputs are measured and cached ----------------------------------------------------
def _assert_measured_and_cached(model: AnalysedModel, cluster: Cluster, path: Path) -> None:
    cache = ProfileCache(path)
    cm = quick(cache, calibrate=False)
    table = build_cost_table(model, cluster, cm)
    for node in model.facts.nodes:
        for device in cluster.devices:
            cost = table.get(node.name, device.id)
            assert isinstance(cost, Supported) and cost.source == "profiled", (node.name, cost)
    for device in cluster.devices:
        rows = {r.signature: r for r in cache.records(cm.fingerprint(device))}
        for node in model.facts.nodes:
            row = rows[node.signature]
            assert row.error is None and row.repeats >= 3, row
    assert cm.fallbacks == {}


def test_zero_d_inputs_measured_on_onnxruntime(scalars: AnalysedModel, ort_cluster: Cluster,
                                               tmp_path: Path) -> None:
    assert {t.name: t.shape for t in scalars.facts.inputs}["s"] == ()
    assert scalars.facts.tensors["g"].shape == ()  # a 0-d activation between two nodes
    _assert_measured_and_cached(scalars, ort_cluster, tmp_path / "p.sqlite")


@pytest.mark.openvino
def test_zero_d_inputs_measured_on_openvino(scalars: AnalysedModel, local: Cluster,
                                            tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    if "ov-cpu" not in {d.id for d in local.devices}:
        pytest.skip("no ov-cpu device here")
    _assert_measured_and_cached(scalars, local.restricted_to(["ov-cpu"]), tmp_path / "p.sqlite")


# -- harness failures are never cached -----------------------------------------------------
def test_harness_failure_is_not_cached_and_measured_again(
        scalars: AnalysedModel, ort_cluster: Cluster, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cache = ProfileCache(tmp_path / "p.sqlite")
    cm = quick(cache, calibrate=False)
    calls = []

    def broken_feeds(single: onnx.ModelProto) -> dict[str, Any]:
        calls.append(single.graph.node[0].name)
        raise TypeError("a bug in our feed builder")

    cm.make_feeds = broken_feeds
    device = ort_cluster.devices[0]
    signatures = len({n.signature for n in scalars.facts.nodes})
    with caplog.at_level(logging.WARNING):
        table = build_cost_table(scalars, ort_cluster, cm)  # prepares: one run
    assert cache.records(cm.fingerprint(device)) == []  # nothing cached
    # Costed by a fallback for this run (never "cannot run"), and said so.
    for node in scalars.facts.nodes:
        cost = table.get(node.name, device.id)
        assert isinstance(cost, Supported) and cost.source in ("fitted", "roofline")
    summary = fallback_summary(scalars, cm.fallbacks)
    assert summary[device.id]["nodes"] == len(scalars.facts.nodes)
    assert any("a bug in our feed builder" in r for r in summary[device.id]["reasons"])
    assert f"{device.id}: {len(scalars.facts.nodes)} node(s) not measured" in caplog.text
    # Within one run a failing signature is tried once; a new run tries it again.
    assert len(calls) == signatures
    stats = cm.prepare(scalars, ort_cluster)
    assert (stats.measured, stats.unmeasured, stats.unsupported) == (signatures, signatures, 0)
    assert len(calls) == 2 * signatures and cache.records(cm.fingerprint(device)) == []
    # A run whose harness works measures and caches every signature.
    fixed = quick(ProfileCache(tmp_path / "p.sqlite"), calibrate=False)
    again = fixed.prepare(scalars, ort_cluster)
    assert (again.measured, again.reused, again.failed) == (signatures, 0, 0)
    assert len(cache.records(fixed.fingerprint(device))) == signatures


def test_a_node_we_cannot_cut_out_is_not_cached(ort_cluster: Cluster, tmp_path: Path) -> None:
    model = analyse(scalar_model())
    _strip_shapes(model, {"y"})
    model.facts.tensors.pop("y")  # nothing knows y's shape: our harness cannot build "mul"
    cache = ProfileCache(tmp_path / "p.sqlite")
    cm = quick(cache, calibrate=False)
    table = build_cost_table(model, ort_cluster, cm)
    device = ort_cluster.devices[0]
    mul = next(n for n in model.facts.nodes if n.name == "mul")
    assert cache.get(cm.fingerprint(device), mul.signature) is None
    assert isinstance(table.get("mul", device.id), Supported)
    assert "no concrete shape" in cm.fallbacks[(mul.signature, device.id)][1]


def test_runtime_refusal_is_a_cached_verdict(ort_cluster: Cluster, tmp_path: Path) -> None:
    model = scalar_model()
    model.graph.node[2].op_type, model.graph.node[2].domain = "Foo", "my.domain"
    model.opset_import.append(helper.make_opsetid("my.domain", 1))
    model.graph.value_info.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 8]))
    analysed = analyse(model)
    cache = ProfileCache(tmp_path / "p.sqlite")
    cm = quick(cache, calibrate=False)
    stats = cm.prepare(analysed, ort_cluster)
    assert stats.unsupported == 1 and stats.unmeasured == 0
    foo = next(n for n in analysed.facts.nodes if n.name == "mul")
    row = cache.get(cm.fingerprint(ort_cluster.devices[0]), foo.signature)
    assert row is not None and row.error and not row.error.startswith(UNMEASURED)
    cost = cm.estimate(analysed, foo, ort_cluster.devices[0])
    assert isinstance(cost, Unsupported) and "onnxruntime cannot run it" in cost.reason


# -- rows of an older harness are not reused -----------------------------------------------
def test_fingerprint_includes_the_harness_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = runner_fingerprint("onnxruntime", "1", {})
    monkeypatch.setattr(profile_cache, "HARNESS_VERSION", "0")
    assert runner_fingerprint("onnxruntime", "1", {}) != before


def test_unmeasured_rows_are_measured_again(scalars: AnalysedModel, ort_cluster: Cluster,
                                            tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path / "p.sqlite")
    cm = quick(cache, calibrate=False)
    fp = cm.fingerprint(ort_cluster.devices[0])
    node = scalars.facts.nodes[0]
    cache.put(fp, ProfileRecord(node.signature, node.op_type, 0.0, 0.0, 0.0, 0.0, 0,
                                UNMEASURED + "Unable to handle object of type numpy.float32"))
    cost = cm.estimate(scalars, node, ort_cluster.devices[0])
    assert isinstance(cost, Supported) and cost.source == "profiled"
    row = cache.get(fp, node.signature)
    assert row is not None and row.error is None


# -- op support does not depend on the cache's history -------------------------------------
@pytest.mark.parametrize("make", [scalar_model, recurrent_model], ids=["scalars", "recurrent"])
def test_verdicts_identical_with_a_fresh_and_a_warm_cache(make: Any, local: Cluster,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    runs = []
    for _ in range(2):  # fresh, then warm
        model = analyse(make())
        cm = quick(ProfileCache(path), calibrate=False)
        runs.append(verdicts(build_cost_table(model, local, cm), model, local))
    assert runs[0] == runs[1]
    assert set(runs[0].values()) == {"supported"}
