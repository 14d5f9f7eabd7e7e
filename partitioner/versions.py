"""Versions of hetpart and of the libraries that shape a plan, read from package metadata.

``plan.json`` records them (``compiled_with``) and ``hetpart --version`` prints them. Nothing
is imported to find a version (importing OpenVINO alone takes seconds), and a library that is
not installed has the version None.
"""

from __future__ import annotations

import functools
from importlib import metadata

from partitioner._version import __version__

#: Library -> the distributions that provide it, in the order they are tried.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": (
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxruntime-openvino",
        "onnxruntime-directml",
        "onnxruntime-qnn",
        "onnxruntime-rocm",
        "ort-nightly",
        "ort-nightly-gpu",
    ),
    "openvino": ("openvino", "openvino-nightly"),
    "ortools": ("ortools",),
}


def installed_version(*distributions: str) -> str | None:
    """The version of the first of ``distributions`` that is installed, else None."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def toolchain_versions() -> dict[str, str | None]:
    """``{"hetpart": ..., "onnxruntime": ..., "openvino": ..., "ortools": ...}`` (None: not
    installed), in that order."""
    return {"hetpart": __version__} | {
        library: installed_version(*names) for library, names in DISTRIBUTIONS.items()
    }


def format_versions(versions: dict[str, str | None]) -> str:
    """``"hetpart 0.1.0, onnxruntime 1.22.0, openvino not installed, ortools 9.12"``."""
    return ", ".join(f"{k} {v if v is not None else 'not installed'}" for k, v in versions.items())
