"""``hetpart compile`` for generation: a named spec-sheet config gives a plan-only directory,
a decoder folder gives runnable phase plans pinned per layer group; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from partitioner.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_named_config_writes_a_plan_only_directory(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan"
    code, text, _ = _run(capsys, "compile", "llama-7b", "--cluster", "fleet-a100-l4-t4-cpu",
                         "--workload", "prompt=512,new=128,batch=8,context=2048",
                         "--objective", "cost-per-mtok", "--time-limit", "5", "-o", str(out))
    assert code == 0
    assert "plan only: no runnable phase plans" in text
    assert "proven bound" in text and "best single device" in text
    doc = json.loads((out / "generation.json").read_text())
    assert doc["runnable"] is False and "plan only" in doc["note"]
    placement = doc["placement"]
    assert placement["objective"] == "cost-per-mtok"
    assert len(placement["groups"]) >= 4
    assert placement["bound"] <= placement["predicted"]["cost_per_mtok"] * (1 + 1e-9)
    assert set(placement["baselines"]) >= {"best single device", "layer offload",
                                           "best co-located plan",
                                           "cheapest homogeneous fleet"}
    for b in placement["baselines"].values():
        if b is not None:
            assert placement["predicted"]["cost_per_mtok"] <= b["cost_per_mtok"] * (1 + 1e-9) \
                or b is placement["baselines"]["cheapest homogeneous fleet"]
    # The report reads it.
    code, report, _ = _run(capsys, "report", str(out), "--no-color")
    assert code == 0
    assert "KV cache per device" in report and "Pareto" in report
    # It cannot be run, and generate says why in one line.
    code, _, err = _run(capsys, "generate", str(out), "--prompt-tokens", "4",
                        "--max-new-tokens", "2")
    assert code != 0 and "plan-only generation plan" in err and "'llama-7b'" in err
    assert len(err.strip().splitlines()) == 1
    html = tmp_path / "report.html"
    code, _, _ = _run(capsys, "report", str(out), "-o", str(html))
    assert code == 0
    page = html.read_text()
    assert "<svg" in page and "hetpart-report" in page and "llama-7b" in page


@pytest.mark.parametrize("argv, fragment", [
    (["llama-7b", "--workload", "prompt=10"], "missing new=N"),
    (["llama-7b"], "give --workload"),
    (["llama-7b", "--workload", "prompt=4000,new=100,context=5000"],
     "beyond the maximum context of model 'llama-7b' (4096 tokens)"),
    (["llama-7b", "--workload", "prompt=512,new=128", "--objective", "latency"],
     "a decoder takes ttft, tpot"),
    (["llama-7b", "--workload", "prompt=512,new=128", "--pin", "x=cpu"],
     "--pin does not apply"),
    (["llama-7b", "--workload", "prompt=512,new=128,batch=8", "--tpot-slo", "0.001",
      "--objective", "tpot"], "best achievable TPOT"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               argv: list[str], fragment: str) -> None:
    code, _, err = _run(capsys, "compile", *argv, "--cluster", "fleet-a100-l4-t4-cpu",
                        "--time-limit", "2", "-o", str(tmp_path / "p"))
    assert code != 0
    assert fragment in err
    assert err.count("\n") == 1, err


def test_generation_flags_on_an_ordinary_model_are_refused(
        tiny_relu_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "compile", str(tiny_relu_model), "--cluster", "cpu+l4",
                        "--workload", "prompt=1,new=1", "-o", str(tmp_path / "p"))
    assert code != 0 and "--workload applies to a decoder folder" in err


@pytest.mark.zoo
def test_decoder_folder_gets_runnable_phase_plans_pinned_per_group(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="the llama zoo model needs torch")
    pytest.importorskip("transformers", reason="the llama zoo model needs transformers")
    from models import zoo
    from partitioner.generation.plan_dir import load_generation_plan

    folder = zoo.build("llama", {"size": "llama-tiny", "layout": "optimum"})
    out = tmp_path / "plan"
    # 2 MB of GPU: the weights of a group or two fit, its KV cache at this context does not.
    cluster = tmp_path / "c.toml"
    cluster.write_text('[[device]]\nuse = "smallgpu"\nmemory = "1200kB"\n'
                       '[[device]]\nuse = "epyc-9654"\n'
                       '[[link]]\nsrc = "smallgpu"\ndst = "cpu"\nbandwidth = "16GB/s"\n'
                       'bidirectional = true\n')
    code, text, _ = _run(capsys, "compile", str(folder), "--cluster", str(cluster),
                         "--workload", "prompt=64,new=32,batch=4,context=1024",
                         "--objective", "tokens-per-s", "--time-limit", "5", "-o", str(out))
    assert code == 0, text
    plan = load_generation_plan(out)
    placement = plan.placement
    layers = {phase: [] for phase in ("prefill", "decode")}
    for g in placement["groups"]:
        for phase in layers:
            layers[phase] += [g[phase]] * g["layers"]
    for phase in ("prefill", "decode"):
        used = {p.device for p in plan.phase_plan(phase).partitions}
        assert used == set(layers[phase]), phase
    assert plan.predicted["tokens_per_s"] == pytest.approx(
        placement["predicted"]["tokens_per_s"])
    # The folder's model.onnx alone, without --workload, is still a single-pass compile.
    code, _, err = _run(capsys, "compile", str(folder / "model.onnx"), "--cluster", "cpu+h100",
                        "-o", str(tmp_path / "single"))
    assert code != 0 and "symbolic dimension" in err and "--workload" not in err
