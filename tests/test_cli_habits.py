"""Habits of the field: ``--version``, ``-v`` after the sub-command, ``run --warmup`` and
latency percentiles (as onnxruntime_perf_test and OpenVINO's benchmark_app report them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_plan_fixtures import branchy_model, cluster, device, save_and_analyse

from partitioner import __version__
from partitioner.cli import build_parser, main
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.io import load_plan, write_plan
from partitioner.runtime.executor import Executor
from partitioner.runtime.feeds import random_inputs
from partitioner.runtime.records import latency_percentiles, load_run, measure
from partitioner.versions import toolchain_versions


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-device plan of the branchy model on ONNX Runtime CPU (fast to run)."""
    folder = tmp_path_factory.mktemp("habits")
    analysed = save_and_analyse(branchy_model(), folder, "model")
    assignment = {n.name: "a" for n in analysed.facts.nodes}
    plan = plan_from_assignment(analysed, cluster(device("a")), assignment)
    write_plan(plan, analysed, folder / "plan")
    return folder / "plan"


def test_version_names_hetpart_and_its_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"hetpart {__version__} (") and out.count("\n") == 1
    for library, version in toolchain_versions().items():
        if library != "hetpart":
            assert f"{library} {version or 'not installed'}" in out


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["-v", "devices"], True),
        (["devices", "-v"], True),
        (["devices", "--verbose", "--cluster", "cpu+l4"], True),
        (["devices"], False),
        (["compile", "m.onnx", "-o", "p", "-v"], True),
        (["-v", "compile", "m.onnx", "-o", "p"], True),  # not reset by the sub-command
        (["zoo", "build", "mlp", "-o", "m.onnx", "-v"], True),
        (["run", "p", "-v"], True),
        (["report", "p"], False),
    ],
)
def test_verbose_before_or_after_the_sub_command(argv: list[str], verbose: bool) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


def test_verbose_after_the_sub_command_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--cluster", "cpu+l4", "-v"]) == 0
    assert "l4" in capsys.readouterr().out


def test_percentiles_interpolate_like_the_median() -> None:
    runs = [float(i) for i in range(1, 11)]  # 1..10 ms as seconds would do too
    p = latency_percentiles(runs)
    assert p == pytest.approx({"latency_p50_s": 5.5, "latency_p90_s": 9.1, "latency_p99_s": 9.91})
    assert latency_percentiles([2.0]) == {f"latency_p{q}_s": 2.0 for q in (50, 90, 99)}
    assert latency_percentiles([]) == {}


def test_warmup_runs_are_not_timed(plan_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = load_plan(plan_dir)
    feeds = random_inputs(plan.model.inputs)
    with Executor(plan, plan_dir) as executor:
        calls = []
        real = executor.run
        monkeypatch.setattr(executor, "run", lambda f: calls.append(1) or real(f))
        for warmup in (0, 3):
            calls.clear()
            record, _ = measure(executor, feeds, repeat=4, warmup=warmup)
            assert len(calls) == 4 + warmup and record["warmup"] == warmup
            assert record["min_latency_s"] <= record["latency_p50_s"] <= record["latency_p90_s"]
            assert record["latency_p90_s"] <= record["latency_p99_s"]
            assert record["latency_p50_s"] == pytest.approx(record["measured_latency_s"])


def test_run_json_text_and_run_record_carry_percentiles(
    plan_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = {"latency_p50_s", "latency_p90_s", "latency_p99_s", "measured_latency_s"}
    assert main(["run", str(plan_dir), "--json", "--repeat", "5", "--warmup", "0", "--save"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert keys <= set(record) and record["warmup"] == 0 and record["repeat"] == 5
    saved = load_run(plan_dir)
    assert {k: saved[k] for k in keys} == {k: record[k] for k in keys}

    assert main(["run", str(plan_dir), "--repeat", "3", "-v"]) == 0
    out = capsys.readouterr().out
    assert "3 timed runs after 1 warm-up run\n" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("percentiles"))
    assert "p50 " in line and "p90 " in line and "p99 " in line and " ms" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "P", "--warmup", "-1"], "--warmup: '-1': must be a non-negative integer"),
        (["run", "P", "--warmup", "x"], "--warmup: 'x' is not a non-negative integer"),
    ],
)
def test_bad_warmup_exits_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_report_names_the_versions_that_compiled_the_plan(
    plan_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(plan_dir), "--no-color", "--top", "0"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "compiled " in x)
    assert line.startswith(f"  compiled   with hetpart {__version__}, onnxruntime ")
    assert "ortools" in line and "openvino" in line
