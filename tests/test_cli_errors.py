"""Command-line validation shared by every sub-command: one line on stderr, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from partitioner.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "MODEL", "--cluster", "cpu+l4", "--time-limit", "0", "-o", "P"],
         "--time-limit: '0': must be a positive number"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--workers", "-2", "-o", "P"],
         "--workers: '-2': must be a positive integer"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--min-gain", "-5", "-o", "P"],
         "--min-gain: '-5': must be a non-negative number"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--devices", ",", "-o", "P"],
         "name at least one device id"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--devices", "l4,gpu9", "-o", "P"],
         "gpu9 not in cluster"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--devices", "cpu", "--pin", "relu=l4",
          "-o", "P"], "--pin 'relu=l4': the device is not among --devices (cpu)"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "-o", "MODEL/plan"],
         "tiny.onnx is not a directory"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--time-limit", "nan", "-o", "P"],
         "--time-limit: 'nan': must be a finite positive number"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--time-limit", "inf", "-o", "P"],
         "--time-limit: 'inf': must be a finite positive number"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--objective", "cost",
          "--latency-target", "inf", "-o", "P"],
         "--latency-target: 'inf': must be a finite positive number"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--objective", "cost",
          "--latency-target=-inf", "-o", "P"],
         "--latency-target: '-inf': must be a finite positive number"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--min-gain", "NaN", "-o", "P"],
         "--min-gain: 'NaN': must be a finite non-negative number"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--latency-target", "3", "-o", "P"],
         "--latency-target applies only to --objective cost (got --objective latency)"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--objective", "throughput",
          "--latency-target", "3", "-o", "P"],
         "--latency-target applies only to --objective cost (got --objective throughput)"),
        (["compile", "MODEL", "--cluster", "cpu+l4", "--seed", "99999999999999999999", "-o",
          "P"], "--seed: '99999999999999999999': must be a non-negative integer up to"),
        (["run", "P", "--stream", "0"], "--stream: '0': must be a positive integer"),
        (["run", "P", "--rtol", "nan"], "--rtol: 'nan': must be a finite non-negative number"),
        (["run", "P", "--atol", "inf"], "--atol: 'inf': must be a finite non-negative number"),
        (["run", "P", "--seed", "-1"], "--seed: '-1': must be a non-negative integer"),
        (["run", "P", "--rtol", "-1"], "--rtol: '-1': must be a non-negative number"),
        (["run", "P", "--repeat", "x"], "--repeat: 'x' is not a positive integer"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(
    tiny_relu_model: Path, tmp_path: Path, argv: list[str], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.replace("MODEL", str(tiny_relu_model)).replace("P", str(tmp_path / "plan"))
            if a in ("MODEL", "P", "MODEL/plan") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "plan").exists()  # refused before anything was written


def test_compile_summary_reports_the_cost_bound_in_price_not_ms(
    tiny_relu_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compile", str(tiny_relu_model), "--cluster", "cpu+l4", "--objective", "cost",
            "--latency-target", "5", "--time-limit", "2", "-o", str(tmp_path / "plan")]
    assert main(argv) == 0
    bound_line = next(x for x in capsys.readouterr().out.splitlines() if "proven bound" in x)
    assert "per 1k" in bound_line and "ms" not in bound_line
