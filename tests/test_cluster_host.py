"""Cluster file devices may name their ``host``; plans record it only when it is set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_plan_fixtures import branchy_model, cluster, device, save_and_analyse

from partitioner.cluster.file import load_cluster
from partitioner.errors import ClusterError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.io import load_plan, write_plan
from partitioner.testing.host_clusters import cpu_device_toml


def _file(tmp_path: Path, *devices: tuple[str, str]) -> Path:
    path = tmp_path / "c.toml"
    path.write_text("".join(cpu_device_toml(i, e) for i, e in devices))
    return path


def test_host_is_read_and_absent_means_none(tmp_path: Path) -> None:
    c = load_cluster(str(_file(tmp_path, ("a", 'host = "box-1"'), ("b", ""))))
    assert c.device("a").host == "box-1"
    assert c.device("b").host is None


@pytest.mark.parametrize("value", ['""', "3", "[\"a\"]"])
def test_bad_host_names_file_device_and_key(tmp_path: Path, value: str) -> None:
    path = _file(tmp_path, ("a", f"host = {value}"))
    with pytest.raises(ClusterError, match=r"c\.toml.*'a'.*key 'host'"):
        load_cluster(str(path))


def _plan_json(tmp_path: Path, devices: list) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    analysed = save_and_analyse(branchy_model(), tmp_path, "model")
    plan = plan_from_assignment(analysed, cluster(*devices),
                                {n.name: devices[0].id for n in analysed.facts.nodes})
    write_plan(plan, analysed, tmp_path / "plan")
    return json.loads((tmp_path / "plan" / "plan.json").read_text())


def test_plans_record_host_only_when_set(tmp_path: Path) -> None:
    import dataclasses

    with_host = dataclasses.replace(device("a"), host="box-1")
    data = _plan_json(tmp_path / "h", [with_host, device("b")])
    by_id = {d["id"]: d for d in data["cluster"]["devices"]}
    assert by_id["a"]["host"] == "box-1"
    assert "host" not in by_id["b"]  # older plans stay byte-identical
    assert load_plan(tmp_path / "h" / "plan").cluster.device("a").host == "box-1"


def test_devices_on_two_hosts_without_a_link_are_priced_as_a_network(tmp_path: Path) -> None:
    from partitioner.cluster.types import DEFAULT_NETWORK_BANDWIDTH, DEFAULT_NETWORK_LATENCY_S

    path = _file(tmp_path, ("a", 'host = "box-1"'), ("a2", 'host = "box-1"'),
                 ("b", 'host = "box-2"'), ("u", ""))
    path.write_text(path.read_text() + '\n[[link]]\nsrc = "a2"\ndst = "b"\n'
                    'bandwidth = "100Gbps"\nlatency_us = 5\n')
    c = load_cluster(str(path))
    network = c.link("a", "b")
    assert (network.bandwidth, network.latency_s) == (
        DEFAULT_NETWORK_BANDWIDTH, DEFAULT_NETWORK_LATENCY_S)
    assert c.transfer_time("b", "a", 1_250_000) == pytest.approx(2e-3)  # both directions
    # A declared link wins; one host is host memory.
    assert c.link("a2", "b").bandwidth == 12.5e9
    assert c.link("a", "a2").bandwidth == c.host_copy_bandwidth
    assert c.link("b", "a2").bandwidth == DEFAULT_NETWORK_BANDWIDTH  # links are directed
    # A device naming no host beside ones that do is a machine of its own, as Ray runs it.
    assert c.link("a", "u").bandwidth == DEFAULT_NETWORK_BANDWIDTH
    # With no host named anywhere the cluster is one machine.
    one = load_cluster(str(_file(tmp_path, ("x", ""), ("y", ""))))
    assert one.link("x", "y").bandwidth == one.host_copy_bandwidth


def test_host_names_are_stripped(tmp_path: Path) -> None:
    c = load_cluster(str(_file(tmp_path, ("a", 'host = " box-1 "'), ("b", 'host = "box-1"'))))
    assert c.device("a").host == "box-1"
    assert c.link("a", "b").bandwidth == c.host_copy_bandwidth


def test_compile_names_the_hosts_it_priced_with_the_default_network(tmp_path: Path,
                                                                  capsys) -> None:
    from partitioner.cli import main

    path = _file(tmp_path, ("a", 'host = "box-1"'), ("b", 'host = "box-2"'),
                 ("c", 'host = "box-3"'))
    analysed = save_and_analyse(branchy_model(), tmp_path, "model")
    first, second = analysed.facts.nodes[0].name, analysed.facts.nodes[-1].name
    assert main(["compile", analysed.source, "--cluster", str(path), "-o",
                 str(tmp_path / "plan"), "--time-limit", "5", "--pin", f"{first}=a",
                 "--pin", f"{second}=b"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "no [[link]]" in line)
    assert "no [[link]] between hosts box-1 <-> box-2: priced as a 10 Gb/s network" in note
    assert "hetpart profile --links" in note
    assert "box-3" not in note  # the plan uses no device of box-3
