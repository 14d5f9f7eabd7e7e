"""The ``hetpart zoo`` command: ``list [NAME]``, ``build NAME [--param k=v] -o FILE``, ``clean``.

Folder models (``llama``) take ``--size`` and ``--layout`` and write a folder: ``hetpart zoo
build llama --size llama-tiny --layout genai -o DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from partitioner.errors import ModelError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``zoo`` command and its ``list`` / ``build`` sub-commands."""
    parser = subparsers.add_parser("zoo", help="list and build the model zoo's ONNX models")
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _usage(parser))

    list_parser = sub.add_parser("list", help="table of models with their default params")
    list_parser.add_argument(
        "name", nargs="?", metavar="NAME", help="show one model's params with their meaning"
    )
    list_parser.set_defaults(func=_list)

    build_parser = sub.add_parser("build", help="build (or take from the cache) one model")
    build_parser.add_argument("name", metavar="NAME", help="model name (see `hetpart zoo list`)")
    build_parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a default parameter (repeatable)",
    )
    build_parser.add_argument(
        "--size", metavar="SIZE", help="shorthand for --param size=SIZE (llama: llama-tiny, "
        "llama-small)")
    build_parser.add_argument(
        "--layout", metavar="LAYOUT", help="shorthand for --param layout=LAYOUT (llama: "
        "optimum, genai)")
    build_parser.add_argument(
        "-o", "--output", type=Path, metavar="FILE.onnx|DIR",
        help="where to write the model (a folder for folder models such as llama)"
    )
    build_parser.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    build_parser.set_defaults(func=_build)

    clean_parser = sub.add_parser("clean", help="delete every cached zoo model")
    clean_parser.set_defaults(func=_clean)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _print_table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for first, second, third in rows:
        print(f"{first:<{widths[0]}}  {second:<{widths[1]}}  {third}".rstrip())


def _list(args: argparse.Namespace) -> int:
    from models.zoo import get_entry, list_models

    if args.name:
        entry = get_entry(args.name)
        print(f"{entry.name}: {entry.description}")
        rows = [("PARAM", "DEFAULT", "MEANING")]
        for p in entry.params:
            allowed = f"one of {', '.join(p.choices)}" if p.choices else f"integer >= {p.minimum}"
            rows.append((p.name, str(p.default), f"{p.help} ({allowed})"))
        _print_table(rows)
        return 0
    rows = [("NAME", "DESCRIPTION", "DEFAULT PARAMS")]
    for entry in list_models():
        params = " ".join(f"{k}={v}" for k, v in entry.defaults.items())
        rows.append((entry.name, entry.description, params))
    _print_table(rows)
    return 0


def parse_params(values: list[str]) -> dict[str, str]:
    """Parse repeated ``--param KEY=VALUE`` into ``{key: value}`` (values stay strings).

    Raises:
        ModelError: An item without ``=``, an empty key, or a key given twice.
    """
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ModelError(f"--param {item!r}: expected KEY=VALUE")
        if key in params:
            raise ModelError(f"--param {key!r} given twice")
        params[key] = value.strip()
    return params


def _build(args: argparse.Namespace) -> int:
    from models.zoo import build

    params = parse_params(args.param)
    for key in ("size", "layout"):
        value = getattr(args, key)
        if value is not None:
            if key in params:
                raise ModelError(f"--{key} and --param {key}=... both given")
            params[key] = value
    path = build(args.name, params, out=args.output, overwrite=args.force)
    print(path)
    return 0


def _clean(args: argparse.Namespace) -> int:
    from models.zoo import cache_dir, clean_cache

    files, freed = clean_cache()
    print(f"removed {files} files ({freed / 2**20:.1f} MiB) from {cache_dir()}")
    return 0
