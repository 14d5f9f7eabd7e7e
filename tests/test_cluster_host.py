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
