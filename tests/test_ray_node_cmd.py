"""``hetpart ray-node``: the ``ray start`` line advertising one host's devices (no Ray needed)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from test_cluster_host import _file

from partitioner.cli import main


def test_prints_ray_start_with_one_resource_per_device_of_the_host(tmp_path: Path,
                                                                   capsys) -> None:
    path = _file(tmp_path, ("a", 'host = "box-1"'), ("b", 'host = "box-2"'),
                 ("c", 'host = "box-1"'))
    assert main(["ray-node", "--cluster", str(path), "--host", "box-1",
                 "--address", "10.0.0.5:6379"]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[:3] == ["ray", "start", "--address=10.0.0.5:6379"]
    resources = json.loads(words[3].removeprefix("--resources="))
    assert resources == {"hetpart_device:a": 1.0, "hetpart_device:c": 1.0}
    assert main(["ray-node", "--cluster", str(path), "--host", "box-2"]) == 0
    assert "ray start --head" in capsys.readouterr().out


def test_unknown_host_is_one_line_naming_the_hosts(tmp_path: Path, capsys) -> None:
    path = _file(tmp_path, ("a", 'host = "box-1"'), ("b", ""))
    assert main(["ray-node", "--cluster", str(path), "--host", "box-9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no device names host 'box-9' (hosts: box-1)" in err
