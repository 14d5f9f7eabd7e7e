"""Writing measured links between hosts into a cluster file, keeping everything else.

There is no TOML writer among hetpart's dependencies, and a rewrite from parsed data would drop
the user's comments and layout, so the file is edited as text: every ``[[link]]`` table that
joins devices on two measured hosts is cut out (its trailing comments stay, they may introduce
the next table), and one ``[[link]]`` per ordered pair of devices on two measured hosts is
appended, with the measured bandwidth and latency. A cut link's ``copy_engine`` carries over.
The result is parsed again and must equal the original in every key but ``link`` (and hold the
kept links unchanged, in order) before it replaces the file atomically (a temporary file in the
same directory, then ``os.replace``, the file's mode kept). Comment lines this module writes
start with :data:`MARK` and are replaced on the next measurement.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partitioner.cluster.file import _expand_use, _read_toml, cluster_from_dict
from partitioner.errors import ClusterError

#: Prefix of the comment lines written with measured links.
MARK = "# hetpart profile --links:"
_LINK_HEADER = re.compile(r"^\s*\[\[\s*link\s*\]\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[\[?\s*[A-Za-z0-9_.\"' -]+\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class MeasuredLink:
    """One measured direction between two hosts."""

    src_host: str
    dst_host: str
    bandwidth: float  # bytes per second
    latency_s: float


def file_hosts(path: str | Path) -> dict[str, list[str]]:
    """Host -> the ids of its ``[[device]]`` tables as written (a counted device's base id,
    which a link joins to every instance), for devices that name a host.

    Raises:
        ClusterError: the file is invalid, or no device names a host.
    """
    path = Path(path)
    data = _read_toml(path)
    cluster_from_dict(data, str(path), path.stem)  # the whole file valid, first
    hosts: dict[str, list[str]] = {}
    for i, table in enumerate(data.get("device", [])):
        device = _expand_use(table, f"{path}: device #{i + 1}")
        if device.get("host"):
            hosts.setdefault(str(device["host"]), []).append(str(device["id"]))
    if not hosts:
        raise ClusterError(f"{path}: no device names a host; add host = \"NAME\" to each "
                           "[[device]] table (the machine it is on) to measure links between "
                           "hosts")
    if len(hosts) < 2:
        raise ClusterError(f"{path}: every device is on host {next(iter(hosts))!r}; links are "
                           "measured between two or more hosts")
    return hosts


def format_rate(bandwidth: float) -> str:
    """``1.234GB/s``-style: four significant digits in the largest fitting SI unit."""
    for factor, unit in ((1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s")):
        if bandwidth >= factor:
            return f"{bandwidth / factor:.4g}{unit}"
    return f"{bandwidth:.4g}B/s"


def _blocks(lines: Sequence[str]) -> list[tuple[int, int]]:
    """(first, end) line ranges of each ``[[link]]`` table: from its header to its last line
    that is neither blank nor a comment (comments after it may belong to the next table)."""
    blocks = []
    for i, line in enumerate(lines):
        if not _LINK_HEADER.match(line):
            continue
        end = next((j for j in range(i + 1, len(lines)) if _ANY_HEADER.match(lines[j])),
                   len(lines))
        while end > i + 1 and (not lines[end - 1].strip()
                               or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        blocks.append((i, end))
    return blocks


def updated_text(path: str | Path, measured: Sequence[MeasuredLink],
                 heading: Sequence[str]) -> str:
    """The cluster file's text with the links between measured hosts replaced by ``measured``.

    Args:
        path: The cluster file.
        measured: Measured directions between hosts the file names.
        heading: Comment lines (without ``#``) written above the new links.

    Raises:
        ClusterError: the file is invalid, names no hosts, writes its links other than as
            ``[[link]]`` tables, or a host in ``measured`` is not in the file.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    hosts = file_hosts(path)
    for m in measured:
        for host in (m.src_host, m.dst_host):
            if host not in hosts:
                raise ClusterError(f"{path}: no device names host {host!r}")
    host_of = _host_of(data, hosts, path)
    measured_hosts = {h for m in measured for h in (m.src_host, m.dst_host)}

    def superseded(link: Mapping[str, Any]) -> bool:
        a, b = host_of.get(str(link.get("src"))), host_of.get(str(link.get("dst")))
        return a is not None and b is not None and a != b and {a, b} <= measured_hosts

    links = list(data.get("link", []))
    lines = text.splitlines()
    blocks = _blocks(lines)
    if len(blocks) != len(links):
        raise ClusterError(f"{path}: its links are not all [[link]] tables ({len(blocks)} "
                           f"found for {len(links)} links); write each as a [[link]] table to "
                           "let hetpart update them")
    engines: dict[tuple[str, str], bool] = {}
    drop: set[int] = set()
    for (first, end), link in zip(blocks, links, strict=True):
        if not superseded(link):
            continue
        # The blank lines after it too, when one comes before it: no gap left doubled.
        after = end
        while first > 0 and not lines[first - 1].strip() and after < len(lines) \
                and not lines[after].strip():
            after += 1
        drop.update(range(first, after))
        if "copy_engine" in link:
            pairs = [(link["src"], link["dst"])]
            if link.get("bidirectional"):
                pairs.append((link["dst"], link["src"]))
            engines.update({pair: bool(link["copy_engine"]) for pair in pairs})
    kept = [line for i, line in enumerate(lines) if i not in drop and not line.startswith(MARK)]
    while kept and not kept[-1].strip():
        kept.pop()
    out = kept + [""] + [f"{MARK} {line}".rstrip() for line in heading]
    for m in measured:
        for src in hosts[m.src_host]:
            for dst in hosts[m.dst_host]:
                out += ["[[link]]", f'src = "{src}"', f'dst = "{dst}"',
                        f'bandwidth = "{format_rate(m.bandwidth)}"',
                        f"latency_us = {m.latency_s * 1e6:.1f}"]
                if (src, dst) in engines:
                    out.append(f"copy_engine = {'true' if engines[(src, dst)] else 'false'}")
                out.append("")
    new_text = "\n".join(out).rstrip("\n") + "\n"
    _verify(path, data, new_text, [lk for lk in links if not superseded(lk)])
    return new_text


def _host_of(data: Mapping[str, Any], hosts: Mapping[str, list[str]],
             path: Path) -> dict[str, str]:
    """Device id as links may name it (base id or a counted instance's) -> its host."""
    host_of = {d: h for h, ids in hosts.items() for d in ids}
    for device in cluster_from_dict(data, str(path), path.stem).devices:
        if device.host:
            host_of.setdefault(device.id, device.host)
    return host_of


def _verify(path: Path, before: Mapping[str, Any], new_text: str,
            kept: Sequence[Mapping[str, Any]]) -> None:
    """The edited text parses, changes nothing but the links, and is a valid cluster."""
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise ClusterError(f"{path}: cannot update its links as text ({exc}); nothing written"
                           ) from None
    same = {k: v for k, v in before.items() if k != "link"} == {
        k: v for k, v in after.items() if k != "link"}
    if not same or list(after.get("link", []))[:len(kept)] != list(kept):
        raise ClusterError(f"{path}: updating its links as text would change other keys "
                           "(a table header inside a multi-line value?); nothing written")
    cluster_from_dict(after, str(path), path.stem)


def write_text_atomically(target: str | Path, text: str, like: str | Path | None = None) -> Path:
    """Replace ``target`` with ``text`` all at once (a temporary file beside it, then
    ``os.replace``), with the mode of ``like`` (default: ``target``'s, when it exists)."""
    target = Path(target)
    source = Path(like) if like is not None else target
    mode = source.stat().st_mode & 0o777 if source.exists() else None
    fd, staging = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(staging, mode)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return target
