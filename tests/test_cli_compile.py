"""``hetpart compile``: baselines in the summary, and plan writing that never loses a plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_plan_fixtures import BRANCHY_SPLIT, branchy_model, cluster, device, save_and_analyse

from partitioner.cli import main
from partitioner.errors import PlanError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.codec import plan_to_dict
from partitioner.plan.io import load_plan, write_plan

#: A device id too long for a file name (``p<i>_<id>.onnx`` exceeds 255 bytes): the partition
#: file of a plan that uses it cannot be written, a real failure half-way through writing.
LONG_ID = "g" * 250


def _compile(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["compile", *argv, "--time-limit", "2", "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_cost_summary_keeps_the_latency_of_baselines_that_miss_the_target(
    tiny_relu_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # On cpu+l4 the Relu takes about 0.010 ms on the CPU and 0.030 ms on the L4 (call overhead).
    common = [str(tiny_relu_model), "--cluster", "cpu+l4", "--objective", "cost",
              "--latency-target", "0.02"]
    code, out, err = _compile(capsys, *common, "--json", "-o", str(tmp_path / "plan"))
    assert code == 0, err
    summary = json.loads(out)
    latency, infeasible = summary["baselines"], summary["baselines_infeasible"]
    assert set(latency) == set(summary["baseline_cost_per_1k"]) == set(summary["baseline_stage_s"])
    assert all(v is not None and v > 0 for v in latency.values()), latency
    assert latency["single:l4"] > 2e-5 > latency["single:cpu"]
    assert "misses the target" in infeasible["single:l4"]
    assert "single:cpu" not in infeasible
    # The feasible baselines' numbers are the evaluator's, as recorded in the plan.
    recorded = load_plan(tmp_path / "plan").baselines
    for name in set(latency) - set(infeasible):
        assert latency[name] == pytest.approx(recorded[name].latency_s)
        assert summary["baseline_cost_per_1k"][name] == pytest.approx(recorded[name].cost_per_1k)

    code, out, err = _compile(capsys, *common, "-o", str(tmp_path / "plan"), "--force")
    assert code == 0, err
    l4_line = next(x for x in out.splitlines() if x.strip().startswith("single:l4"))
    assert f"{latency['single:l4'] * 1e3:.3f} ms latency" in l4_line
    assert "per 1k" in l4_line and "infeasible: latency" in l4_line
    cpu_line = next(x for x in out.splitlines() if x.strip().startswith("single:cpu"))
    assert "infeasible" not in cpu_line


def test_throughput_summary_shows_each_baselines_stage_time(
    tiny_relu_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tiny_relu_model), "--cluster", "cpu+l4", "--objective", "throughput"]
    code, out, err = _compile(capsys, *argv, "--json", "-o", str(tmp_path / "plan"))
    assert code == 0, err
    summary = json.loads(out)
    stage = summary["baseline_stage_s"]
    assert set(stage) == set(summary["baselines"]) and summary["baselines_infeasible"] == {}
    recorded = load_plan(tmp_path / "plan").baselines
    for name, seconds in stage.items():
        assert seconds == pytest.approx(recorded[name].stage_s)
        assert 0 < seconds <= summary["baselines"][name] + 1e-12

    code, out, err = _compile(capsys, *argv, "-o", str(tmp_path / "plan"), "--force")
    assert code == 0, err
    lines = out.splitlines()
    assert any("baselines (predicted latency, stage time)" in x for x in lines), out
    for name, seconds in stage.items():
        line = next(x for x in lines if x.strip().startswith(name + " "))
        assert f"{seconds * 1e3:.3f} ms stage" in line, line


def _long_id_cluster(folder: Path) -> Path:
    path = folder / "long-ids.toml"
    path.write_text(
        '[cluster]\nname = "long-ids"\nfallback_device = "cpu"\n\n'
        '[[device]]\nuse = "epyc-9654"\n\n'
        f'[[device]]\nuse = "l4"\nid = "{LONG_ID}"\n\n'
        f'[[link]]\nsrc = "cpu"\ndst = "{LONG_ID}"\nbandwidth = "25GB/s"\nbidirectional = true\n'
    )
    return path


def test_failed_forced_compile_leaves_the_previous_plan_loadable(
    tiny_relu_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clu = str(_long_id_cluster(tmp_path))
    root = tmp_path / "z"
    code, _, err = _compile(capsys, str(tiny_relu_model), "--cluster", clu, "--devices", "cpu",
                            "-o", str(root))
    assert code == 0, err
    before = plan_to_dict(load_plan(root))
    files = sorted(p.relative_to(root) for p in root.rglob("*"))
    (root / "notes.txt").write_text("mine")

    # The replacement plan runs on the long-named device: its partition cannot be written.
    code, out, err = _compile(capsys, str(tiny_relu_model), "--cluster", clu, "--devices", LONG_ID,
                              "-o", str(root), "--force")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "cannot write" in err and str(root / "partitions") in err, err
    assert "Traceback" not in err
    assert plan_to_dict(load_plan(root, model=tiny_relu_model)) == before
    assert sorted(p.relative_to(root) for p in root.rglob("*") if p.name != "notes.txt") == files
    assert (root / "notes.txt").read_text() == "mine"
    assert _hidden(tmp_path) == []  # no staging directory left behind

    # And the next --force still replaces it (the plan was not left half-deleted).
    code, _, err = _compile(capsys, str(tiny_relu_model), "--cluster", clu, "--devices", "cpu",
                            "--objective", "throughput", "-o", str(root), "--force")
    assert code == 0, err
    assert load_plan(root).objective == "throughput"
    assert (root / "notes.txt").read_text() == "mine"


def test_failure_half_way_through_writing_keeps_the_old_plan(tmp_path: Path) -> None:
    analysed = save_and_analyse(branchy_model(), tmp_path, "branchy")
    clu = cluster(device("a"), device(LONG_ID))
    root = tmp_path / "plan"
    old = plan_from_assignment(analysed, clu, dict.fromkeys(BRANCHY_SPLIT, "a"))
    write_plan(old, analysed, root)
    (root / "run.json").write_text('{"kept": true}')  # plan-owned: an overwrite replaces it
    split = {n: (LONG_ID if d == "b" else "a") for n, d in BRANCHY_SPLIT.items()}
    new = plan_from_assignment(analysed, clu, split)
    assert [p.device for p in new.partitions][0] == "a"  # written before the failing one
    with pytest.raises(PlanError, match=r"cannot write .*partitions/p[0-9]+_g+\.onnx"):
        write_plan(new, analysed, root, overwrite=True)
    assert plan_to_dict(load_plan(root)) == plan_to_dict(old)
    assert sorted(f.name for f in (root / "partitions").iterdir()) == ["p0_a.onnx"]
    assert (root / "run.json").read_text() == '{"kept": true}'
    assert _hidden(tmp_path) == []
    # A new plan directory is not created at all when writing fails.
    with pytest.raises(PlanError, match="cannot write"):
        write_plan(new, analysed, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() and _hidden(tmp_path) == []


def test_plan_written_into_an_empty_directory_and_a_new_nested_one(tmp_path: Path) -> None:
    analysed = save_and_analyse(branchy_model(), tmp_path, "branchy")
    plan = plan_from_assignment(analysed, cluster(device("a"), device("b")), BRANCHY_SPLIT)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_plan(plan, analysed, empty)
    nested = tmp_path / "a" / "b" / "plan"
    write_plan(plan, analysed, nested, annotate=True)
    for root in (empty, nested):
        assert plan_to_dict(load_plan(root)) == plan_to_dict(plan)
    assert (nested / "annotated.onnx").is_file()
    assert _hidden(tmp_path) == [] and _hidden(tmp_path / "a" / "b") == []
