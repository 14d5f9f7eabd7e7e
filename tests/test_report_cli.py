"""``hetpart report`` and ``hetpart explain`` on a plan compiled by the real pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest
from test_plan_fixtures import branchy_model
from test_report_fixtures import write_run

from partitioner.cli import main
from partitioner.cli.report_cmd import use_color
from partitioner.compiler import CompileOptions, compile_model
from partitioner.plan.codec import plan_digest
from partitioner.plan.io import load_plan, write_plan


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """branchy (width 256) compiled for cpu+l4, one branch pinned to each device."""
    root = tmp_path_factory.mktemp("report_cli")
    model = root / "branchy.onnx"
    onnx.save(branchy_model(width=256), model)
    options = CompileOptions(time_limit_s=2, pins=("a_mm=l4", "b_mm=cpu", "b_tanh=cpu"))
    result = compile_model(str(model), "cpu+l4", options)
    write_plan(result.plan, result.analysed, root / "plan")
    return root / "plan"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path.parent


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_text_piped_is_plain(plan_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["report", str(plan_dir)], capsys)
    assert code == 0, err
    assert "\x1b[" not in out
    plan = load_plan(plan_dir)
    for part in plan.partitions:
        assert f"p{part.index}    {part.device}" in out
    assert "Baselines" in out and "no run saved" in out


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert use_color(no_color=False)
    assert not use_color(no_color=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(no_color=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    monkeypatch.delenv("NO_COLOR")
    assert not use_color(no_color=False)


def test_report_html_is_identical_and_overwrites_only_reports(
    plan_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    assert _run(["report", str(plan_dir), "-o", str(out)], capsys)[0] == 0
    first = out.read_bytes()
    assert _run(["report", str(plan_dir), "-o", str(out)], capsys)[0] == 0  # an earlier report
    assert out.read_bytes() == first
    text = first.decode()
    assert str(tmp_path) not in text and str(plan_dir) not in text  # no absolute paths
    for device in ("cpu", "l4"):
        assert device in text
    other = tmp_path / "notes.html"
    other.write_text("<p>my notes</p>")
    code, _, err = _run(["report", str(plan_dir), "-o", str(other)], capsys)
    assert code == 2 and "is not a hetpart report; pass --force" in err
    assert other.read_text() == "<p>my notes</p>"
    assert _run(["report", str(plan_dir), "-o", str(other), "--force"], capsys)[0] == 0
    assert other.read_bytes() == first


def test_report_with_saved_run(plan_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = plan_digest(load_plan(plan_dir))
    run = write_run(plan_dir, digest, latency_s=2e-4)
    try:
        code, out, err = _run(["report", str(plan_dir), "--no-color"], capsys)
        assert code == 0, err
        assert "200 µs median of 3 run(s); prediction error" in out
    finally:
        run.unlink()


def test_report_of_a_real_saved_run(
    plan_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hetpart run --save`` (spec-sheet l4 and cpu emulated on ORT CPU), then the report."""
    code, _, err = _run(
        ["run", str(plan_dir), "--emulate", "--save", "--repeat", "3", "--stream", "2"], capsys
    )
    assert code == 0, err
    try:
        code, out, err = _run(["report", str(plan_dir)], capsys)
        assert code == 0, err
        assert "median of 3 run(s); prediction error" in out
        emulated = next(line for line in out.splitlines() if line.lstrip().startswith("emulated"))
        assert "l4" in emulated and "cpu" in emulated, emulated
        assert "inferences/s pipelined" in out
        html = tmp_path / "r.html"
        assert _run(["report", str(plan_dir), "-o", str(html)], capsys)[0] == 0
        assert ">measured</text>" in html.read_text()
    finally:
        (plan_dir / "run.json").unlink()


def test_run_of_another_plan_is_refused(plan_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(plan_dir, "0" * 64)
    try:
        code, out, err = _run(["report", str(plan_dir)], capsys)
    finally:
        run.unlink()
    assert code == 2 and out == ""
    assert "run.json belongs to another plan" in err and len(err.strip().splitlines()) == 1


def test_malformed_run_is_refused(plan_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = plan_dir / "run.json"
    run.write_text(json.dumps({"plan_sha256": plan_digest(load_plan(plan_dir))}))
    try:
        code, _, err = _run(["report", str(plan_dir)], capsys)
    finally:
        run.unlink()
    assert code == 2 and "malformed run measurements" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "is not a plan directory: plan.json is missing"),
        (lambda p: p / "absent", "does not exist"),
        (lambda p: _write(p / "plan.json", "{"), "cannot read plan"),
        (lambda p: _write(p / "plan.json", '{"format_version": "x/9"}'), "unknown plan format"),
    ],
)
def test_not_a_plan_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, message: str
) -> None:
    code, _, err = _run(["report", str(make(tmp_path))], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_explain_known_and_unknown_nodes(
    plan_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["explain", str(plan_dir), "a_mm"], capsys)
    assert code == 0, err
    assert out.startswith("a_mm (MatMul) runs on l4")
    assert "cost on each device" in out and "cpu" in out
    code, out, err = _run(["explain", str(plan_dir), "a_mn"], capsys)
    assert code == 2 and out == ""
    assert "node 'a_mn' is not in plan" in err and "did you mean a_mm" in err


def test_negative_top_is_refused(plan_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["report", str(plan_dir), "--top", "-1"], capsys)
    assert code == 2 and "--top -1: must be zero or positive" in err


def test_output_that_is_a_directory_is_refused(
    plan_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["report", str(plan_dir), "-o", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err
