"""``python -m partitioner.benchmarks``: run every benchmark and write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import sys
import time
from pathlib import Path

#: Benchmark modules in report order; each exposes ``run(quick: bool) -> str`` (Markdown).
MODULES = (
    "analysis",
    "zoo",
    "cost_accuracy",
    "plan_accuracy",
    "compile_time",
    "solver_quality",
    "execution",
    "local_hetero",
    "generation_run",
    "generation_fleets",
    "ray_overhead",
    "generation_ray",
)

HEADER = """# Benchmarks

Produced by `{command}` on {machine} ({cores} cores), Python {python}.
This machine has no GPU: numbers are ratios measured side by side in one run, not absolute
claims. Rerun the command to refresh this file.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partitioner.benchmarks")
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--only", action="append", help="run only these modules")
    args = parser.parse_args(argv)

    command = "make bench" if not args.quick else "make bench BENCH_ARGS=--quick"
    sections = [
        HEADER.format(
            command=command,
            machine=platform.processor() or platform.machine(),
            cores=os.cpu_count(),
            python=platform.python_version(),
        )
    ]
    for name in args.only or MODULES:
        try:
            module = importlib.import_module(f"partitioner.benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"partitioner.benchmarks.{name}":
                continue
            raise
        started = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        section = module.run(quick=args.quick)
        elapsed = time.perf_counter() - started
        print(f"bench: {name} done in {elapsed:.1f} s", file=sys.stderr, flush=True)
        print(section, flush=True)
        sections.append(section.rstrip() + f"\n\n_(section ran in {elapsed:.1f} s)_\n")
    out = Path(args.out)
    if args.only and out.exists():
        # A partial run replaces its own sections and keeps the others' latest numbers.
        text = splice(out.read_text(), sections[1:])
    else:
        text = "\n".join(sections)
    out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def splice(document: str, sections: list[str]) -> str:
    """``document`` with each of ``sections`` in place of the one with its ``## `` title
    (appended when it has none)."""
    parts = re.split(r"(?m)^(?=## )", document)
    head, old = parts[0], parts[1:]
    titles = [part.splitlines()[0] for part in old]
    for section in sections:
        title = section.lstrip().splitlines()[0]
        text = section.lstrip().rstrip() + "\n\n"
        if title in titles:
            old[titles.index(title)] = text
        else:
            old.append(text)
            titles.append(title)
    return head + "".join(old).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
