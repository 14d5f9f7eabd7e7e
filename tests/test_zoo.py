"""Zoo torch families: export, onnxruntime numerics vs torch, cache, params, CLI."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models import zoo
from partitioner.cli import main
from partitioner.errors import ModelError

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.zoo

#: Tiny configurations: every family exports in a couple of seconds.
TINY: dict[str, dict[str, int | str]] = {
    "mlp": {"layers": 2, "width": 32, "inputs": 16, "batch": 2},
    "resnet": {"blocks": 3, "channels": 8, "image": 16},
    "inception": {"blocks": 2, "channels": 8, "image": 16},
    "gpt": {"layers": 2, "d_model": 32, "heads": 2, "seq_len": 8, "vocab": 50},
    "bert": {"layers": 2, "d_model": 32, "heads": 2, "seq_len": 8, "vocab": 50},
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """A private zoo cache for this module (HETPART_CACHE points at it)."""
    root = tmp_path_factory.mktemp("zoo-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(zoo.CACHE_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def built(cache: Path) -> dict[str, Path]:
    """Every torch family built once with its tiny params."""
    return {name: zoo.build(name, params) for name, params in TINY.items()}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


#: transformers families, built only where the library is installed.
TINY_HF: dict[str, dict[str, int | str]] = {
    "hf-gpt2": {"layers": 1, "d_model": 32, "heads": 2, "seq_len": 8, "vocab": 50},
    "hf-bert": {"layers": 1, "d_model": 32, "heads": 2, "seq_len": 8, "vocab": 50},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_family_matches_torch_in_onnxruntime(name: str, built: dict[str, Path]) -> None:
    _assert_matches_torch(name, TINY[name], built[name])


@pytest.mark.slow  # importing transformers plus two exports: 20-50 s on 2 busy cores
@pytest.mark.parametrize("name", sorted(TINY_HF))
def test_hf_family_matches_torch_in_onnxruntime(name: str, cache: Path) -> None:
    pytest.importorskip("transformers")
    _assert_matches_torch(name, TINY_HF[name], zoo.build(name, TINY_HF[name]))


def _assert_matches_torch(name: str, given: dict[str, int | str], path: Path) -> None:
    """Rebuild the torch module of ``name`` and compare it with onnxruntime on ``path``."""
    entry = zoo.get_entry(name)
    params = zoo.resolve_params(entry, given)
    family = importlib.import_module(entry.builder)
    module, args = family.make_module(params), family.example_inputs(params)
    with torch.no_grad():
        expected = module(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)

    session = _session(path)
    assert [i.name for i in session.get_inputs()] == list(family.INPUT_NAMES)
    feeds = {n: a.numpy() for n, a in zip(family.INPUT_NAMES, args, strict=True)}
    got = session.run(list(family.OUTPUT_NAMES), feeds)
    assert len(got) == len(expected)
    for actual, ref in zip(got, expected, strict=True):
        assert actual.shape == tuple(ref.shape)
        np.testing.assert_allclose(actual, ref.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", sorted(TINY))
def test_export_is_static_ir10_opset18_with_metadata(name: str, built: dict[str, Path]) -> None:
    model = onnx.load(str(built[name]))
    assert model.ir_version <= 10
    assert {o.domain: o.version for o in model.opset_import}.get("", 0) == 18
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), value.name
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["hetpart.zoo.name"] == name
    assert '"seed": 0' in meta["hetpart.zoo.params"]


@pytest.mark.openvino
@pytest.mark.parametrize("name", ["resnet", "inception", "gpt", "bert"])
def test_openvino_f32_runs_the_export_like_onnxruntime(name: str, built: dict[str, Path]) -> None:
    """OpenVINO compiled for f32 explicitly: its default is bf16 on CPUs with avx512_bf16 or
    AMX, where outputs differ from ONNX Runtime's f32 by far more than this tolerance."""
    ov = pytest.importorskip("openvino")
    family = importlib.import_module(zoo.get_entry(name).builder)
    params = zoo.resolve_params(zoo.get_entry(name), TINY[name])
    feeds = {
        n: a.numpy() for n, a in zip(family.INPUT_NAMES, family.example_inputs(params), strict=True)
    }
    expected = _session(built[name]).run(list(family.OUTPUT_NAMES), feeds)
    compiled = ov.Core().compile_model(str(built[name]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled.create_infer_request().infer(feeds)
    for output_name, ref in zip(family.OUTPUT_NAMES, expected, strict=True):
        np.testing.assert_allclose(result[output_name], ref, rtol=1e-3, atol=1e-4)


def test_batch_param_sets_input_shape(built: dict[str, Path]) -> None:
    model = onnx.load(str(built["mlp"]))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 16]


def test_inception_blocks_have_four_parallel_branches(built: dict[str, Path]) -> None:
    model = onnx.load(str(built["inception"]))
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    assert len(concats) == TINY["inception"]["blocks"]
    assert all(len(n.input) == 4 for n in concats)


def test_gpt_attention_is_causal(built: dict[str, Path]) -> None:
    session = _session(built["gpt"])
    ids = np.arange(8, dtype=np.int64).reshape(1, 8)
    changed = ids.copy()
    changed[0, -1] = 49  # only the last token differs
    a, b = (session.run(None, {"input_ids": x})[0] for x in (ids, changed))
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], atol=1e-6)
    assert not np.allclose(a[:, -1], b[:, -1])


def test_cache_hit_needs_no_torch(
    built: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    mtime = built["gpt"].stat().st_mtime_ns
    monkeypatch.setitem(sys.modules, "torch", None)  # as if the zoo extra were missing
    monkeypatch.delitem(sys.modules, "models.gpt", raising=False)
    again = zoo.build("gpt", {k: str(v) for k, v in TINY["gpt"].items()})
    assert again == built["gpt"]
    assert again.stat().st_mtime_ns == mtime


def test_missing_torch_names_the_extra(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "models.mlp", raising=False)
    with pytest.raises(ModelError, match=r"'mlp'.*torch.*pip install 'hetpart\[zoo\]'"):
        zoo.build("mlp", {"layers": 1, "width": 7})


def test_cache_key_depends_on_params_not_spelling() -> None:
    entry = zoo.get_entry("mlp")
    a = zoo.cache_key("mlp", zoo.resolve_params(entry, {"layers": "3"}))
    b = zoo.cache_key("mlp", zoo.resolve_params(entry, {"layers": 3}))
    c = zoo.cache_key("mlp", zoo.resolve_params(entry, {"layers": 4}))
    assert a == b != c


def test_out_copy_refuses_overwrite(built: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sub" / "mlp.onnx"
    assert zoo.build("mlp", TINY["mlp"], out=out) == out
    assert out.read_bytes() == built["mlp"].read_bytes()
    with pytest.raises(ModelError, match=r"mlp\.onnx already exists.*--force"):
        zoo.build("mlp", TINY["mlp"], out=out)
    out.write_bytes(b"stale")
    zoo.build("mlp", TINY["mlp"], out=out, overwrite=True)
    assert out.read_bytes() == built["mlp"].read_bytes()


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nope", {}, r"unknown zoo model 'nope' \(valid: mlp, resnet, .*synthetic\)"),
        ("mlp", {"depth": 3, "widht": 1}, r"'mlp': unknown params 'depth', 'widht' \(valid: lay"),
        ("mlp", {"layers": "x"}, r"'mlp': param 'layers' must be an integer, got 'x'"),
        ("mlp", {"layers": 1.5}, r"param 'layers' must be an integer"),
        ("resnet", {"channels": 0}, r"'resnet': param 'channels' must be >= 1, got 0"),
        ("gpt", {"heads": 3}, r"'gpt': d_model=128 must be divisible by heads=3"),
        ("synthetic", {"shape": "tree"}, r"'shape' must be one of chain, layered, random"),
    ],
)
def test_bad_names_and_params_raise_model_error(name: str, params: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        zoo.build(name, params)


def test_list_models_has_every_family_with_defaults() -> None:
    entries = {e.name: e for e in zoo.list_models()}
    assert set(entries) >= {"mlp", "resnet", "inception", "gpt", "bert", "gpt-large", "synthetic"}
    assert entries["gpt"].defaults["heads"] == 4
    assert entries["synthetic"].defaults["shape"] == "chain"
    assert all(e.description for e in entries.values())


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mlp", "inception", "gpt-large", "synthetic"):
        assert f"\n{name} " in out
    assert "n_nodes=1000" in out


def test_cli_list_one_model_explains_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "shape" in out and "one of chain, layered, random" in out
    assert "n_nodes" in out and "integer >= 2" in out
    assert main(["zoo", "list", "nope"]) == 2
    assert "unknown zoo model 'nope'" in capsys.readouterr().err


def test_cli_build_prints_path(
    built: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpt.onnx"
    argv = ["zoo", "build", "gpt", "-o", str(out)]
    for key, value in TINY["gpt"].items():
        argv += ["--param", f"{key}={value}"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes() == built["gpt"].read_bytes()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["zoo", "build", "vgg"], "unknown zoo model 'vgg'"),
        (["zoo", "build", "mlp", "--param", "layers"], "--param 'layers': expected KEY=VALUE"),
        (["zoo", "build", "mlp", "--param", "colour=red"], "unknown param 'colour'"),
        (["zoo", "build", "mlp", "--param", "layers=1", "--param", "layers=2"], "given twice"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
