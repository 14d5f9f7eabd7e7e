"""DecoderLayout: both folder layouts read from their files and checked against the graph;
one-line errors for a decoder without KV cache, configs that disagree with the graph and
contexts beyond the maximum; ``hetpart inspect`` on a decoder folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from partitioner.cli import main
from partitioner.errors import PartitionerError
from partitioner.generation.layout import LayoutError, load_layout
from partitioner.generation.phase_plans import phase_input_shapes
from partitioner.generation.spec import named_spec

pytest.importorskip("torch", reason="the llama zoo model needs torch: pip install 'hetpart[zoo]'")
pytest.importorskip("transformers", reason="llama needs transformers")

from models import zoo  # noqa: E402

pytestmark = pytest.mark.zoo
SPEC = named_spec("llama-tiny")


@pytest.fixture(scope="module")
def optimum_dir() -> Path:
    return zoo.build("llama", {"size": "llama-tiny", "layout": "optimum"})


@pytest.fixture(scope="module")
def genai_dir() -> Path:
    pytest.importorskip("onnxruntime_genai", reason="needs the genai extra")
    return zoo.build("llama", {"size": "llama-tiny", "layout": "genai"})


def _copy(folder: Path, tmp_path: Path) -> Path:
    """A copy of a decoder folder whose model file is a link to the original."""
    out = tmp_path / folder.name
    out.mkdir()
    for item in folder.iterdir():
        if item.name == "model.onnx":
            (out / item.name).symlink_to(item)
        else:
            shutil.copyfile(item, out / item.name)
    return out


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    target = data["model"]["decoder"] if "model" in data else data
    for key, value in changes.items():
        if key in ("context_length",):
            data["model"][key] = value
        else:
            target[key] = value
    path.write_text(json.dumps(data))


def _check_spec(layout) -> None:
    for key in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_size",
                "intermediate_size", "vocab_size", "max_context"):
        assert getattr(layout.spec, key) == getattr(SPEC, key), key


def test_optimum_layout(optimum_dir: Path) -> None:
    layout = load_layout(optimum_dir)
    assert layout.kind == "optimum"
    _check_spec(layout)
    assert (layout.input_ids, layout.attention_mask, layout.position_ids, layout.logits) == (
        "input_ids", "attention_mask", "position_ids", "logits")
    assert layout.past_keys == tuple(f"past_key_values.{i}.key" for i in range(4))
    assert layout.present_to_past["present.3.value"] == "past_key_values.3.value"
    assert layout.kv_dtype == "float32" and layout.kv_shape(2, 7) == (2, 2, 7, 32)
    assert (layout.context_length, layout.eos_token_ids, layout.pad_token_id) == (2048, (2,), 0)
    assert layout.tokenizer_path == (optimum_dir / "tokenizer.json").absolute()
    assert load_layout(optimum_dir / "model.onnx") == layout  # the model file inside works too


def test_weight_width_is_read_from_the_graph(optimum_dir: Path, tmp_path: Path) -> None:
    """Stored fp16 weights are priced at 2 bytes per parameter (the config does not say)."""
    import onnx
    from onnx import numpy_helper

    assert load_layout(optimum_dir).spec.weight_bytes_per_param == 4.0
    folder = _copy(optimum_dir, tmp_path)
    model = onnx.load(str(folder / "model.onnx"))
    for i, t in enumerate(model.graph.initializer):
        if t.data_type == onnx.TensorProto.FLOAT:
            half = numpy_helper.to_array(t).astype("float16")
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(half, t.name))
    (folder / "model.onnx").unlink()  # a link to the shared original: never write through it
    onnx.save(model, str(folder / "model.onnx"))
    assert load_layout(folder).spec.weight_bytes_per_param == 2.0


@pytest.mark.genai
def test_genai_layout(genai_dir: Path) -> None:
    layout = load_layout(genai_dir)
    assert layout.kind == "genai"
    _check_spec(layout)
    assert layout.position_ids is None  # GroupQueryAttention derives positions from the mask
    assert layout.past_values[1] == "past_key_values.1.value"
    assert layout.present_keys[0] == "present.0.key"
    assert layout.eos_token_ids == (2,) and layout.context_length == 2048


def test_summary_round_trips(optimum_dir: Path) -> None:
    layout = load_layout(optimum_dir)
    from partitioner.generation.layout import DecoderLayout

    again = DecoderLayout.from_summary(json.loads(json.dumps(layout.summary())))
    assert again == layout


def test_decoder_without_kv_cache_says_what_is_missing(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["logits"], to=TensorProto.FLOAT)], "no_kv",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s"])])
    folder = tmp_path / "plain"
    folder.mkdir()
    onnx.save(helper.make_model(graph), str(folder / "model.onnx"))
    (folder / "config.json").write_text(json.dumps({
        "num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2,
        "intermediate_size": 16, "vocab_size": 10, "max_position_embeddings": 32}))
    with pytest.raises(LayoutError) as info:
        load_layout(folder)
    message = str(info.value)
    assert "without KV-cache inputs" in message and "past_key_values.0.key" in message
    assert "single pass" in message and "\n" not in message


@pytest.mark.genai
def test_genai_config_layers_disagree_with_graph(genai_dir: Path, tmp_path: Path) -> None:
    folder = _copy(genai_dir, tmp_path)
    _edit(folder / "genai_config.json", num_hidden_layers=5)
    with pytest.raises(LayoutError, match=r"model\.decoder\.num_hidden_layers is 5 but "
                       r"model\.onnx has 4 layers of KV-cache inputs"):
        load_layout(folder)


@pytest.mark.genai
def test_genai_config_kv_heads_disagree_with_graph(genai_dir: Path, tmp_path: Path) -> None:
    folder = _copy(genai_dir, tmp_path)
    _edit(folder / "genai_config.json", num_key_value_heads=4)
    with pytest.raises(LayoutError, match=r"model\.decoder\.num_key_value_heads is 4 but "
                       r"model\.onnx's past_key_values\.0\.key has 2 on axis 1"):
        load_layout(folder)


@pytest.mark.genai
def test_genai_config_missing_key(genai_dir: Path, tmp_path: Path) -> None:
    folder = _copy(genai_dir, tmp_path)
    data = json.loads((folder / "genai_config.json").read_text())
    del data["model"]["decoder"]["hidden_size"]
    (folder / "genai_config.json").write_text(json.dumps(data))
    with pytest.raises(LayoutError, match=r"missing key 'model\.decoder\.hidden_size'"):
        load_layout(folder)


def test_config_head_size_disagrees_with_graph(optimum_dir: Path, tmp_path: Path) -> None:
    folder = _copy(optimum_dir, tmp_path)
    _edit(folder / "config.json", head_dim=16)
    with pytest.raises(LayoutError, match=r"head_size is 16 but model\.onnx's "
                       r"past_key_values\.0\.key has 32 on axis 3 \(head_size\)"):
        load_layout(folder)


@pytest.mark.parametrize(("changes", "message"), [
    ({"vocab_size": 1000}, r"vocab_size is 1000 but model\.onnx's logits has 512 columns"),
    ({"eos_token_id": 99999}, r"eos_token_id 99999 is outside the vocabulary"),
    ({"hidden_size": 256, "head_dim": 32}, r"hidden_size is 256 but no weight of model\.onnx"),
    ({"num_attention_heads": 8, "head_dim": 32},
     r"num_attention_heads 8 x head_size 32 = 256, but no weight of model\.onnx projects"),
])
def test_config_sizes_disagree_with_graph(optimum_dir: Path, tmp_path: Path,
                                          changes: dict[str, int], message: str) -> None:
    folder = _copy(optimum_dir, tmp_path)
    _edit(folder / "config.json", **changes)
    _edit(folder / "generation_config.json", **{k: v for k, v in changes.items()
                                                 if k == "eos_token_id"})
    with pytest.raises(LayoutError, match=message):
        load_layout(folder)


@pytest.mark.genai
@pytest.mark.parametrize(("section", "changes", "message"), [
    ("decoder", {"num_attention_heads": 8},
     r"model\.decoder\.num_attention_heads is 8 but model\.onnx's GroupQueryAttention"),
    ("model", {"context_length": 100000},
     r"context length 100000 is beyond the 2048 positions of model\.onnx's rotary table"),
])
def test_genai_config_sizes_disagree_with_graph(genai_dir: Path, tmp_path: Path, section: str,
                                                changes: dict[str, int], message: str) -> None:
    folder = _copy(genai_dir, tmp_path)
    path = folder / "genai_config.json"
    data = json.loads(path.read_text())
    (data["model"]["decoder"] if section == "decoder" else data["model"]).update(changes)
    path.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match=message):
        load_layout(folder)


def test_context_beyond_the_maximum(optimum_dir: Path) -> None:
    layout = load_layout(optimum_dir)
    layout.check_context(2048)
    with pytest.raises(LayoutError, match=r"4096 tokens exceeds the model's maximum context "
                       r"2048 \(.*config\.json\)"):
        layout.check_context(4096)
    with pytest.raises(LayoutError, match="decode context 2049 tokens exceeds"):
        phase_input_shapes(layout, "decode", 1, 2048)
    from partitioner.generation.reference import ReferenceSession

    with pytest.raises(LayoutError, match="prompt \\+ new tokens: 2058 tokens exceeds"):
        ReferenceSession(layout).generate(np.full((1, 10), 5), 2048)


def test_not_a_decoder_folder(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="is not a decoder folder"):
        load_layout(tmp_path)
    with pytest.raises(LayoutError, match="does not exist"):
        load_layout(tmp_path / "nowhere")


def test_inspect_shows_the_layout(optimum_dir: Path, capsys: pytest.CaptureFixture[str]
                                  ) -> None:
    assert main(["inspect", str(optimum_dir)]) == 0
    out = capsys.readouterr().out
    assert "decoder     optimum layout" in out
    assert "KV cache  float32 [batch, kv_heads, seq, head_size] = [B, 2, S, 32]; 2.00 KiB " \
           "per token (4 layers x 512 B)" in out
    assert "graph       analysed at one decode step" in out
    assert main(["inspect", str(optimum_dir / "model.onnx"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["decoder"]["kind"] == "optimum" and data["decoder"]["context_length"] == 2048


def test_inspect_reports_a_bad_folder_in_one_line(optimum_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(optimum_dir, tmp_path)
    _edit(folder / "config.json", num_hidden_layers=3)
    assert main(["inspect", str(folder)]) != 0
    err = capsys.readouterr().err
    assert "num_hidden_layers is 3 but model.onnx has 4" in err and len(err.splitlines()) == 1
    assert isinstance(LayoutError("x"), PartitionerError)
