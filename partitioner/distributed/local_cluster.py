"""``--ray local``: a throwaway Ray cluster on this machine, one simulated node per host.

Each node advertises its devices as custom resources (``resources.device_resource``) and has
a small object store. With several hosts the head runs no work (``num_cpus=0``: the driver's
node, as a client machine would be) and each host is a node of its own; with one host the
head is that host's node, so the driver shares its object store as on one machine (a model's
inputs and outputs then move through shared memory, not over loopback TCP between two
nodes).

Everything binds to loopback: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before Ray is
imported (Ray then takes 127.0.0.1 as this node's address) and every head and node gets
``node_ip_address = "127.0.0.1"`` (``ray.cluster_utils.Cluster.add_node`` hands its keyword
arguments to ``RayParams``). Ray's state (session directories, the ``ray_current_cluster``
address file) goes into a private ``RAY_TMPDIR`` removed at teardown, so nothing is left in
``/tmp/ray``; teardown waits, bounded, for every process started under it to exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from partitioner.distributed.resources import node_resources
from partitioner.errors import RayClusterError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: Off ("0") when Ray is imported, Ray keeps a loopback address instead of this machine's.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Object store per simulated node (Ray's minimum is about 75 MB).
OBJECT_STORE_BYTES = 100 * 2**20
#: Seconds to wait for nodes to register, and for processes to exit at teardown.
START_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 15.0
KILL_TIMEOUT_S = 5.0


def loopback_environment() -> bool | None:
    """Make Ray take 127.0.0.1 as this node's address; returns the previous setting of an
    already imported Ray (None when Ray was not imported yet), for :func:`restore_network`.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when first imported; when it is off
    ``ray.init("127.0.0.1:PORT")`` keeps the loopback address, otherwise Ray swaps it for the
    machine's own network address. A Ray imported earlier (by the caller, or pytest) has
    read it already, so its constant is switched too, for as long as the cluster runs.
    """
    os.environ[LOOPBACK_SWITCH] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is None:
        return None
    previous = bool(getattr(constants, "ENABLE_RAY_CLUSTER", True))
    setattr(constants, "ENABLE_RAY_CLUSTER", False)  # noqa: B010 (an imported Ray's constant)
    return previous


def restore_network(previous: bool | None) -> None:
    """Undo :func:`loopback_environment`'s switch of an imported Ray's constant."""
    constants = sys.modules.get("ray._private.ray_constants")
    if previous is not None and constants is not None:
        setattr(constants, "ENABLE_RAY_CLUSTER", previous)  # noqa: B010


class LocalRayCluster:
    """One node per entry of ``nodes`` (name -> device ids) on loopback, besides a head
    without CPUs (with one entry, the head is its node); each device advertised with one
    unit, or ``units[id]``.

    Use as a context manager, or call :meth:`start` and :meth:`shutdown` (also on failure).
    """

    def __init__(self, nodes: Mapping[str, Sequence[str]], cpus_per_node: int = 1,
                 object_store_bytes: int = OBJECT_STORE_BYTES,
                 units: Mapping[str, float] | None = None) -> None:
        self.nodes = {name: list(ids) for name, ids in nodes.items()}
        self.units = dict(units or {})
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.address: str | None = None
        self._cluster: Any = None
        self._tmp: Path | None = None
        self._saved_env: dict[str, str | None] = {}
        self._network: bool | None = None
        self._started: dict[str, Any] = {}

    def start(self) -> LocalRayCluster:
        self._saved_env = {k: os.environ.get(k)
                           for k in (LOOPBACK_SWITCH, "RAY_TMPDIR")}
        self._network = loopback_environment()
        # Short: Ray's Unix socket paths live under it (107-byte limit); $TMPDIR when short.
        parent = tempfile.gettempdir()
        self._tmp = Path(tempfile.mkdtemp(prefix="hpray-",
                                          dir=parent if len(parent) <= 40 else "/tmp"))
        os.environ["RAY_TMPDIR"] = str(self._tmp)
        try:
            from ray.cluster_utils import Cluster

            common = {"node_ip_address": LOOPBACK, "object_store_memory": self.object_store_bytes}
            self._cluster = Cluster(shutdown_at_exit=True)
            if len(self.nodes) == 1:
                (ids,) = self.nodes.values()
                self._cluster.add_node(num_cpus=self.cpus_per_node, include_dashboard=False,
                                       resources=node_resources(ids, self.units), **common)
            else:
                self._cluster.add_node(num_cpus=0, include_dashboard=False, **common)
                for name, ids in self.nodes.items():
                    self._started[name] = self._cluster.add_node(
                        wait=False, num_cpus=self.cpus_per_node,
                        resources=node_resources(ids, self.units), **common)
            self._cluster.wait_for_nodes(timeout=START_TIMEOUT_S)
            self.address = self._cluster.address
        except Exception as exc:
            self.shutdown()
            raise RayClusterError(f"could not start a local Ray cluster: {exc}") from exc
        logger.info("local Ray cluster at %s: %d node(s) %s; Ray state in %s", self.address,
                    len(self.nodes), ", ".join(f"{n}={ids}" for n, ids in self.nodes.items()),
                    self._tmp)
        return self

    def remove_node(self, name: str) -> None:
        """Stop node ``name`` (a machine leaving the cluster), e.g. to test what runs see."""
        if self._cluster is None or name not in self._started:
            one_host = " (a one-host cluster's node is its head)" if name in self.nodes else ""
            raise RayClusterError(f"local Ray cluster has no removable node {name!r}{one_host}")
        self._cluster.remove_node(self._started.pop(name))

    def shutdown(self) -> None:
        """Stop every node and remove Ray's state; safe to call twice, and after a failed start."""
        cluster, self._cluster = self._cluster, None
        self._started = {}
        if cluster is not None:
            try:
                import ray

                if ray.is_initialized():  # a driver still joined: Ray refuses to stop its node
                    ray.shutdown()
                cluster.shutdown()
            except Exception as exc:  # teardown goes on: the processes are reaped below
                logger.warning("local Ray cluster shutdown: %s", exc)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            _wait_for_exit(tmp)
            for _ in range(3):  # a process that just died may still flush a log file
                shutil.rmtree(tmp, ignore_errors=True)
                if not tmp.exists():
                    break
                time.sleep(0.2)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        restore_network(self._network)
        self._network = None
        self.address = None

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()


def processes_under(root: Path) -> list[int]:
    """PIDs of this user's processes started under ``root``, from ``/proc``: Ray's daemons
    name their session directory on their command line; its workers and agents rename
    themselves (``ray::DeviceWorker``) but inherit ``RAY_TMPDIR=root`` from their raylet."""
    mark = str(root).encode()
    inherited = b"RAY_TMPDIR=" + mark + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (mark in (entry / "cmdline").read_bytes()
                    or inherited in (entry / "environ").read_bytes()):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _wait_for_exit(root: Path) -> None:
    """Wait (bounded) for the processes started under ``root`` to exit; kill, by id, any
    still there after ``EXIT_TIMEOUT_S`` (workers that outlived their raylet)."""
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while time.monotonic() < deadline:
        if not processes_under(root):
            return
        time.sleep(0.1)
    for pid in processes_under(root):
        logger.warning("killing Ray process %d left after teardown", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while processes_under(root) and time.monotonic() < deadline:
        time.sleep(0.05)
