"""Benchmarks behind ``make bench``: each module exposes ``run(quick: bool) -> str`` (Markdown)."""
