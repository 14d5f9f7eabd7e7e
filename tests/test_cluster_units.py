"""Units in cluster files: B is a byte and b a bit; ambiguous units are refused by file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cluster_file import GOOD, write

from partitioner.cluster.file import cluster_from_toml, parse_quantity
from partitioner.errors import ClusterError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("25GB/s", 25e9),
        ("25GBps", 25e9),
        ("25 GB/s", 25e9),
        ("25 bytes/s", 25.0),
        ("3.35TB/s", 3.35e12),
        ("1GiB/s", 2**30),
        ("100Gbps", 100e9 / 8),
        ("100Gb/s", 100e9 / 8),
        ("800Mbps", 800e6 / 8),
        ("400 Gbit/s", 400e9 / 8),
        ("10kbps", 10e3 / 8),
        (12e9, 12e9),  # plain numbers stay bytes per second
        (7, 7.0),
    ],
)
def test_bandwidths_in_bytes_and_bits(value: object, expected: float) -> None:
    assert parse_quantity(value, "rate", "here") == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("24GB", 24e9),
        ("80GiB", 80 * 2**30),
        ("512 MiB", 512 * 2**20),
        ("1kB", 1e3),
        ("2 KiB", 2048),
        ("64 bytes", 64),
        (1 << 30, 2**30),
    ],
)
def test_sizes_in_bytes(value: object, expected: float) -> None:
    assert parse_quantity(value, "bytes", "here") == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "kind", "why"),
    [
        ("25gbs", "rate", "'gbs' is ambiguous"),
        ("25GBs", "rate", r"'GBs' is ambiguous: write 'GB/s' or 'GBps'"),
        ("25GB", "rate", "'GB' is an amount, not a rate"),
        ("25Gb", "rate", "'Gb' is ambiguous"),
        ("80GiB", "rate", "'GiB' is an amount"),
        ("100mbps", "rate", "'m' would be milli"),
        ("25G", "rate", "'G' is a prefix without a unit"),
        ("25e9", "rate", "a string needs a unit"),
        ("24Gb", "bytes", "would be bits"),
        ("24gb", "bytes", "would be bits"),
        ("24GB/s", "bytes", "is a rate"),
        ("24", "bytes", "a string needs a unit"),
        ("1.5e3", "flops", "a string needs a unit"),
        ("3 furlongs", "rate", "unknown unit 'furlongs'"),
    ],
)
def test_ambiguous_units_are_refused(value: str, kind: str, why: str) -> None:
    with pytest.raises(ClusterError, match=f"^here: cannot parse '{value}' as .*{why}") as info:
        parse_quantity(value, kind, "here")
    assert "\n" not in str(info.value) and "examples:" in str(info.value)


def test_bits_per_second_in_a_cluster_file(tmp_path: Path) -> None:
    text = GOOD.replace('bandwidth = "32GB/s"', 'bandwidth = "100Gbps"')
    text = text.replace('host_copy_bandwidth = "12GB/s"', 'host_copy_bandwidth = "200Gb/s"')
    cluster = cluster_from_toml(write(tmp_path, text))
    assert cluster.link("cpu", "gpu0").bandwidth == pytest.approx(12.5e9)
    assert cluster.host_copy_bandwidth == pytest.approx(25e9)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('bandwidth = "32GB/s"', 'bandwidth = "32gbs"', "link cpu->gpu0 key 'bandwidth'"),
        (
            'memory_bandwidth = "900GB/s"',
            'memory_bandwidth = "900GB"',
            "device 'gpu0' key 'memory_bandwidth'",
        ),
        ('memory = "16GiB"', 'memory = "16Gb"', "device 'gpu0' key 'memory'"),
        ('memory = "16GiB"', 'memory = "16"', "device 'gpu0' key 'memory'"),
        (
            'host_copy_bandwidth = "12GB/s"',
            'host_copy_bandwidth = "12Gb"',
            r"\[cluster\] key 'host_copy_bandwidth'",
        ),
        ('float32 = "20TFLOP/s"', 'float32 = "20T"', r"device 'gpu0' key 'peak_flops.float32'"),
    ],
)
def test_cluster_file_errors_name_file_and_key(tmp_path: Path, old: str, new: str, where: str):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ClusterError, match=f"^{path}: {where}: cannot parse"):
        cluster_from_toml(path)
