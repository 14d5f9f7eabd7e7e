"""The ``hetpart`` command line: the composition root that wires core, cost models and runners.

Each sub-command lives in its own module here and exposes ``register(subparsers)``, which
adds its parser and sets ``func(args) -> int``. Only this package prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn

from partitioner.errors import PartitionerError

#: Sub-command modules, in the order ``hetpart --help`` lists them.
COMMAND_MODULES = (
    "zoo_cmd",
    "inspect_cmd",
    "devices_cmd",
    "profile_cmd",
    "compile_cmd",
    "run_cmd",
    "report_cmd",
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="hetpart",
        description="Compile ONNX models into heterogeneous placement plans, run and explain them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"partitioner.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"partitioner.cli.{module_name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad command line already reported in one line
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="hetpart: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PartitionerError as exc:
        print(f"hetpart: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # Paths the user named that cannot be read or written (a file where a folder is
        # expected, no permission, a full disk): the OS message names the path.
        print(f"hetpart: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hetpart: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
