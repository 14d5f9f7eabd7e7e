"""Helpers shared by the runners: model sources, labels, CPU-affinity parsing, error wrapping,
and the one place where inputs as users pass them become what a runtime needs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from partitioner.errors import ClusterError, RunError
from partitioner.graph.loading import MAX_IR_VERSION
from partitioner.graph.shapes import DTYPES

ModelSource = onnx.ModelProto | str | Path


def model_label(model: ModelSource, options: Mapping[str, Any]) -> str:
    """A short name for error messages: ``options["label"]``, the file path or the graph name."""
    if options.get("label"):
        return str(options["label"])
    if isinstance(model, str | Path):
        return str(model)
    return model.graph.name or "<in-memory model>"


def load_proto(model: ModelSource, label: str, load_external: bool = True) -> onnx.ModelProto:
    """Return ``model`` as a ModelProto, loading it from disk when given a path."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model), load_external_data=load_external)
    except Exception as exc:  # onnx raises OSError, DecodeError, ValidationError...
        raise RunError(f"cannot load model {label}: {exc}") from exc


def model_bytes(model: onnx.ModelProto) -> bytes:
    """Serialise ``model`` with its IR version capped at :data:`MAX_IR_VERSION`."""
    if model.ir_version > MAX_IR_VERSION:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.ir_version = MAX_IR_VERSION
    return model.SerializeToString()


def parse_cpu_list(spec: Any, key: str = "affinity") -> tuple[int, ...]:
    """Parse a 0-based CPU list such as ``"0"``, ``"0,2"``, ``"0-3"`` or ``[0, 1]``.

    Raises:
        ClusterError: if the value is malformed or names a CPU this process may not use.
    """
    cpus: set[int] = set()
    items: list[Any]
    if isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, list | tuple):
        items = list(spec)
    else:
        items = [s for s in str(spec).replace(" ", "").split(",") if s]
    try:
        for item in items:
            if isinstance(item, str) and "-" in item:
                lo, hi = (int(x) for x in item.split("-", 1))
                cpus.update(range(lo, hi + 1))
            else:
                cpus.add(int(item))
    except ValueError:
        raise ClusterError(
            f"runner option {key}={spec!r}: expected CPU ids like '0', '0,1' or '0-3'"
        ) from None
    if not cpus or min(cpus) < 0:
        raise ClusterError(f"runner option {key}={spec!r}: expected non-negative CPU ids")
    allowed = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    missing = sorted(cpus - allowed)
    if missing:
        raise ClusterError(
            f"runner option {key}={spec!r}: CPU(s) {missing} are not available to this process "
            f"(allowed: {sorted(allowed)})"
        )
    return tuple(sorted(cpus))


def pin_thread(cpus: tuple[int, ...] | None) -> None:
    """Pin the calling thread to ``cpus`` for good (no-op for None or off Linux)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


@contextmanager
def thread_affinity(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Pin the calling thread (Linux: ``sched_setaffinity(0)`` is per thread) while inside."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def one_line(text: str) -> str:
    """``text`` on one line: runtimes' messages span several (OpenVINO's name source files)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def run_failure(runtime: str, label: str, exc: BaseException) -> RunError:
    """The one-line RunError for ``runtime`` raising ``exc`` while running ``label``."""
    return RunError(one_line(f"{runtime} failed running {label}: {exc}"))


def check_feeds(label: str, input_names: tuple[str, ...], feeds: Mapping[str, Any]) -> None:
    """Raise RunError listing every input of ``label`` that ``feeds`` lacks."""
    missing = [n for n in input_names if n not in feeds]
    if missing:
        raise RunError(f"{label}: missing input(s) {missing}; got {sorted(feeds)}")


# -- inputs as users pass them ---------------------------------------------------------------

#: ONNX Runtime's type string (``NodeArg.type``) -> this project's dtype name.
ORT_TYPE_NAMES: dict[str, str] = {
    f"tensor({onnx.TensorProto.DataType.Name(elem).lower()})": name
    for elem, (name, _) in DTYPES.items()
}

_OBJECT = np.dtype(object)


def numpy_dtype(name: str) -> np.dtype | None:
    """The NumPy dtype of a tensor dtype name (``"float32"``; ``"str"`` is ``object``).

    None for values that are not tensors (``sequence(float32)``, ``optional(...)``) and for
    element types NumPy lacks (bfloat16, float8): those are handed to the runtime as given.
    """
    if name == "str":
        return _OBJECT
    if "(" in name or name == "undefined":
        return None
    try:
        return np.dtype(name)
    except TypeError:
        return None


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a runtime needs for one input: a contiguous ndarray of ``dtype`` and ``shape``.

    Attributes:
        name: Input name.
        type_name: The declared type as this project names it (``float32``,
            ``sequence(float32)``), for messages.
        dtype: Its NumPy dtype; None when the value is not a tensor or NumPy has no such
            type (then the value passes unchecked).
        shape: Declared dimensions, None for a symbolic one; None when the rank is unknown.
    """

    name: str
    type_name: str
    dtype: np.dtype | None
    shape: tuple[int | None, ...] | None

    @classmethod
    def of(cls, name: str, type_name: str, shape: Iterable[Any] | None) -> InputSpec:
        dims = None if shape is None else tuple(d if isinstance(d, int) else None for d in shape)
        return cls(name, type_name, numpy_dtype(type_name), dims)

    def describe(self) -> str:
        """``float32[1,3,224,224]``; ``?`` marks a symbolic dimension."""
        if self.dtype is None or self.shape is None:
            return self.type_name
        return f"{self.type_name}[{','.join('?' if d is None else str(d) for d in self.shape)}]"


def onnx_input_specs(model: onnx.ModelProto) -> tuple[InputSpec, ...]:
    """The specs of ``model``'s graph inputs that are not initializers, in graph order."""
    from partitioner.graph.shapes import type_name

    init = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in init:
            continue
        shape: list[Any] | None = None
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shape = [
                d.dim_value if d.HasField("dim_value") else None
                for d in value.type.tensor_type.shape.dim
            ]
        specs.append(InputSpec.of(value.name, type_name(value.type), shape))
    return tuple(specs)


def conform(spec: InputSpec, value: Any, label: str = "", check_shape: bool = True) -> Any:
    """``value`` as the runtime needs it for ``spec``; raises a one-line RunError if it cannot.

    NumPy scalars, 0-d arrays, Python scalars and (nested) lists become a contiguous ndarray
    of the declared dtype when the cast keeps their meaning: bools go anywhere, integers to
    any integer type that holds their values and to floats, floats to any float type (a
    float64 array feeds a float32 input, as users expect), strings only to strings. A float
    for an integer input, a string for a number, or a shape whose rank or static dimensions
    differ from the declared ones is an error naming the input, what it expects and what it
    got, e.g. ``input 'x': expected float32[1,3,224,224], got float64[3,224,224]``. Values of
    non-tensor inputs (sequences, optionals) pass unchanged. ``check_shape=False`` leaves
    the shape to the runtime (see :func:`conform_feeds`).
    """
    dtype = spec.dtype
    if (
        type(value) is np.ndarray
        and value.dtype is dtype
        and (not check_shape or value.shape == spec.shape)
        and value.flags.c_contiguous
    ):
        return value
    if dtype is None:
        return value
    if not isinstance(value, np.ndarray | np.generic) and hasattr(value, "numpy"):
        value = value.numpy()  # an OrtValue, a torch tensor
    try:
        array = np.asarray(value)
    except Exception:  # ragged lists and the like
        raise _mismatch(spec, f"{type(value).__name__} {value!r:.60}", label) from None
    if (array.dtype != dtype and not _castable(array, dtype)) or (
        check_shape
        and spec.shape is not None
        and (
            array.ndim != len(spec.shape)
            or any(d is not None and d != n for d, n in zip(spec.shape, array.shape, strict=True))
        )
    ):
        raise _mismatch(spec, _describe(array), label)
    if array.dtype != dtype:
        array = array.astype(dtype)
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    return array if array.flags.c_contiguous else array.copy(order="C")


def conform_feeds(
    label: str, specs: tuple[InputSpec, ...], feeds: Mapping[str, Any]
) -> dict[str, Any]:
    """The inputs ``specs`` names, each through :func:`conform` (missing ones: RunError).

    Runners call this with their partition's declared inputs. Shapes are left to the
    runtime, which checks them itself: a partition's declared boundary shape can be
    narrower than what really flows (ONNX's fp16 Range expansion declares a scalar that
    is a [2] at run time, and ONNX Runtime runs it); the executor and the session check
    model inputs' shapes against the plan.
    """
    # The common case (an array of the right dtype) inline: this runs on every runner call,
    # where a function call per input cost ~0.5 us more than reading the feed.
    inputs: dict[str, Any] = {}
    try:
        for spec in specs:
            value = feeds[spec.name]
            if (
                type(value) is not np.ndarray
                or value.dtype is not spec.dtype
                or not value.flags.c_contiguous
            ):
                value = conform(spec, value, label, False)
            inputs[spec.name] = value
        return inputs
    except KeyError:
        check_feeds(label, tuple(s.name for s in specs), feeds)
        raise


def _castable(array: np.ndarray, dtype: np.dtype) -> bool:
    """True when ``array`` may become ``dtype`` without changing what it means."""
    given, wanted = array.dtype.kind, dtype.kind
    if wanted == "O":  # ONNX strings
        return given in "USO"
    if given in "USOV" or wanted == "b":
        return given == wanted
    if wanted in "iu":
        if given == "b" or np.can_cast(array.dtype, dtype):
            return True
        if given not in "iu":
            return False  # never truncate 1.5 to 1
        info = np.iinfo(dtype)
        return array.size == 0 or (info.min <= array.min() and array.max() <= info.max)
    if wanted == "f":
        return given in "biuf"
    if wanted == "c":
        return given in "biufc"
    return bool(np.can_cast(array.dtype, dtype, "same_kind"))


def _describe(array: np.ndarray) -> str:
    kind = array.dtype.kind
    name = "str" if kind in "US" else "object" if kind == "O" else str(array.dtype)
    return f"{name}[{','.join(str(d) for d in array.shape)}]"


def _mismatch(spec: InputSpec, given: str, label: str) -> RunError:
    prefix = f"{label}: " if label else ""
    return RunError(f"{prefix}input {spec.name!r}: expected {spec.describe()}, got {given}")
