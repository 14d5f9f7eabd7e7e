"""The zoo's disk cache: its folder, the key of a built model, and cleaning it."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

#: Bump when the cache layout or key changes, so stale entries are not reused.
ZOO_FORMAT = 1
#: The environment variable naming the cache folder.
CACHE_ENV = "HETPART_CACHE"
#: Libraries whose version changes what a builder writes.
_KEYED_PACKAGES = ("onnx", "torch", "onnxscript", "transformers")


def cache_dir() -> Path:
    """Return the cache folder: ``$HETPART_CACHE`` or ``~/.cache/hetpart/zoo``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "hetpart" / "zoo"


@functools.cache
def _builder_fingerprint() -> str:
    """Hash of the builder sources and library versions, read without importing torch.

    Editing any ``models/*.py`` builder or upgrading torch/onnx invalidates cached files.
    """
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        if source.name not in ("zoo.py", "cache.py", "__init__.py"):
            digest.update(source.name.encode() + source.read_bytes())
    for package in _KEYED_PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{package}={version};".encode())
    return digest.hexdigest()


def cache_key(name: str, params: Mapping[str, int | str]) -> str:
    """Return the 12-hex-digit key of a (model, resolved params, builder code) triple."""
    blob = json.dumps(
        {
            "format": ZOO_FORMAT,
            "name": name,
            "params": dict(params),
            "builders": _builder_fingerprint(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def clean_cache() -> tuple[int, int]:
    """Delete every cached model, its external data and any abandoned staging folder.

    Returns:
        ``(files removed, bytes freed)``.
    """
    root = cache_dir()
    files = freed = 0
    if not root.is_dir():
        return 0, 0
    for item in root.iterdir():
        if item.is_dir() and item.name.startswith("."):
            shutil.rmtree(item, ignore_errors=True)
        elif item.is_dir() and (item / "model.onnx").is_file():  # a folder model (llama)
            size = sum(f.stat().st_size for f in item.rglob("*") if f.is_file())
            shutil.rmtree(item, ignore_errors=True)
            freed += size
            files += 1
        elif item.is_file() and item.suffix in (".onnx", ".data"):
            freed += item.stat().st_size
            item.unlink()
            files += 1
    logger.info("removed %d files (%d bytes) from %s", files, freed, root)
    return files, freed
