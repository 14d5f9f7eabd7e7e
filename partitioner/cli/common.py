"""Argument parsing helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from partitioner.errors import ShapeError


def parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse repeated ``--input-shape NAME=1,3,224,224`` into ``{name: dims}``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or []:
        name, sep, dims = value.rpartition("=")
        if not sep or not name:
            raise ShapeError(f"--input-shape {value!r}: expected NAME=D1,D2,... ")
        try:
            parsed = tuple(int(d) for d in dims.split(",") if d.strip() != "")
        except ValueError:
            raise ShapeError(
                f"--input-shape {value!r}: dimensions must be integers, got {dims!r}"
            ) from None
        if any(d <= 0 for d in parsed):
            raise ShapeError(f"--input-shape {value!r}: dimensions must be positive")
        shapes[name] = parsed
    return shapes


def add_input_shape_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME=D1,D2,...",
        help="concrete shape for a model input with symbolic dimensions (repeatable)",
    )


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
