"""Cluster TOML files: every validation error, unit strings, presets and their sources."""
# ruff: noqa: E501  (the parametrised error table reads best one case per line)

from __future__ import annotations

from pathlib import Path

import pytest

from partitioner.cluster.file import (
    PRESET_DIR,
    check_runners_installed,
    cluster_from_toml,
    list_presets,
    load_cluster,
    parse_quantity,
)
from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.errors import ClusterError, RunnerNotAvailableError

GOOD = """
[cluster]
name = "mine"
host_copy_bandwidth = "12GB/s"
fallback_device = "cpu"

[[device]]
id = "gpu0"
class = "gpu"
runner = "onnxruntime"
options = { provider = "CUDAExecutionProvider" }
memory = "16GiB"
peak_flops = { float32 = "20TFLOP/s", float16 = 8e13 }
memory_bandwidth = "900GB/s"
call_overhead_us = 25
price_per_hour = 1.5
power_w = 250
processor = "gpu0"

[[device]]
id = "cpu"
class = "cpu"
runner = "onnxruntime"
options = { threads = 2, affinity = [0, 1] }
memory = 34359738368
peak_flops = { float32 = 1e12 }
memory_bandwidth = 5e10
unsupported_ops = ["Loop"]

[[link]]
src = "cpu"
dst = "gpu0"
bandwidth = "32GB/s"
latency_us = 8
bidirectional = true
"""


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_parses_every_field(tmp_path: Path) -> None:
    c = cluster_from_toml(write(tmp_path, GOOD))
    assert c.name == "mine" and c.device_ids == ("gpu0", "cpu")
    assert c.host_copy_bandwidth == 12e9 and c.fallback_device == "cpu"
    gpu = c.device("gpu0")
    assert gpu.memory_bytes == 16 * 2**30
    assert gpu.peak_flops == {"float32": 20e12, "float16": 8e13}
    assert gpu.memory_bandwidth == 900e9
    assert gpu.call_overhead_s == pytest.approx(25e-6)
    assert (gpu.price_per_hour, gpu.power_w, gpu.processor) == (1.5, 250.0, "gpu0")
    assert gpu.runner_options == {"provider": "CUDAExecutionProvider"}
    cpu = c.device("cpu")
    assert cpu.runner_options == {"threads": 2, "affinity": "0,1"}
    assert cpu.unsupported_ops == ("Loop",) and not cpu.local
    assert c.transfer_time("cpu", "gpu0", 32_000) == pytest.approx(8e-6 + 1e-6)
    assert c.transfer_time("gpu0", "cpu", 32_000) == pytest.approx(8e-6 + 1e-6)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('power_w = 250', 'power_w = 250\nmemroy = 1', r"device 'gpu0'.*unknown key.*'memroy'.*did you mean 'memory'"),
        ('memory = "16GiB"', 'memory = "-16GiB"', r"device 'gpu0' key 'memory'.*cannot parse"),
        ('memory = "16GiB"', "memory = 0", r"device 'gpu0' key 'memory'.*must be positive"),
        ('memory_bandwidth = 5e10', 'memory_bandwidth = -1.0', r"device 'cpu' key 'memory_bandwidth'.*positive"),
        ('float16 = 8e13', 'float16 = 0', r"device 'gpu0' key 'peak_flops.float16'.*positive"),
        ('call_overhead_us = 25', 'call_overhead_us = -3', r"device 'gpu0' key 'call_overhead_us'.*negative"),
        ('id = "cpu"', 'id = "gpu0"', r"device id 'gpu0' is defined twice"),
        ('dst = "gpu0"', 'dst = "gpu9"', r"link cpu->gpu9: key 'dst' names unknown device 'gpu9'"),
        ('bandwidth = "32GB/s"', 'bandwidth = "0GB/s"', r"link cpu->gpu0 key 'bandwidth'.*positive"),
        ('class = "gpu"', 'class = "tpu"', r"device 'gpu0': key 'class' is 'tpu'"),
        ('runner = "onnxruntime"\noptions = { provider', 'runner = "tensorflow"\noptions = { provider',
         r"device 'gpu0': key 'runner' names unknown runner 'tensorflow'"),
        ('memory_bandwidth = "900GB/s"\n', '', r"device 'gpu0': missing required key 'memory_bandwidth'"),
        ('fallback_device = "cpu"', 'fallback_device = "npu"', r"'fallback_device' names unknown device 'npu'"),
        ('threads = 2', 'threads = -2', r"device 'cpu': option 'threads'"),
        ('threads = 2', 'treads = 2', r"device 'cpu' options: unknown key.*'treads'"),
        ('float32 = 1e12', 'float64 = 1e12', r"device 'cpu'.*needs a 'float32' entry"),
        ('name = "mine"', 'name = "mine"\ncolor = "red"', r"\[cluster\]: unknown key.*'color'"),
        ('power_w = 250', 'power_w = 250\nprecision = "int4"',
         r"device 'gpu0': key 'precision' is 'int4'; expected one of f32, f16, bf16"),
    ],
)
def test_validation_errors_name_key_and_device(tmp_path: Path, old: str, new: str,
                                               expected: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ClusterError, match=expected) as info:
        cluster_from_toml(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('name = "mine"', 'name = "mine'))
    with pytest.raises(ClusterError, match=r"c\.toml: malformed TOML: .*line 3"):
        cluster_from_toml(path)


def test_missing_file_and_no_devices(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not exist"):
        cluster_from_toml(tmp_path / "absent.toml")
    with pytest.raises(ClusterError, match=r"at least one \[\[device\]\]"):
        cluster_from_toml(write(tmp_path, "[cluster]\nname = 'x'\n"))


def test_unknown_cluster_spec() -> None:
    with pytest.raises(ClusterError, match="not 'local', 'local-cores', a preset"):
        load_cluster("no-such-cluster")


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [("80GiB", "bytes", 80 * 2**30), ("24GB", "bytes", 24e9), (1024, "bytes", 1024),
     ("3.35TB/s", "rate", 3.35e12), ("300 GB/s", "rate", 300e9),
     ("989TFLOP/s", "flops", 989e12), (1.5e3, "flops", 1500.0)],
)
def test_parse_quantity(value: object, kind: str, expected: float) -> None:
    assert parse_quantity(value, kind, "here") == pytest.approx(expected)


def test_parse_quantity_rejects_wrong_unit() -> None:
    with pytest.raises(ClusterError, match="here: cannot parse '80GiB' as a bandwidth"):
        parse_quantity("80GiB", "rate", "here")


def test_presets_load_and_cite_sources() -> None:
    names = list_presets()
    assert {"cpu+l4", "cpu+h100", "cpu+npu", "smallgpu+cpu"} <= set(names)
    for name in names:
        cluster = load_cluster(name)
        assert cluster.fallback_device == "cpu"
        assert cluster.links, name
        text = (PRESET_DIR / f"{name}.toml").read_text()
        assert "#" in text, f"{name} has no comments"
    devices_text = (PRESET_DIR / "devices.toml").read_text()
    assert devices_text.count("Source") >= 5 and "https://" in devices_text


def test_h100_numbers_match_the_datasheet() -> None:
    h100 = load_cluster("cpu+h100").device("h100")
    assert h100.memory_bytes == 80 * 2**30
    assert h100.memory_bandwidth == 3.35e12
    assert h100.peak_flops["bfloat16"] == 989e12
    assert h100.runner == "onnxruntime"
    assert h100.runner_options["provider"] == "CUDAExecutionProvider"
    assert load_cluster("cpu+h100").link("cpu", "h100").bandwidth == 64e9


def test_npu_lacks_ops_and_smallgpu_is_small() -> None:
    npu = load_cluster("cpu+npu").device("npu")
    assert {"Softmax", "LayerNormalization", "Erf"} <= set(npu.unsupported_ops)
    assert npu.device_class == "npu"
    assert load_cluster("smallgpu+cpu").device("smallgpu").memory_bytes == 2 * 2**30


def test_use_copies_a_device_preset_with_overrides(tmp_path: Path) -> None:
    text = '[[device]]\nuse = "l4"\nid = "l4b"\nprice_per_hour = 0.5\n'
    c = cluster_from_toml(write(tmp_path, text))
    assert c.device("l4b").memory_bandwidth == 300e9 and c.device("l4b").price_per_hour == 0.5
    with pytest.raises(ClusterError, match="unknown device preset 'a100'"):
        cluster_from_toml(write(tmp_path, '[[device]]\nuse = "a100"\n', "d.toml"))


def test_presets_name_runners_not_installed_here_only_fail_when_checked() -> None:
    cluster = load_cluster("cpu+h100")  # planning works without CUDA
    with pytest.raises(RunnerNotAvailableError, match="device 'h100'.*CUDAExecutionProvider"):
        check_runners_installed(cluster)


def test_missing_runner_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import partitioner.registry as registry

    def boom(name: str) -> object:
        raise RunnerNotAvailableError(
            f"runner {name!r} needs 'openvino', which is not installed: "
            + registry.RUNNER_EXTRAS["openvino"]
        )

    monkeypatch.setattr(registry, "get_runner", boom)
    device = DeviceSpec("ov", "cpu", "openvino", 1, {"float32": 1.0}, 1.0)
    with pytest.raises(RunnerNotAvailableError, match=r"device 'ov'.*pip install 'hetpart\[openvino\]'"):
        check_runners_installed(Cluster("x", (device,)))


def test_precision_key_names_what_the_device_computes_in(tmp_path: Path) -> None:
    """``precision = "fp16"`` (any common spelling) is the device's precision; absent is f32;
    compile leaves such a device out unless a lower precision is allowed."""
    from partitioner.cluster.precision import restrict_precision

    text = GOOD.replace('power_w = 250', 'power_w = 250\nprecision = "fp16"', 1)
    cluster = cluster_from_toml(write(tmp_path, text))
    assert {d.id: d.precision for d in cluster.devices} == {"gpu0": "f16", "cpu": "f32"}
    kept, below = restrict_precision(cluster, "f32")
    assert [d.id for d in kept.devices] == ["cpu"] and below == {"gpu0": "f16"}
