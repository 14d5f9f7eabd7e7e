"""Generation plans end to end: phase plans split across ONNX Runtime and OpenVINO generate
the same tokens as the unpartitioned model for both layouts, at prompt and past lengths they
were not compiled for; the plan directory format and its errors; ``hetpart generate``;
measured decode steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from partitioner.cli import main
from partitioner.errors import PlanError, RunError
from partitioner.generation.layout import LayoutError, load_layout
from partitioner.generation.plan_dir import (
    GENERATION_FILE,
    load_generation_plan,
    write_generation_plan,
)
from partitioner.generation.reference import ReferenceSession, compare

pytest.importorskip("torch", reason="the llama zoo model needs torch: pip install 'hetpart[zoo]'")
pytest.importorskip("transformers", reason="llama needs transformers")
pytest.importorskip("openvino", reason="the split plans run half the layers on OpenVINO")

from models import zoo  # noqa: E402
from partitioner import Generator  # noqa: E402
from partitioner.generation.phase_plans import compile_phase, compile_split_plan  # noqa: E402

pytestmark = [pytest.mark.zoo, pytest.mark.openvino]
SPLIT = ("ort-cpu", "ov-cpu")
#: Compiled at prompt 16 / context 64: generation below runs other lengths on purpose.
OPTIONS = {"measure_rounds": 0, "time_limit_s": 5}


def _plan(kind: str, root: Path) -> Path:
    folder = zoo.build("llama", {"size": "llama-tiny", "layout": kind})
    compile_split_plan(load_layout(folder), root / kind, "local", prefill_split=SPLIT,
                       decode_split=SPLIT, prompt=16, context=64, options=OPTIONS)
    return root / kind


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generation-plans")
    built = {"optimum": _plan("optimum", root)}
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return built
    built["genai"] = _plan("genai", root)
    return built


def _plan_dir(plans: dict[str, Path], kind: str) -> Path:
    if kind not in plans:
        pytest.skip("needs the genai extra: pip install 'hetpart[genai]'")
    return plans[kind]


@pytest.mark.parametrize(("kind", "batch"), [("optimum", 2), ("genai", 1)])
def test_split_plan_generates_the_unpartitioned_tokens(plans: dict[str, Path], kind: str,
                                                       batch: int) -> None:
    # genai at batch 1: OpenVINO 2026.4 cannot run com.microsoft GroupQueryAttention at
    # batch > 1 (its Reshape fails), whichever plan runs it.
    plan_dir = _plan_dir(plans, kind)
    ids = np.random.default_rng(1).integers(3, 512, (batch, 11))
    with Generator(plan_dir) as generator:
        assert generator.devices("decode") == list(SPLIT)
        result = generator.generate(ids, 20, stop_at_eos=False, keep_logits=True)
    reference = ReferenceSession(generator.layout).generate(ids, 20, stop_at_eos=False,
                                                            keep_logits=True)
    outcome = compare(result, reference, atol=1e-4)
    assert outcome.ok, outcome.detail
    assert result.tokens.shape == (batch, 20) and len(result.step_s) == 19
    assert set(result.decode_partition_s) == {0, 1}


def test_phase_partitions_keep_symbolic_dims(plans: dict[str, Path]) -> None:
    plan = load_generation_plan(plans["optimum"])
    for phase in ("prefill", "decode"):
        for part in plan.phase_plan(phase).partitions:
            model = onnx.load(str(plan.phase_dir(phase) / part.file), load_external_data=False)
            dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                    for i in model.graph.input}
            past = [d for name, d in dims.items() if name.startswith("past_key_values")]
            assert past and all(d[0] == "batch_size" and d[2] == "past_sequence_length"
                                for d in past)


def test_generation_plan_records_layout_and_workload(plans: dict[str, Path]) -> None:
    plan = load_generation_plan(plans["optimum"])
    assert plan.layout.kind == "optimum" and plan.layout.num_layers == 4
    assert plan.workload == {"prompt": 16, "new": 48, "batch": 1, "context": 64}
    assert plan.placement["decode"]["devices"] == sorted(SPLIT)
    assert plan.tokenizer_path is not None and plan.tokenizer_path.is_file()
    assert plan.prefill.model.sha256 == plan.decode.model.sha256


def test_write_generation_plan_from_plans_and_refusals(plans: dict[str, Path],
                                                       tmp_path: Path) -> None:
    layout = load_generation_plan(plans["optimum"]).layout
    prefill = compile_phase(layout, "prefill", "local", tokens=8, split=("ort-cpu",),
                            options=OPTIONS)
    decode = compile_phase(layout, "decode", "local", tokens=32, split=("ort-cpu",),
                           options=OPTIONS)
    out = tmp_path / "single"
    write_generation_plan(out, layout, prefill.plan, decode, workload={"prompt": 8},
                          predicted={"tpot_s": 0.001})
    loaded = load_generation_plan(out)
    assert loaded.predicted == {"tpot_s": 0.001} and loaded.workload == {"prompt": 8}
    with pytest.raises(PlanError, match="already holds a generation plan"):
        write_generation_plan(out, layout, prefill, decode)
    write_generation_plan(out, layout, prefill, decode, overwrite=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(PlanError, match="not a generation plan; refusing"):
        write_generation_plan(other, layout, prefill, decode)
    with pytest.raises(PlanError, match="placement is not JSON-serialisable"):
        write_generation_plan(tmp_path / "bad", layout, prefill, decode, placement={"x": {1, 2}})
    with Generator(out) as generator:
        tokens = generator.generate([[7, 8, 9]], 5, stop_at_eos=False).tokens
    expected = ReferenceSession(layout).generate([[7, 8, 9]], 5, stop_at_eos=False).tokens
    assert tokens.tolist() == expected.tolist()


def test_load_generation_plan_errors(plans: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is not a generation plan: generation.json is missing"):
        load_generation_plan(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(plans["optimum"], copy)
    data = json.loads((copy / GENERATION_FILE).read_text())
    (copy / GENERATION_FILE).write_text(json.dumps({**data, "format_version": "9"}))
    with pytest.raises(PlanError, match="format_version '9' is not supported"):
        load_generation_plan(copy)
    (copy / GENERATION_FILE).write_text(json.dumps(data))
    shutil.rmtree(copy / "decode")
    with pytest.raises(PlanError, match="does not exist"):
        load_generation_plan(copy)


def test_generate_refuses_bad_prompts(plans: dict[str, Path]) -> None:
    with Generator(plans["optimum"]) as generator:
        with pytest.raises(RunError, match="token id 600 is outside the vocabulary 0...511"):
            generator.generate([[5, 600]], 3)
        with pytest.raises(LayoutError, match="2050 tokens exceeds the model's maximum"):
            generator.generate([[5, 6]], 2048)
        with pytest.raises(RunError, match="max_new_tokens must be >= 1"):
            generator.generate([[5, 6]], 0)


def test_generate_cli_checks_a_plan(plans: dict[str, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", str(plans["optimum"]), "--prompt-tokens", "9", "--max-new-tokens", "6",
            "--batch", "2", "--check", "--ignore-eos"]
    assert main([*argv, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["check"]["passed"] and record["check"]["tokens_identical"]
    assert record["devices"]["decode"] == list(SPLIT)
    measured = record["measured"]
    assert measured["batch"] == 2 and measured["new_tokens"] == 6
    assert measured["ttft_s"] > 0 and measured["tpot_p90_s"] >= measured["tpot_p50_s"] > 0
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "check     PASSED: tokens identical" in text and "TPOT p90" in text
    # A prediction for another workload than the run's is labelled as such.
    from partitioner.cli.generate_cmd import _format

    record.update(predicted={"ttft_s": 0.01, "tpot_s": 0.002, "tokens_per_s": 400.0},
                  workload={"batch": 1, "prompt": 16, "new": 48, "context": 64})
    assert "predicted for the plan's workload (batch 1, prompt 16, 48 new tokens)" in _format(
        record)
    record["workload"] = {"batch": 2, "prompt": 9, "new": 6, "context": 64}
    assert "predicted for the plan's workload" not in _format(record)


@pytest.mark.genai
def test_generate_cli_checks_a_genai_plan_against_onnxruntime_genai(
        plans: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    plan_dir = _plan_dir(plans, "genai")
    assert main(["generate", str(plan_dir), "--prompt", "the stand of trea", "--max-new-tokens",
                 "8", "--check", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["check"]["genai_tokens_identical"] is True
    assert record["check"]["tokens_identical"] and len(record["text"]) == 1


def test_generate_cli_runs_a_model_folder(plans: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = load_generation_plan(plans["optimum"]).layout.folder
    assert main(["generate", str(folder), "--prompt-tokens", "5", "--max-new-tokens", "4",
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "model" and len(record["measured"]["tokens"][0]) >= 1


def test_generate_cli_bad_input_is_one_line(plans: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tmp_path), "--prompt-tokens", "4",
                 "--max-new-tokens", "2"]) != 0
    err = capsys.readouterr().err
    assert "neither a generation plan" in err and len(err.splitlines()) == 1
    assert main(["generate", str(plans["optimum"]), "--prompt-tokens", "2000",
                 "--max-new-tokens", "100"]) != 0
    err = capsys.readouterr().err
    assert "2100 tokens exceeds the model's maximum context 2048" in err
    assert len(err.splitlines()) == 1


def test_measure_decode_step_times_each_context(plans: dict[str, Path]) -> None:
    from partitioner.generation.measure import measure_decode_step

    layout = load_generation_plan(plans["optimum"]).layout
    times = measure_decode_step(layout, "onnxruntime", contexts=(32, 512), batch=2,
                                options={"provider": "CPUExecutionProvider"},
                                warmup=1, repeat=2, rounds=3)
    assert [t.context for t in times] == [32, 512]
    for t in times:
        assert 0 < t.low_s <= t.median_s <= t.high_s and t.blocks == 3 and t.batch == 2
    with pytest.raises(LayoutError, match="measured context 4096 tokens exceeds"):
        measure_decode_step(layout, "onnxruntime", contexts=(4096,))


@pytest.mark.genai
def test_genai_batch_on_openvino_says_why(plans: dict[str, Path]) -> None:
    with Generator(_plan_dir(plans, "genai")) as generator:
        with pytest.raises(RunError, match="partition 1 on ov-cpu.*OpenVINO runs "
                           "com.microsoft GroupQueryAttention only at batch 1"):
            generator.generate(np.full((2, 4), 7), 2)


def test_genai_batch_on_openvino_at_compile_says_why(plans: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    _plan_dir(plans, "genai")  # skips without the genai extra
    folder = zoo.build("llama", {"size": "llama-tiny", "layout": "genai"})
    code = main(["compile", str(folder), "--cluster", "local", "--devices", "ort-cpu,ov-cpu",
                 "--workload", "prompt=8,new=4,batch=2,context=32", "--objective", "tpot",
                 "-o", str(tmp_path / "plan")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert "ov-cpu:" in err[-1] and "GroupQueryAttention only at batch 1" in err[-1]
    assert "without ov-cpu (--devices)" in err[-1]


def test_kv_cache_stays_in_ortvalues_with_io_binding(tmp_path: Path) -> None:
    """ONNX Runtime with ``io_binding`` (what GPU providers do by default) returns the
    present.* tensors as OrtValues and binds them in place as the next step's past: the
    tokens match the unpartitioned model and the cache never becomes a NumPy array."""
    import dataclasses

    import onnxruntime as ort

    from partitioner.cluster.local import detect_local_cluster
    from partitioner.generation.generator import empty_past, free_dims, step_feeds
    from partitioner.runtime.executor import Executor

    layout = load_layout(zoo.build("llama", {"size": "llama-tiny", "layout": "optimum"}))
    local = detect_local_cluster().restricted_to(list(SPLIT))
    bound = dataclasses.replace(local.device("ort-cpu"), runner_options={
        **local.device("ort-cpu").runner_options, "io_binding": True})
    cluster = dataclasses.replace(local, devices=tuple(
        bound if d.id == "ort-cpu" else d for d in local.devices))
    compile_split_plan(layout, tmp_path / "plan", cluster, prefill_split=SPLIT,
                       decode_split=SPLIT, prompt=16, context=64, options=OPTIONS)
    ids = np.random.default_rng(3).integers(3, 512, (1, 9))
    with Generator(tmp_path / "plan") as generator:
        assert not generator.kv_on_host
        result = generator.generate(ids, 12, stop_at_eos=False, keep_logits=True)
        plan = generator.plan
    reference = ReferenceSession(layout).generate(ids, 12, stop_at_eos=False,
                                                  keep_logits=True)
    outcome = compare(result, reference, atol=1e-4)
    assert outcome.ok, outcome.detail

    decode = free_dims(plan.phase_plan("decode"))
    on_ort = {o.name for p in decode.partitions if p.device == "ort-cpu"
              for o in p.outputs if o.name in layout.present_names}
    assert on_ort and on_ort != set(layout.present_names)
    with Executor(decode, plan.phase_dir("decode"),
                  device_outputs=layout.present_names) as executor:
        first = executor.run(step_feeds(layout, ids[:, -1:], 0, empty_past(layout, 1))).outputs
        for name in layout.present_names:
            expected = ort.OrtValue if name in on_ort else np.ndarray
            assert isinstance(first[name], expected), name
        past = {p: first[o] for o, p in layout.present_to_past.items()}
        token = np.argmax(np.asarray(first[layout.logits])[:, -1, :], axis=-1)[:, None]
        second = executor.run(step_feeds(layout, token, 1, past)).outputs
        hosted = {p: np.asarray(first[o].numpy() if o in on_ort else first[o])
                  for o, p in layout.present_to_past.items()}
        again = executor.run(step_feeds(layout, token, 1, hosted)).outputs
    np.testing.assert_allclose(np.asarray(second[layout.logits]),
                               np.asarray(again[layout.logits]), rtol=0, atol=1e-6)
