"""``hetpart run --ray local``: a throwaway loopback cluster, one node per host, torn down
after the run, whether it succeeds or fails: no process, ``/dev/shm`` file or Ray state
(``/tmp/ray``, the private Ray temp dir) is left behind."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_plan_fixtures import alternate, branchy_model, cluster, device, save_and_analyse

pytest.importorskip("ray", reason="needs the ray extra: pip install 'hetpart[ray]'")

from partitioner.plan.assign import plan_from_assignment  # noqa: E402
from partitioner.plan.io import write_plan  # noqa: E402

pytestmark = pytest.mark.ray


def _ray_leftovers() -> tuple[set[str], set[str], set[int]]:
    """(/dev/shm entries, /tmp entries Ray or this package make, processes naming them)."""
    shm = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    tmp = {n for n in os.listdir("/tmp") if n == "ray" or n.startswith("hpray-")}
    procs = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"/tmp/hpray-" in (entry / "cmdline").read_bytes():
                    procs.add(int(entry.name))
            except OSError:
                continue
    return shm, tmp, procs


def _plan(tmp_path: Path, hosts: dict[str, str], **options: object) -> Path:
    """The branchy model on devices ``hosts`` names (device id -> host)."""
    devices = [dataclasses.replace(device(d, **options), host=h) for d, h in hosts.items()]
    analysed = save_and_analyse(branchy_model(), tmp_path, "model")
    plan = plan_from_assignment(analysed, cluster(*devices), alternate(analysed, list(hosts)))
    write_plan(plan, analysed, tmp_path / "plan")
    return tmp_path / "plan"


def _hetpart(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "partitioner.cli", *argv], text=True,
                          capture_output=True, timeout=240, check=False)


def test_run_ray_local_checks_and_leaves_nothing_behind(tmp_path: Path) -> None:
    before = _ray_leftovers()
    # Three devices, two on one host: two Ray nodes.
    plan = _plan(tmp_path, {"a": "box-1", "b": "box-2", "c": "box-1"})
    done = _hetpart("run", str(plan), "--ray", "local", "--check", "--json",
                    "--repeat", "2", "--stream", "3")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["check"]["passed"]
    assert record["ray"]["cluster"].startswith("local (127.0.0.1:")
    assert "2 node(s)" in record["ray"]["cluster"]  # one per host
    assert record["ray"]["hosts"] == {"a": "box-1", "b": "box-2", "c": "box-1"}
    assert _ray_leftovers() == before


def test_failed_run_ray_local_says_why_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    before = _ray_leftovers()
    # Every device asks for an execution provider this machine lacks: preparing fails on
    # the nodes, after the cluster started.
    plan = _plan(tmp_path, {"a": "box-1", "b": "box-1"}, provider="NoSuchExecutionProvider")
    done = _hetpart("run", str(plan), "--ray", "local", "--repeat", "1")
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("hetpart: error:")]
    assert len(lines) == 1 and "device 'a' on host box-1" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert _ray_leftovers() == before
