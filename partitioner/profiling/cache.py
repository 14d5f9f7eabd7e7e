"""The SQLite profile cache: measured node latencies, device facts and fusion calibrations.

Keys are a node signature plus a runner fingerprint (runner name, version, options and the CPU
model), so a cache copied to another machine or another runner version is simply not hit. A
corrupt or foreign file is moved aside and rebuilt with a warning, never a crash.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partitioner.errors import CostModelError
from partitioner.profiling.timing import Timing

log = logging.getLogger(__name__)

SCHEMA = "hetpart-profile-cache"
SCHEMA_VERSION = "4"
#: Version of the profiling harness (``cost_models.single_node``: how single-node models and
#: feeds are built, and which failures become verdicts). It is part of every runner
#: fingerprint, so rows written by an older harness (e.g. one that fed NumPy scalars for 0-d
#: inputs and stored the failures) are never reused: bump it whenever a harness change could
#: change what a row says.
HARNESS_VERSION = "3"

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    fingerprint TEXT NOT NULL, signature TEXT NOT NULL, op_type TEXT NOT NULL,
    flops REAL NOT NULL, bytes REAL NOT NULL, median_s REAL NOT NULL, spread_s REAL NOT NULL,
    repeats INTEGER NOT NULL, error TEXT, best_s REAL, measured_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, signature));
CREATE TABLE IF NOT EXISTS facts (
    fingerprint TEXT NOT NULL, key TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (fingerprint, key));
CREATE TABLE IF NOT EXISTS calibration (
    fingerprint TEXT NOT NULL, model TEXT NOT NULL, tensor_sum_s REAL NOT NULL,
    other_sum_s REAL NOT NULL, measured_s REAL NOT NULL, overhead_s REAL NOT NULL,
    nodes INTEGER NOT NULL, PRIMARY KEY (fingerprint, model));
CREATE TABLE IF NOT EXISTS plan_timings (
    key TEXT PRIMARY KEY, median_s REAL NOT NULL, p10_s REAL NOT NULL, p90_s REAL NOT NULL,
    samples INTEGER NOT NULL, noise_s REAL NOT NULL, partition_s TEXT NOT NULL,
    measured_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class PlanTiming:
    """A set of partitions timed end to end as they run (``partitioner.runtime.measure``).

    Attributes:
        timing: The end-to-end figure.
        partition_s: Median run time of each partition, in execution order.
    """

    timing: Timing
    partition_s: tuple[float, ...]


@dataclass(frozen=True)
class ProfileRecord:
    """One measured signature on one runner configuration.

    Attributes:
        signature: NodeInfo.signature.
        op_type: Qualified op type (``domain::op`` for custom domains).
        flops: FLOPs of the node (feature for fitted models).
        bytes: Bytes read plus written (feature for fitted models).
        median_s: Median latency with the per-call overhead subtracted.
        spread_s: Spread of the samples (p90 - p10).
        repeats: Number of timed runs.
        error: The runner's message when the node failed to run (then unsupported).
        best_s: Fastest sample with the per-call overhead subtracted (None: use median).
    """

    signature: str
    op_type: str
    flops: float
    bytes: float
    median_s: float
    spread_s: float
    repeats: int
    error: str | None = None
    best_s: float | None = None

    def latency(self, statistic: str = "median") -> float:
        """``median_s``, or ``best_s`` for ``statistic="best"`` (median when not recorded)."""
        if statistic == "best" and self.best_s is not None:
            return self.best_s
        return self.median_s


def default_cache_path() -> Path:
    """``$HETPART_CACHE/profiles.sqlite``, else ``~/.cache/hetpart/profiles.sqlite``."""
    root = os.environ.get("HETPART_CACHE") or str(Path.home() / ".cache" / "hetpart")
    return Path(root) / "profiles.sqlite"


@functools.cache
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def runner_fingerprint(runner: str, version: str, options: Mapping[str, Any]) -> str:
    """Stable short hash of runner name, version, options, CPU model, usable CPU count and
    the profiling :data:`HARNESS_VERSION`."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    key = json.dumps(
        {"runner": runner, "version": version, "options": dict(options), "cpu": cpu_model(),
         "cpus": cpus, "harness": HARNESS_VERSION},
        sort_keys=True, default=str,
    )
    return f"{runner}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class ProfileCache:
    """A SQLite file of profiles, device facts and calibrations (safe across processes)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._conn = self._open()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            conn.close()
            raise sqlite3.DatabaseError(f"foreign database (tables: {', '.join(sorted(tables))})")
        conn.executescript(_TABLES)
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("schema", SCHEMA), ("version", SCHEMA_VERSION)])
            conn.commit()
        elif rows.get("schema") != SCHEMA or rows.get("version") != SCHEMA_VERSION:
            conn.close()
            raise sqlite3.DatabaseError(
                f"foreign schema {rows.get('schema')!r} version {rows.get('version')!r}"
            )
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                if not self.path.is_file():
                    raise
                bad = self.path.with_name(self.path.name + ".bad")
                log.warning("profile cache %s is unusable (%s); moved to %s and rebuilt",
                            self.path, exc, bad)
                os.replace(self.path, bad)
                return self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise CostModelError(
                f"cannot open the profile cache {self.path}: {exc} (set HETPART_CACHE to a "
                "writable folder)"
            ) from None

    def close(self) -> None:
        self._conn.close()

    # -- profiles --------------------------------------------------------------------------
    def get(self, fingerprint: str, signature: str) -> ProfileRecord | None:
        """The record for ``signature`` under ``fingerprint``, or None."""
        row = self._conn.execute(
            "SELECT signature, op_type, flops, bytes, median_s, spread_s, repeats, error, best_s "
            "FROM profiles WHERE fingerprint = ? AND signature = ?", (fingerprint, signature)
        ).fetchone()
        return ProfileRecord(*row) if row else None

    def records(self, fingerprint: str) -> list[ProfileRecord]:
        """Every record under ``fingerprint`` (training samples for fitted models)."""
        rows = self._conn.execute(
            "SELECT signature, op_type, flops, bytes, median_s, spread_s, repeats, error, best_s "
            "FROM profiles WHERE fingerprint = ? ORDER BY signature", (fingerprint,)
        ).fetchall()
        return [ProfileRecord(*r) for r in rows]

    def put(self, fingerprint: str, record: ProfileRecord) -> None:
        """Insert or replace one record."""
        self._conn.execute(
            "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fingerprint, record.signature, record.op_type, record.flops, record.bytes,
             record.median_s, record.spread_s, record.repeats, record.error, record.best_s,
             time.time()),
        )
        self._conn.commit()

    # -- device facts (per-call overhead, peak FLOP/s, bandwidth) ---------------------------
    def get_fact(self, fingerprint: str, key: str) -> float | None:
        row = self._conn.execute(
            "SELECT value FROM facts WHERE fingerprint = ? AND key = ?", (fingerprint, key)
        ).fetchone()
        return float(row[0]) if row else None

    def put_fact(self, fingerprint: str, key: str, value: float) -> None:
        self._conn.execute("INSERT OR REPLACE INTO facts VALUES (?, ?, ?)",
                           (fingerprint, key, float(value)))
        self._conn.commit()

    # -- partitions timed as they run (compile-time measurement loop) -----------------------
    def get_plan_timing(self, key: str) -> PlanTiming | None:
        """The timing stored under ``key`` (``runtime.measure.timing_key``), or None."""
        row = self._conn.execute(
            "SELECT median_s, p10_s, p90_s, samples, noise_s, partition_s FROM plan_timings "
            "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        timing = Timing(float(row[0]), float(row[1]), float(row[2]), int(row[3]), float(row[4]))
        return PlanTiming(timing, tuple(float(x) for x in json.loads(row[5])))

    def put_plan_timing(self, key: str, timing: PlanTiming) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO plan_timings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, timing.timing.median_s, timing.timing.p10_s, timing.timing.p90_s,
             timing.timing.samples, timing.timing.noise_s, json.dumps(list(timing.partition_s)),
             time.time()))
        self._conn.commit()

    def plan_timing_count(self) -> int:
        """Rows of the partition-timing table."""
        return int(self._conn.execute("SELECT COUNT(*) FROM plan_timings").fetchone()[0])

    # -- whole-model calibrations (fusion factor) ------------------------------------------
    def put_calibration(self, fingerprint: str, model: str,
                        row: tuple[float, float, float, float, int]) -> None:
        """Record one whole-model calibration: (sum of alone-measured tensor-op latencies,
        sum over other ops, measured whole model minus overhead, overhead, node count)."""
        self._conn.execute("INSERT OR REPLACE INTO calibration VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (fingerprint, model, *row))
        self._conn.commit()

    def calibrations(self, fingerprint: str) -> dict[str, tuple[float, float, float, float, int]]:
        """model id -> (tensor sum, other sum, measured - overhead, overhead, nodes)."""
        rows = self._conn.execute(
            "SELECT model, tensor_sum_s, other_sum_s, measured_s, overhead_s, nodes "
            "FROM calibration WHERE fingerprint = ?", (fingerprint,),
        ).fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}
