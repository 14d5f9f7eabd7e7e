"""Plan artifact: build, write, load, schema, invariants and partition extraction."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_plan_fixtures import (
    BRANCHY_SPLIT,
    alternate,
    branchy_model,
    cluster,
    device,
    save_and_analyse,
    token_model,
)

from partitioner.costing.types import CostTable, Supported, Unsupported
from partitioner.errors import PlanError
from partitioner.plan import extract
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.check import plan_schema, validate_plan_document
from partitioner.plan.codec import plan_digest, plan_from_dict, plan_to_dict
from partitioner.plan.io import load_plan, write_plan
from partitioner.plan.types import FORMAT_VERSION
from partitioner.runtime.executor import Executor


@pytest.fixture()
def branchy(tmp_path: Path):
    analysed = save_and_analyse(branchy_model(), tmp_path, "branchy")
    costs = CostTable()
    for node in analysed.facts.nodes:
        costs.set(node.name, "a", Supported(1e-4, 0, "test"))
        costs.set(
            node.name,
            "b",
            Supported(2e-4, 0, "test")
            if node.op_type != "Tanh"
            else Unsupported("Tanh is not in b's table"),
        )
    plan = plan_from_assignment(
        analysed, cluster(device("a"), device("b")), {**BRANCHY_SPLIT, "b_tanh": "a"}, costs
    )
    return analysed, plan


def _write(analysed, plan, tmp_path: Path) -> Path:
    write_plan(plan, analysed, tmp_path / "plan")
    return tmp_path / "plan"


def test_plan_structure(branchy) -> None:
    _, plan = branchy
    assert plan.format_version == FORMAT_VERSION
    # The stem's partition ends where it releases b's branch, so both branches run at once.
    assert [p.device for p in plan.partitions] == ["a", "a", "b", "a", "b"]
    assert plan.partitions[1].nodes == ("a_mm", "a_relu")
    assert plan.partitions[2].nodes == ("b_mm",)
    assert {i.from_partition for i in plan.partitions[2].inputs} == {0}
    # Transfers exist only between different devices, with predicted times.
    assert {(t.tensor, t.src_device, t.dst_device) for t in plan.transfers} == {
        ("h", "a", "b"),
        ("b0", "b", "a"),
        ("s", "a", "b"),
    }
    assert all(t.predicted_s > 0 for t in plan.transfers)
    # Per-node costs on every device, unsupported ones with their reason.
    tanh = plan.placement["b_tanh"]
    assert tanh.device == "a" and tanh.costs["b"].unsupported == "Tanh is not in b's table"
    assert tanh.costs["a"].latency_s == pytest.approx(1e-4)
    # The predicted schedule orders partitions and the solver stats agree with it.
    ends = [p.predicted_end_s for p in plan.partitions]
    assert ends == sorted(ends) and plan.solver.predicted_latency_s == pytest.approx(ends[-1])
    assert plan.solver.num_partitions == 5 and plan.solver.devices_used == ("a", "b")
    outputs = {o.name: o for p in plan.partitions for o in p.outputs}
    assert outputs["a1"].graph_output and outputs["a1"].to_partitions == (3,)


def test_roundtrip_is_exact_and_stable(branchy, tmp_path: Path) -> None:
    analysed, plan = branchy
    root = _write(analysed, plan, tmp_path)
    text = (root / "plan.json").read_text()
    loaded = load_plan(root, model=analysed.source)
    assert loaded == plan
    assert plan_from_dict(json.loads(text)) == plan
    assert plan_digest(loaded) == plan_digest(plan)
    # Rewriting gives byte-identical JSON with sorted keys.
    write_plan(plan, analysed, root, overwrite=True)
    assert (root / "plan.json").read_text() == text
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_clock_stopped_stages_are_recorded_only_when_the_clock_decided(branchy) -> None:
    _, plan = branchy
    assert "clock_stopped_stages" not in plan_to_dict(plan)["solver"]
    stopped = dataclasses.replace(
        plan, solver=dataclasses.replace(plan.solver, clock_stopped_stages=("relaxation",)))
    data = plan_to_dict(stopped)
    assert data["solver"]["clock_stopped_stages"] == ["relaxation"]
    validate_plan_document(data, "plan.json")
    assert plan_from_dict(data) == stopped


def test_partitions_are_standalone_and_compose_to_the_model(branchy, tmp_path: Path) -> None:
    analysed, plan = branchy
    root = _write(analysed, plan, tmp_path)
    x = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    values = {"x": x}
    for p in plan.partitions:
        model = onnx.load(root / p.file)
        assert model.ir_version <= 10
        onnx.checker.check_model(model)
        assert {n.name for n in model.graph.node} == set(p.nodes)
        session = ort.InferenceSession(str(root / p.file))
        outs = session.run(None, {i.name: values[i.name] for i in p.inputs})
        values.update(zip([o.name for o in session.get_outputs()], outs, strict=True))
    expected = ort.InferenceSession(analysed.source).run(None, {"x": x})
    np.testing.assert_allclose(values["y"], expected[0], rtol=1e-5, atol=1e-6)


def test_schema_accepts_written_plan_and_rejects_bad_one(branchy) -> None:
    _, plan = branchy
    data = plan_to_dict(plan)
    validate_plan_document(data, "plan")
    assert plan_schema()["$schema"].endswith("2020-12/schema")
    data["partitions"][0]["predicted_start_s"] = "soon"
    with pytest.raises(PlanError, match="partitions/0/predicted_start_s"):
        validate_plan_document(data, "plan")


def _edit(root: Path, change) -> None:
    path = root / "plan.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _swap_nodes(a: dict, b: dict) -> None:
    a["nodes"], b["nodes"] = b["nodes"], a["nodes"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format_version="hetpart-plan/99"), "unknown plan format version"),
        (lambda d: d["partitions"][2]["nodes"].append("stem"), "placed twice.*stem"),
        (lambda d: d["partitions"][1]["nodes"].remove("a_mm"), "placed in no partition.*a_mm"),
        (
            lambda d: d["partitions"][0]["inputs"].append(
                {"name": "b0", "bytes": 128, "from_partition": 2}
            ),
            "cycle between partitions 0 -> 2",
        ),
        (lambda d: d["partitions"][1].update(device="gpu9"), "gpu9.*not in cluster"),
        (
            lambda d: d["partitions"][2]["inputs"][0].update(from_partition=1),
            "partition 1, which does not produce it",
        ),
        (lambda d: d.pop("solver"), "'solver' is a required property"),
        (lambda d: d.update(pins={"stem": "b"}), "stem pinned to b but placed on a"),
        (lambda d: d.update(forbidden={"head": ["b"]}), "head placed on forbidden b"),
        (
            lambda d: _swap_nodes(d["partitions"][0], d["partitions"][1]),
            r"partition 0 lists \['a_mm', 'a_relu'\], which placement puts in partition 1",
        ),
    ],
)
def test_load_refuses_broken_plans(branchy, tmp_path: Path, change, message: str) -> None:
    analysed, plan = branchy
    root = _write(analysed, plan, tmp_path)
    _edit(root, change)
    with pytest.raises(PlanError, match=message):
        load_plan(root)


def test_load_refuses_missing_things_and_foreign_model(branchy, tmp_path: Path) -> None:
    analysed, plan = branchy
    with pytest.raises(PlanError, match="does not exist"):
        load_plan(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match="plan.json is missing"):
        load_plan(tmp_path / "empty")
    root = _write(analysed, plan, tmp_path)
    other = tmp_path / "other.onnx"
    onnx.save(branchy_model(seed=7), other)
    with pytest.raises(PlanError, match="does not match the plan: sha256"):
        load_plan(root, model=other)
    (root / plan.partitions[4].file).unlink()
    with pytest.raises(PlanError, match="missing partition file.*p4_b.onnx"):
        load_plan(root)
    (root / "plan.json").write_text("{not json")
    with pytest.raises(PlanError, match="cannot read plan"):
        load_plan(root)


def test_write_never_clobbers_user_files(branchy, tmp_path: Path) -> None:
    analysed, plan = branchy
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("keep")
    with pytest.raises(PlanError, match="not a plan"):
        write_plan(plan, analysed, user_dir)
    root = _write(analysed, plan, tmp_path)
    with pytest.raises(PlanError, match="--force"):
        write_plan(plan, analysed, root)
    (root / "notes.txt").write_text("keep")
    (root / "partitions" / "p9_old.onnx").write_text("stale")
    single = plan_from_assignment(analysed, plan.cluster, dict.fromkeys(BRANCHY_SPLIT, "a"))
    write_plan(single, analysed, root, overwrite=True)
    assert (root / "notes.txt").read_text() == "keep"
    assert sorted(f.name for f in (root / "partitions").iterdir()) == ["p0_a.onnx"]
    assert load_plan(root).solver.num_partitions == 1


def test_large_partitions_use_external_data(branchy, tmp_path: Path, monkeypatch) -> None:
    analysed, plan = branchy
    monkeypatch.setattr(extract, "EXTERNAL_DATA_THRESHOLD", 1000)  # 16x16 floats = 1 KiB
    root = _write(analysed, plan, tmp_path)
    data_files = sorted(f.name for f in (root / "partitions").glob("*.data"))
    assert "p0_a.onnx.data" in data_files
    x = np.ones((2, 16), np.float32)
    with Executor(load_plan(root), root) as executor:
        out = executor.run({"x": x}).outputs
    expected = ort.InferenceSession(analysed.source).run(["y"], {"x": x})[0]
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)


def test_index_inputs_get_value_range(tmp_path: Path) -> None:
    analysed = save_and_analyse(token_model(vocab=11), tmp_path, "tokens")
    plan = plan_from_assignment(analysed, cluster(device("a")), alternate(analysed, ["a"]))
    (ids,) = plan.model.inputs
    assert ids.dtype == "int64" and ids.value_range == (0, 11)


def test_bad_assignment_is_refused(branchy) -> None:
    analysed, plan = branchy
    with pytest.raises(PlanError, match="nodes without a device.*head"):
        plan_from_assignment(
            analysed, plan.cluster, {k: v for k, v in BRANCHY_SPLIT.items() if k != "head"}
        )
    with pytest.raises(PlanError, match="not in cluster.*zz"):
        plan_from_assignment(analysed, plan.cluster, {**BRANCHY_SPLIT, "head": "zz"})


def test_annotated_whole_model(branchy, tmp_path: Path) -> None:
    analysed, plan = branchy
    root = tmp_path / "plan"
    write_plan(plan, analysed, root, annotate=True)
    model = onnx.load(root / "annotated.onnx")
    assert model.ir_version <= 10
    props = {n.name: {p.key: p.value for p in n.metadata_props} for n in model.graph.node}
    for name, where in plan.placement.items():
        assert props[name]["hetpart.device"] == where.device
        assert props[name]["hetpart.partition"] == str(where.partition)
    x = np.ones((2, 16), np.float32)
    got = ort.InferenceSession(str(root / "annotated.onnx")).run(["y"], {"x": x})[0]
    expected = ort.InferenceSession(analysed.source).run(["y"], {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # An overwrite without annotate removes the stale annotated model (a plan-owned file).
    write_plan(plan, analysed, root, overwrite=True)
    assert not (root / "annotated.onnx").exists()


def _branchy_problem(tmp_path: Path, clu, **constraints):
    """The branchy model on ``clu``'s devices a (100 µs a node) and b (200 µs), as a Problem."""
    from partitioner.solver.build import build_problem

    analysed = save_and_analyse(branchy_model(), tmp_path, "branchy")
    costs = CostTable()
    for node in analysed.facts.nodes:
        costs.set(node.name, "a", Supported(1e-4, 256, "test"))
        costs.set(node.name, "b", Supported(2e-4, 512, "test"))
    return analysed, costs, build_problem(analysed.facts, clu, costs, **constraints)


def test_plan_records_pins_weights_and_evaluator_numbers(tmp_path: Path) -> None:
    from partitioner.plan.build import build_plan
    from partitioner.solver.evaluate import evaluate
    from partitioner.solver.problem import SolveReport

    clu = cluster(device("a"), device("b"))
    analysed, costs, problem = _branchy_problem(
        tmp_path, clu, pins=["head=b", "Tanh=b"], forbidden=["join=b"]
    )
    assignment = dict(BRANCHY_SPLIT)
    ev = evaluate(problem, assignment)
    report = SolveReport(assignment, ev, "GIVEN", ev.latency_s, 0.0, 1.0, 0.0, 0, 0, 0.0)
    plan = build_plan(analysed, clu, problem, report, costs)
    # The plan executes the very calls the evaluator priced.
    assert [(p.device, tuple(p.nodes)) for p in plan.partitions] == [
        (p.device, p.nodes) for p in ev.partitions]
    other = evaluate(problem, dict.fromkeys(assignment, "a"))
    mixed = SolveReport(assignment, other, "GIVEN", 0.0, 0.0, 1.0, 0.0, 0, 0, 0.0)
    with pytest.raises(PlanError, match="does not cut its own assignment"):
        build_plan(analysed, clu, problem, mixed, costs)
    assert plan.pins == {"b_tanh": "b", "head": "b"}
    assert plan.forbidden == {"join": ("b",)}
    assert plan.solver.busy_s == pytest.approx(ev.busy_s)
    assert plan.solver.peak_memory == ev.peak_memory
    weights = {n.name: n.weight_bytes for n in analysed.facts.nodes}
    assert {n: p.weight_bytes for n, p in plan.placement.items()} == weights
    assert sum(weights.values()) > 0
    on_a = sum(w for n, w in weights.items() if assignment[n] == "a")
    assert plan.solver.peak_memory["a"] >= on_a + 256
    root = tmp_path / "plan"
    write_plan(plan, analysed, root)
    loaded = load_plan(root)
    assert plan_to_dict(loaded) == plan_to_dict(plan)
    assert loaded.pins == plan.pins and loaded.forbidden == plan.forbidden
    assert loaded.solver.peak_memory == plan.solver.peak_memory


def test_baseline_prices_are_recorded_and_survive_write_and_load(tmp_path: Path) -> None:
    from partitioner.plan.build import build_plan
    from partitioner.plan.types import BaselineSummary
    from partitioner.solver.evaluate import evaluate
    from partitioner.solver.problem import BaselineResult, SolveReport

    priced = [dataclasses.replace(device(d), price_per_hour=p) for d, p in (("a", 3.6), ("b", 36))]
    clu = cluster(*priced)
    analysed, costs, problem = _branchy_problem(tmp_path, clu)
    on_a = dict.fromkeys(BRANCHY_SPLIT, "a")
    ev = evaluate(problem, BRANCHY_SPLIT)
    baselines = {
        "single:a": BaselineResult("single:a", on_a, evaluate(problem, on_a)),
        "single:c": BaselineResult("single:c", {}, None, "c cannot run Tanh"),
    }
    report = SolveReport(
        BRANCHY_SPLIT, ev, "GIVEN", ev.cost_per_1k, 0.0, 1.0, 0.0, 0, 0, 0.0, baselines
    )
    plan = build_plan(analysed, clu, problem, report, costs)
    # All on a: one call, busy 7 nodes x 100 µs + 10 µs overhead, at 3.6 per hour = 1e-3 per s.
    assert plan.baselines["single:a"].cost_per_1k == pytest.approx(710e-6 * 1e-3 * 1000)
    assert plan.baselines["single:c"] == BaselineSummary(None, None, "c cannot run Tanh", None)
    root = tmp_path / "plan"
    write_plan(plan, analysed, root)
    assert load_plan(root).baselines == plan.baselines

    def forget_prices(data: dict) -> None:  # a plan.json written before prices were recorded
        for b in data["baselines"].values():
            del b["cost_per_1k"]

    _edit(root, forget_prices)
    older = load_plan(root).baselines
    assert older["single:a"] == dataclasses.replace(plan.baselines["single:a"], cost_per_1k=None)


def test_compile_cli_annotate_writes_annotated_model_and_pins(tmp_path: Path, capsys) -> None:
    from partitioner.cli import main

    model = tmp_path / "branchy.onnx"
    onnx.save(branchy_model(), model)
    root = tmp_path / "plan"
    argv = ["compile", str(model), "--cluster", "cpu+l4", "--time-limit", "1", "--quiet"]
    code = main([*argv, "-o", str(root), "--annotate", "--pin", "head=cpu"])
    capsys.readouterr()
    assert code == 0
    annotated = onnx.load(root / "annotated.onnx")
    assert len(annotated.graph.node) == len(onnx.load(model).graph.node)
    plan = load_plan(root)
    assert plan.pins == {"head": "cpu"} and plan.placement["head"].device == "cpu"
    assert set(plan.solver.busy_s) == set(plan.cluster.device_ids)
    assert main([*argv, "-o", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    assert not (tmp_path / "plain" / "annotated.onnx").exists()
