"""Zoo ``llama``: both KV-cache folder layouts export, match transformers, and generate
non-degenerate greedy text; ``hetpart zoo build llama``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from partitioner.cli import main

torch = pytest.importorskip("torch", reason="zoo models need torch: pip install 'hetpart[zoo]'")
pytest.importorskip("transformers", reason="llama needs transformers: pip install 'hetpart[zoo]'")

from models import zoo  # noqa: E402
from models.llama import make_model, make_tokenizer  # noqa: E402
from partitioner.generation.layout import load_layout  # noqa: E402
from partitioner.generation.reference import (  # noqa: E402
    ReferenceSession,
    genai_available,
    genai_generate,
)
from partitioner.generation.spec import named_spec  # noqa: E402

pytestmark = pytest.mark.zoo
SPEC = named_spec("llama-tiny")
PROMPT = np.random.default_rng(0).integers(3, SPEC.vocab_size, (1, 12))


@pytest.fixture(scope="module")
def optimum_dir() -> Path:
    return zoo.build("llama", {"size": "llama-tiny", "layout": "optimum"})


@pytest.fixture(scope="module")
def genai_dir() -> Path:
    if not genai_available():
        pytest.skip("needs the genai extra: pip install 'hetpart[genai]'")
    return zoo.build("llama", {"size": "llama-tiny", "layout": "genai"})


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_optimum_folder_has_the_with_past_layout(optimum_dir: Path) -> None:
    assert {p.name for p in optimum_dir.iterdir()} >= {
        "model.onnx", "config.json", "generation_config.json", "tokenizer.json"}
    model = onnx.load(str(optimum_dir / "model.onnx"), load_external_data=False)
    inputs = {i.name: _dims(i) for i in model.graph.input}
    outputs = {o.name: _dims(o) for o in model.graph.output}
    layers = SPEC.num_layers
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert set(inputs) == {"input_ids", "attention_mask", "position_ids"} | {
        f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")}
    assert set(outputs) == {"logits"} | {
        f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")}
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]
    assert inputs["past_key_values.0.key"] == ["batch_size", SPEC.num_kv_heads,
                                               "past_sequence_length", SPEC.head_size]
    assert outputs["present.0.value"][2] == "total_sequence_length"
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}  # standard ops only


def test_optimum_export_generates_what_transformers_generates(optimum_dir: Path) -> None:
    model = make_model(SPEC, seed=0)
    with torch.no_grad():
        expected = model.generate(torch.from_numpy(PROMPT), max_new_tokens=16, do_sample=False,
                                  eos_token_id=None, pad_token_id=0)[0, PROMPT.shape[1]:]
    result = ReferenceSession(load_layout(optimum_dir)).generate(PROMPT, 16, stop_at_eos=False)
    assert result.tokens[0].tolist() == expected.tolist()


def test_greedy_output_is_not_degenerate(optimum_dir: Path) -> None:
    tokens = ReferenceSession(load_layout(optimum_dir)).generate(
        PROMPT, 32, stop_at_eos=False).tokens[0]
    assert len(set(tokens.tolist())) > len(tokens) // 2, tokens.tolist()
    # transformers' default init (0.02) would collapse into one repeated token
    assert max(np.bincount(tokens)) < len(tokens) // 4


@pytest.mark.genai
def test_genai_folder_is_onnxruntime_genai_builders(genai_dir: Path) -> None:
    assert (genai_dir / "genai_config.json").is_file()
    model = onnx.load(str(genai_dir / "model.onnx"))
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert ("com.microsoft", "GroupQueryAttention") in ops
    assert ("com.microsoft", "SkipSimplifiedLayerNormalization") in ops
    names = {i.name for i in model.graph.input}
    assert {"past_key_values.0.key", "past_key_values.3.value"} <= names


@pytest.mark.genai
def test_both_layouts_and_onnxruntime_genai_generate_the_same_tokens(
        optimum_dir: Path, genai_dir: Path) -> None:
    optimum = ReferenceSession(load_layout(optimum_dir)).generate(PROMPT, 20, stop_at_eos=False)
    genai = ReferenceSession(load_layout(genai_dir)).generate(PROMPT, 20, stop_at_eos=False)
    assert genai.tokens.tolist() == optimum.tokens.tolist()
    reference = genai_generate(genai_dir, PROMPT, 20)
    n = reference.shape[1]  # onnxruntime-genai stops at EOS
    assert reference.tolist() == genai.tokens[:, :n].tolist()


def test_tokenizer_has_the_model_vocabulary() -> None:
    tokenizer = make_tokenizer(SPEC.vocab_size)
    assert tokenizer.get_vocab_size() == SPEC.vocab_size
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<s>", "</s>")] == [0, 1, 2]
    text = "the stand of trea ran."
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_zoo_cli_builds_a_llama_folder(tmp_path: Path, optimum_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "llama"
    assert main(["zoo", "build", "llama", "--size", "llama-tiny", "--layout", "optimum",
                 "-o", str(out)]) == 0
    assert (out / "model.onnx").read_bytes() == (optimum_dir / "model.onnx").read_bytes()
    assert main(["zoo", "build", "llama", "-o", str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["zoo", "build", "llama", "-o", str(out), "--force"]) == 0
    assert main(["zoo", "build", "llama", "--layout", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "param 'layout' must be one of optimum, genai" in err and len(err.splitlines()) == 1


def test_sizes_are_configurable(optimum_dir: Path) -> None:
    from models.llama import spec_of
    from partitioner.errors import ModelError

    params = zoo.resolve_params(zoo.get_entry("llama"), {"layers": "2", "kv_heads": "4",
                                                         "context": "256"})
    spec = spec_of(params)
    assert (spec.num_layers, spec.num_kv_heads, spec.max_context, spec.hidden_size) == (
        2, 4, 256, SPEC.hidden_size)
    assert spec_of(zoo.resolve_params(zoo.get_entry("llama"), {"hidden": "64"})).head_size == 16
    with pytest.raises(ModelError, match="num_heads 4 is not a multiple of num_kv_heads 3"):
        spec_of(zoo.resolve_params(zoo.get_entry("llama"), {"kv_heads": "3"}))
