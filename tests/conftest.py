"""Shared pytest options (``--update-goldens`` rewrites golden files instead of comparing) and
fixtures."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

GOLDEN_DIR = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _cache_whatever_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures timed while other processes hold the CPU are not cached (the product's
    policy); in the suite that would make every caching test depend on what else runs on
    the machine. The tests of the policy itself set the threshold back."""
    import partitioner.profiling.timing as timing

    monkeypatch.setattr(timing, "CACHE_OTHERS_SHARE", 1.0)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current output instead of comparing",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """``golden(name, text)``: compare ``text`` with ``tests/golden/<name>`` (or rewrite it)."""
    update = request.config.getoption("--update-goldens")

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"golden file {path} is missing; run pytest --update-goldens")
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"output differs from {path}; run pytest --update-goldens"

    return check


@pytest.fixture(scope="session")
def tiny_relu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-Relu ONNX model (x, y: float [1, 8]) for command-line tests."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path_factory.mktemp("cli") / "tiny.onnx"
    onnx.save(model, path)
    return path
