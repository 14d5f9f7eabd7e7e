"""Zoo models built without torch: synthetic graphs (1k-100k nodes), gpt-large external data."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models import gpt_large, zoo
from models.synthetic import synthetic
from partitioner.cli import main
from partitioner.errors import ModelError

#: A scaled-down gpt-large: same builder and external-data path, kilobytes instead of GiB.
SMALL_GPT = {"layers": 2, "d_model": 32, "heads": 4, "seq_len": 8, "vocab": 50}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(zoo.CACHE_ENV, str(root))
    return root


def _depth_widths(model: onnx.ModelProto) -> Counter[int]:
    """How many nodes sit at each longest-path depth from the graph input."""
    depth: dict[str, int] = {"x": 0}
    widths: Counter[int] = Counter()
    for node in model.graph.node:
        level = 1 + max(depth.get(name, 0) for name in node.input)
        depth[node.output[0]] = level
        widths[level] += 1
    return widths


def _run(model: onnx.ModelProto) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 32), dtype=np.float32)
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("shape", ["chain", "layered", "random"])
def test_synthetic_1k_is_valid_and_runs(shape: str) -> None:
    model = synthetic(1000, shape, seed=3)
    assert len(model.graph.node) == 1000
    assert model.ir_version <= 10
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["y"]
    produced = {"x"} | {i.name for i in model.graph.initializer}
    for node in model.graph.node:  # topological order, every input defined earlier
        assert set(node.input) <= produced, node.name
        produced.update(node.output)
    y = _run(model)
    assert y.shape == (1, 32) and np.isfinite(y).all()
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MatMul"] > 100 and len(ops) >= 5


def test_synthetic_shapes_differ_in_parallelism() -> None:
    chain = _depth_widths(synthetic(1000, "chain"))
    layered = _depth_widths(synthetic(1000, "layered", branches=8))
    assert max(chain.values()) == 1 and len(chain) == 1000
    assert max(layered.values()) == 8
    random = synthetic(1000, "random", seed=1)
    assert max(_depth_widths(random).values()) > 1
    activations = {n.output[0] for n in random.graph.node} | {"x"}
    for node in random.graph.node[:-1]:
        assert 1 <= sum(name in activations for name in node.input) <= 2
    consumed = {name for n in random.graph.node for name in n.input}
    sinks = [n for n in random.graph.node if n.output[0] not in consumed]
    assert [n.op_type for n in sinks] == ["Sum"]


def test_synthetic_is_deterministic_per_seed() -> None:
    a, b = synthetic(500, "random", seed=7), synthetic(500, "random", seed=7)
    assert a.SerializeToString() == b.SerializeToString()
    assert synthetic(500, "random", seed=8).SerializeToString() != a.SerializeToString()


def test_synthetic_100k_builds() -> None:
    model = synthetic(100_000, "random", seed=0)
    assert len(model.graph.node) == 100_000
    assert len({n.name for n in model.graph.node}) == 100_000


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ModelError, match="unknown shape 'tree'"):
        synthetic(10, "tree")
    with pytest.raises(ModelError, match="n_nodes must be >= 2, got 1"):
        synthetic(1)


def test_zoo_synthetic_entry_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.onnx"
    argv = ["zoo", "build", "synthetic", "--param", "n_nodes=300", "--param", "shape=layered"]
    assert main([*argv, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = onnx.load(str(out))
    assert len(model.graph.node) == 300
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["hetpart.zoo.name"] == "synthetic"
    assert '"shape": "layered"' in meta["hetpart.zoo.params"]


def test_cli_clean_empties_the_cache(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zoo.build("synthetic", {"n_nodes": 50})
    zoo.build("gpt-large", SMALL_GPT)
    (cache / ".gpt-large-abandoned").mkdir()
    assert len(list(cache.iterdir())) == 4
    assert main(["zoo", "clean"]) == 0
    assert capsys.readouterr().out.startswith("removed 3 files (")
    assert list(cache.iterdir()) == []
    assert main(["zoo", "clean"]) == 0
    assert "removed 0 files" in capsys.readouterr().out


def test_gpt_large_defaults_exceed_2_gib() -> None:
    defaults = zoo.get_entry("gpt-large").defaults
    assert gpt_large.parameter_count(defaults) * 4 > 2 * 2**30


def test_gpt_large_small_variant_uses_external_data(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "models" / "gl.onnx"
    assert zoo.build("gpt-large", SMALL_GPT, out=out) == out
    data = out.with_suffix(".data")
    assert data.exists()
    skeleton = onnx.load(str(out), load_external_data=False)
    entries = [e for t in skeleton.graph.initializer for e in t.external_data]
    locations = {e.value for e in entries if e.key == "location"}
    assert locations == {"gl.data"}  # rewritten from the cache file's name
    lengths = sum(int(e.value) for e in entries if e.key == "length")
    assert lengths == 4 * gpt_large.parameter_count(SMALL_GPT)
    onnx.checker.check_model(str(out))
    with pytest.raises(ModelError, match=r"gl\.onnx, .*gl\.data already exists"):
        zoo.build("gpt-large", SMALL_GPT, out=out)
    cached = list(cache.glob("gpt-large-*"))
    assert sorted(p.suffix for p in cached) == [".data", ".onnx"]


def test_gpt_large_matches_the_torch_gpt(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from models import gpt

    path = zoo.build("gpt-large", {**SMALL_GPT, "seed": 5})
    params = zoo.resolve_params(zoo.get_entry("gpt"), SMALL_GPT)
    module = gpt.make_module(params)
    state = gpt_large.torch_state_dict(onnx.load(str(path)))
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    (ids,) = gpt.example_inputs(params)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": ids.numpy()})[0]
    with torch.no_grad():
        expected = module(ids).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("HETPART_TEST_GPT_LARGE"),
    reason="writes 2.5 GiB; set HETPART_TEST_GPT_LARGE=1 to run",
)
def test_gpt_large_default_build_is_over_2_gib(cache: Path) -> None:
    path = zoo.build("gpt-large")
    try:
        assert path.with_suffix(".data").stat().st_size > 2 * 2**30
        onnx.checker.check_model(str(path))
    finally:
        path.with_suffix(".data").unlink()
