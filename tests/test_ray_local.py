"""``hetpart run --ray local``: a throwaway loopback cluster, one node per host, torn down
after the run, whether it succeeds or fails: no process, ``/dev/shm`` file or Ray state
(its private Ray temp dir, sessions and logs; it never writes ``/tmp/ray``) is left behind."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_plan_fixtures import alternate, branchy_model, cluster, device, save_and_analyse

pytest.importorskip("ray", reason="needs the ray extra: pip install 'hetpart[ray]'")

from partitioner.plan.assign import plan_from_assignment  # noqa: E402
from partitioner.plan.io import write_plan  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture
def private_tmp():
    """A short private TMPDIR for the hetpart process: its Ray state goes there, so what it
    leaves is told apart from other Ray clusters on this machine (parallel test runs)."""
    root = Path(tempfile.mkdtemp(prefix="hpt-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _processes_naming(root: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(root).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _assert_nothing_left(root: Path, shm_before: set[str], stderr: str) -> None:
    assert f"Ray state in {root}/hpray-" in stderr  # the run's Ray state lived in root
    # The cluster's Ray temp dir (sessions, logs, sockets) is gone. (Other libraries may
    # leave their own files in TMPDIR: a telemetry ".ses" file appears there.)
    assert [p.name for p in root.iterdir() if p.name.startswith("hpray-")] == []
    assert _processes_naming(root) == []
    assert _shm() - shm_before == set()


def _plan(tmp_path: Path, hosts: dict[str, str], **options: object) -> Path:
    """The branchy model on devices ``hosts`` names (device id -> host)."""
    devices = [dataclasses.replace(device(d, **options), host=h) for d, h in hosts.items()]
    analysed = save_and_analyse(branchy_model(), tmp_path, "model")
    plan = plan_from_assignment(analysed, cluster(*devices), alternate(analysed, list(hosts)))
    write_plan(plan, analysed, tmp_path / "plan")
    return tmp_path / "plan"


def _hetpart(tmp: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "partitioner.cli", "-v", *argv], text=True,
                          capture_output=True, timeout=240, check=False,
                          env={**os.environ, "TMPDIR": str(tmp)})


def test_run_ray_local_checks_and_leaves_nothing_behind(tmp_path: Path, private_tmp) -> None:
    shm = _shm()
    # Three devices, two on one host: two Ray nodes.
    plan = _plan(tmp_path, {"a": "box-1", "b": "box-2", "c": "box-1"})
    done = _hetpart(private_tmp, "run", str(plan), "--ray", "local", "--check", "--json",
                    "--repeat", "2", "--stream", "3")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["check"]["passed"]
    assert record["ray"]["cluster"].startswith("local (127.0.0.1:")
    assert "2 node(s)" in record["ray"]["cluster"]  # one per host
    assert record["ray"]["hosts"] == {"a": "box-1", "b": "box-2", "c": "box-1"}
    _assert_nothing_left(private_tmp, shm, done.stderr)


def test_failed_run_ray_local_says_why_in_one_line_and_leaves_nothing(tmp_path: Path,
                                                                     private_tmp) -> None:
    shm = _shm()
    # Every device asks for an execution provider this machine lacks: preparing fails on
    # the nodes, after the cluster started.
    plan = _plan(tmp_path, {"a": "box-1", "b": "box-1"}, provider="NoSuchExecutionProvider")
    done = _hetpart(private_tmp, "run", str(plan), "--ray", "local", "--repeat", "1")
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("hetpart: error:")]
    assert len(lines) == 1 and "device 'a' on host box-1" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    _assert_nothing_left(private_tmp, shm, done.stderr)
