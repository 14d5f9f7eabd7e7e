"""Argument parsing helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
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
        if any(d < 0 for d in parsed):
            raise ShapeError(f"--input-shape {value!r}: dimensions cannot be negative")
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


def _number(
    kind: Callable[[str], float],
    minimum: float,
    inclusive: bool,
    what: str,
    maximum: float | None = None,
) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if not math.isfinite(value):  # nan and inf parse as floats but mean nothing here
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite {what}")
        if value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"{text!r}: must be a {what}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be a {what} up to {maximum}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


#: argparse ``type=`` validators: a bad value exits 2 with a one-line message naming the flag.
positive_int = _number(int, 1, True, "positive integer")
non_negative_int = _number(int, 0, True, "non-negative integer")
positive_float = _number(float, 0.0, False, "positive number")
non_negative_float = _number(float, 0.0, True, "non-negative number")
#: Random seeds: CP-SAT takes a 32-bit seed and NumPy's generators a non-negative one.
seed_int = _number(int, 0, True, "non-negative integer", maximum=2**31 - 1)


def parse_device_list(text: str | None) -> list[str] | None:
    """``--devices a,b`` -> ``["a", "b"]``; None when not given; an empty list is an error."""
    if text is None:
        return None
    ids = [d.strip() for d in text.split(",") if d.strip()]
    if not ids:
        raise argparse.ArgumentTypeError(f"--devices {text!r}: name at least one device id")
    return ids


def ray_address(text: str) -> str:
    """``--ray ADDRESS``: refused when empty (an empty value would read as "not on Ray")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs an address: 'local', 'auto' or HOST:PORT")
    return text.strip()
