"""Connecting the driver to a Ray cluster: an address, or ``local`` (a throwaway one here).

:class:`RayConnection` owns what it starts and only that: the local cluster it started, the
``ray.init`` it made. A Ray session the caller had already opened is used and left open.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from partitioner.distributed.local_cluster import (
    LOOPBACK,
    LOOPBACK_SWITCH,
    LocalRayCluster,
    loopback_environment,
    restore_network,
)
from partitioner.errors import RayClusterError

#: ``--ray local`` / ``ray://local``: start a throwaway cluster on this machine.
LOCAL = "local"


def ray_module() -> Any:
    """``import ray``, or a RayClusterError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayClusterError(
            f"Ray is not installed ({exc}); install the extra: pip install 'hetpart[ray]'"
        ) from exc
    return ray


IGNORE_ERRORS = "RAY_IGNORE_UNHANDLED_ERRORS"

#: Seconds to wait for a TCP connection to a cluster's address before ``ray.init`` (which
#: retries an unreachable address for about ten minutes).
PROBE_TIMEOUT_S = 5.0


_UNSET = object()


def _on_loopback(address: str) -> bool:
    """Whether ``address`` (``HOST:PORT``) names this machine's loopback interface."""
    host = address.rpartition(":")[0].strip("[]")
    return host in {LOOPBACK, "localhost", "::1"}


def _probe(address: str) -> None:
    """Fail fast, naming ``address``, when nothing listens there (``HOST:PORT`` only)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise RayClusterError(f"cannot connect to Ray cluster {address!r}: {exc} (start its "
                              "head with `ray start --head`)") from None


class RayConnection:
    """The driver's connection to ``address`` (``local``: a new cluster with ``nodes``,
    node name -> device ids, advertising ``units`` of a device where given, else one)."""

    def __init__(self, address: str, nodes: Mapping[str, Sequence[str]] | None = None,
                 units: Mapping[str, float] | None = None) -> None:
        self.address = address
        self.nodes = dict(nodes or {})
        self.units = dict(units or {})
        self.local: LocalRayCluster | None = None
        self._initialised = False
        self._ignored_errors: str | None = None
        #: The loopback switch's value before :meth:`open` set it (``_UNSET``: untouched).
        self._saved_network: Any = _UNSET
        self._network: bool | None = None

    @property
    def owns_session(self) -> bool:
        """True when closing this connection ends the Ray session (and with it its actors)."""
        return self._initialised

    @property
    def where(self) -> str:
        """The cluster, for messages."""
        if self.local is not None:
            return f"local ({self.local.address}, {len(self.local.nodes)} node(s))"
        return self.address

    def open(self) -> RayConnection:
        # A failed run leaves calls that failed after it (cancelled, or downstream of the
        # lost device) unread; Ray would log each as an "unhandled error" when dropped.
        if not self.address.strip():
            raise RayClusterError("no Ray address given: pass 'local', 'auto' or HOST:PORT")
        self._ignored_errors = os.environ.get(IGNORE_ERRORS)
        os.environ[IGNORE_ERRORS] = "1"
        if self.address == LOCAL or _on_loopback(self.address):
            # Before Ray is first imported: else Ray swaps a loopback address for this
            # machine's network one, where nothing listens, and retries for ten minutes.
            self._saved_network = os.environ.get(LOOPBACK_SWITCH)
            self._network = loopback_environment()
        ray = ray_module()
        try:
            if self.address == LOCAL:
                if ray.is_initialized():
                    raise RayClusterError(
                        "--ray local: Ray is already initialised in this process; pass "
                        "ray='auto' (or its address) to use that cluster"
                    )
                self.local = LocalRayCluster(self.nodes, units=self.units).start()
                ray.init(address=self.local.address, _node_ip_address=LOOPBACK,
                         log_to_driver=False, logging_level=logging.WARNING)
                self._initialised = True
            elif not ray.is_initialized():
                _probe(self.address)
                ray.init(address=self.address, log_to_driver=False,
                         logging_level=logging.WARNING)
                self._initialised = True
        except RayClusterError:
            self.close()
            raise
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError from ray.init
            self.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RayClusterError(f"cannot connect to Ray cluster {self.address!r}: {first}"
                                  ) from exc
        return self

    def close(self) -> None:
        """Disconnect (when this connection connected) and stop the local cluster it started."""
        if self._initialised:
            self._initialised = False
            import ray

            ray.shutdown()
        local, self.local = self.local, None
        if local is not None:
            local.shutdown()
        if self._saved_network is not _UNSET:
            restore_network(self._network)
            if self._saved_network is None:
                os.environ.pop(LOOPBACK_SWITCH, None)
            else:
                os.environ[LOOPBACK_SWITCH] = self._saved_network
            self._saved_network, self._network = _UNSET, None
        if self._ignored_errors is None:
            os.environ.pop(IGNORE_ERRORS, None)
        else:
            os.environ[IGNORE_ERRORS] = self._ignored_errors

    def __enter__(self) -> RayConnection:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
