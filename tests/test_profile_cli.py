"""CLI: ``hetpart devices`` and ``hetpart profile`` output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.cli import main


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path_factory.getbasetemp() / "hetpart-cache"  # shared: measure local once
    monkeypatch.setenv("HETPART_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
         helper.make_node("Tanh", ["m"], ["y"], name="tanh")],
        "cli", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path_factory.mktemp("cli") / "cli.onnx"
    onnx.save(model, path)
    return path


def test_devices_preset_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--cluster", "cpu+h100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in data["devices"]] == ["h100", "cpu"]
    assert data["devices"][0]["memory_bandwidth"] == 3.35e12


def test_devices_local_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cluster local" in out and "ort-cpu" in out and "onnxruntime" in out


def test_devices_list_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--list-presets"]) == 0
    assert "cpu+l4" in capsys.readouterr().out.split()


def test_devices_bad_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[device]]\nid = 'x'\nclass = 'cpu'\n")
    assert main(["devices", "--cluster", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device 'x': missing required key 'runner'" in err


def test_profile_measures_then_reuses(model_path: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "p.sqlite"
    argv = ["profile", str(model_path), "--cluster", "local", "--repeats", "2",
            "--cache", str(cache), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    devices = len(first["devices"])
    assert first["measured"] == 2 * devices and first["reused"] == 0
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["measured"] == 0 and second["reused"] == 2 * devices


def test_profile_text_output(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(model_path), "--repeats", "2", "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert "2 distinct signatures" in out and "reused" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "missing.onnx"], "missing.onnx"),
        (["profile", "MODEL", "--cluster", "cpu+l4"], "no device is on this machine"),
        (["profile", "MODEL", "--repeats", "0"], "--repeats: '0'"),
    ],
)
def test_profile_bad_input_exit_2(model_path: Path, argv: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(model_path) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_profile_with_a_local_device_from_a_cluster_file(model_path: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    cluster = tmp_path / "mine.toml"
    cluster.write_text(
        "[[device]]\nid = 'one-thread'\nclass = 'cpu'\nrunner = 'onnxruntime'\n"
        "options = { threads = 1 }\nmemory = '1GiB'\npeak_flops = { float32 = 1e10 }\n"
        "memory_bandwidth = '5GB/s'\nlocal = true\n"
    )
    argv = ["profile", str(model_path), "--cluster", str(cluster), "--repeats", "2",
            "--cache", str(tmp_path / "p.sqlite"), "--json", "--no-calibrate"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["devices"] == ["one-thread"] and summary["measured"] == 2
