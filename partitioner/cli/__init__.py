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
    "generate_cmd",
    "ray_node_cmd",
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def version_line() -> str:
    """``hetpart 0.1.0 (onnxruntime 1.22.0, openvino 2025.1.0, ortools 9.12.4544)``."""
    from partitioner.versions import format_versions, toolchain_versions

    versions = dict(toolchain_versions())
    head = f"hetpart {versions.pop('hetpart')}"
    return f"{head} ({format_versions(versions)})" if versions else head


class _VersionAction(argparse.Action):
    """``--version``: print :func:`version_line` and exit 0 (versions are read only then)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object):
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="print the versions of hetpart, onnxruntime, openvino and ortools, and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_line())
        parser.exit()


def _verbose_everywhere(parser: argparse.ArgumentParser, seen: set[int] | None = None) -> None:
    """Accept ``-v/--verbose`` after every (nested) sub-command too: ``hetpart compile -v``.

    The sub-commands' copy defaults to SUPPRESS, so it never resets a ``-v`` given before the
    sub-command."""
    seen = set() if seen is None else seen
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            if id(child) in seen:
                continue
            seen.add(id(child))
            if "-v" not in child._option_string_actions:
                child.add_argument(
                    "-v",
                    "--verbose",
                    action="store_true",
                    default=argparse.SUPPRESS,
                    help="log progress details",
                )
            _verbose_everywhere(child, seen)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="hetpart",
        description="Compile ONNX models into heterogeneous placement plans, run and explain them.",
    )
    parser.add_argument("--version", action=_VersionAction)
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
    _verbose_everywhere(parser)
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
