"""Measured links written into a cluster file (``cluster.links_file``) without losing what the
user wrote, and the arithmetic and checks of ``distributed.links`` that need no Ray cluster."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from partitioner.cluster.file import cluster_from_toml
from partitioner.cluster.links_file import (
    MARK,
    MeasuredLink,
    file_hosts,
    format_rate,
    updated_text,
    write_text_atomically,
)
from partitioner.distributed.links import fit_line, host_nodes
from partitioner.errors import ClusterError, RayClusterError
from partitioner.testing.host_clusters import cpu_device_toml

USER_FILE = ("# my two boxes and a laptop\n[cluster]\nname = \"lab\"   # keep me\n"
             + cpu_device_toml("a0", 'host = "box-a"')
             + cpu_device_toml("a1", 'host = "box-a"\ncount = 2')
             + "\n# the second box\n"
             + cpu_device_toml("b0", 'host = "box-b"')
             + cpu_device_toml("c0", 'host = "laptop"')
             + """
[[link]]   # a guess
src = "a0"
dst = "b0"
bandwidth = "10Gb/s"
bidirectional = true
copy_engine = false

[[link]]
src = "a0"
dst = "a1"
bandwidth = "20GB/s"

[[link]]
src = "b0"
dst = "c0"
bandwidth = "1Gb/s"

# trailing note
""")

AB = [MeasuredLink("box-a", "box-b", 1.25e9, 80e-6), MeasuredLink("box-b", "box-a", 1.0e9, 90e-6)]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


def test_measured_links_replace_those_between_measured_hosts_only(tmp_path: Path) -> None:
    path = _write(tmp_path, USER_FILE)
    text = updated_text(path, AB, ["measured here"])
    # What the user wrote stays: comments, the [cluster] table, same-host and unmeasured links.
    for kept in ("# my two boxes and a laptop", 'name = "lab"   # keep me', "# the second box",
                 "# trailing note", 'dst = "a1"', 'src = "b0"\ndst = "c0"'):
        assert kept in text
    assert "# a guess" not in text and '"10Gb/s"' not in text  # the superseded guess is gone
    assert "\n\n\n" not in text
    assert f"{MARK} measured here" in text
    path.write_text(text)
    cluster = cluster_from_toml(path)
    ab = {(lk.src, lk.dst): lk for lk in cluster.links}
    # a1 is counted (a1-0, a1-1): the link naming a1 joins both instances.
    for src in ("a0", "a1-0", "a1-1"):
        assert ab[(src, "b0")].bandwidth == pytest.approx(1.25e9)
        assert ab[(src, "b0")].latency_s == pytest.approx(80e-6)
        assert ab[("b0", src)].bandwidth == pytest.approx(1.0e9)
    assert ab[("a0", "b0")].copy_engine is False  # carried over from the guess it replaced
    assert ab[("a1-0", "b0")].copy_engine is None
    assert ab[("a0", "a1-0")].bandwidth == 20e9 and ab[("b0", "c0")].bandwidth == 125e6
    assert ("c0", "b0") not in ab and ("a0", "c0") not in ab  # laptop was not measured
    assert cluster.name == "lab" and len(cluster.devices) == 5


def test_measuring_again_replaces_the_previous_measurement(tmp_path: Path) -> None:
    path = _write(tmp_path, USER_FILE)
    path.write_text(updated_text(path, AB, ["first"]))
    slower = [MeasuredLink("box-a", "box-b", 5e8, 1e-3), MeasuredLink("box-b", "box-a", 5e8, 1e-3)]
    path.write_text(updated_text(path, slower, ["second"]))
    text = path.read_text()
    assert f"{MARK} first" not in text and text.count(f"{MARK} second") == 1
    links = {(lk.src, lk.dst): lk for lk in cluster_from_toml(path).links}
    assert links[("a0", "b0")].bandwidth == 5e8 and links[("a0", "b0")].copy_engine is False
    assert text == updated_text(path, slower, ["second"])  # the same measurement: no change


def test_write_is_atomic_and_keeps_the_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, USER_FILE)
    path.chmod(0o640)
    out = tmp_path / "measured.toml"
    write_text_atomically(out, updated_text(path, AB, []), like=path)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert path.read_text() == USER_FILE  # -o leaves the input alone
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(("text", "message"), [
    (cpu_device_toml("a", "") + cpu_device_toml("b", ""), "no device names a host"),
    (cpu_device_toml("a", 'host = "x"') + cpu_device_toml("b", 'host = "x"'),
     "every device is on host 'x'"),
    (cpu_device_toml("a", 'host = "x"') + cpu_device_toml("b", 'host = "y"')
     + "\n[cluster]\nnam = 1\n", "unknown key"),
])
def test_bad_cluster_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ClusterError, match=message) as info:
        file_hosts(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_links_not_written_as_tables_are_refused(tmp_path: Path) -> None:
    text = ('link = [{ src = "a", dst = "b", bandwidth = "1GB/s" }]\n'
            + cpu_device_toml("a", 'host = "x"') + cpu_device_toml("b", 'host = "y"'))
    path = _write(tmp_path, text)
    with pytest.raises(ClusterError, match=r"not all \[\[link\]\] tables"):
        updated_text(path, [MeasuredLink("x", "y", 1e9, 0.0)], [])
    with pytest.raises(ClusterError, match="no device names host 'z'"):
        updated_text(_write(tmp_path, USER_FILE), [MeasuredLink("box-a", "z", 1e9, 0.0)], [])


def test_fit_line_and_rates() -> None:
    sizes = (2**16, 2**20, 2**24)
    bandwidth, latency = fit_line({s: 2e-3 + s / 4e8 for s in sizes})
    assert bandwidth == pytest.approx(4e8) and latency == pytest.approx(2e-3)
    # Noise that hides the slope: the largest size's rate, never a negative bandwidth.
    bandwidth, latency = fit_line({2**16: 5e-3, 2**24: 4e-3})
    assert bandwidth == pytest.approx(2**24 / 4e-3) and latency >= 0
    assert format_rate(1.2345e9) == "1.234GB/s" and format_rate(6.5e5) == "650kB/s"
    assert format_rate(1234e9) == "1.234TB/s"


def _node(node_id: str, *devices: str, alive: bool = True) -> dict:
    return {"NodeID": node_id, "Alive": alive, "NodeManagerAddress": "127.0.0.1",
            "Resources": {"CPU": 1.0, **{f"hetpart_device:{d}": 1.0 for d in devices}}}


def test_hosts_are_found_by_their_devices_resources() -> None:
    nodes = [_node("n1", "a0"), _node("n2", "b0"), _node("n3", "c0", alive=False)]
    assert host_nodes({"box-a": ["a0"], "box-b": ["b0"]}, nodes, "here") == {
        "box-a": "n1", "box-b": "n2"}
    with pytest.raises(RayClusterError,
                       match=r"no node advertises a device of host 'laptop' \('c0'"):
        host_nodes({"box-a": ["a0"], "laptop": ["c0"]}, nodes, "here")
    with pytest.raises(RayClusterError, match="hosts 'box-a' and 'box-x' are the same Ray node"):
        host_nodes({"box-a": ["a0"], "box-x": ["b1"]}, [_node("n1", "a0", "b1")], "here")
