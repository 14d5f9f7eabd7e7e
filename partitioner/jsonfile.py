"""Reading a JSON object from a file, every failure one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from partitioner.errors import PartitionerError


def read_json_object(path: Path, error: type[PartitionerError], what: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` naming the file when it cannot be read, is not
    JSON or holds something other than an object (``what`` says what was being read)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read{f' {what}' if what else ''}: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data
