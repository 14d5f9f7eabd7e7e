"""Inputs as users pass them, made into what a runtime needs; random and ``.npz`` feeds.

The one place where NumPy and Python scalars, 0-d arrays and lists become contiguous arrays
of an input's declared dtype (:func:`conform`), used by the executor for model inputs and by
every runner for its partition's inputs (:func:`conform_feeds`). Runners are plug-ins
(``backends/``): they import this core module, never the other way round.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from partitioner.errors import PartitionerError, RunError
from partitioner.graph.shapes import type_name

if TYPE_CHECKING:
    from partitioner.plan.types import TensorSpec


class InputError(PartitionerError):
    """An ``--inputs`` file does not match the model's inputs."""


def one_line(text: str) -> str:
    """``text`` on one line: runtimes' messages span several (OpenVINO's name source files)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def check_feeds(label: str, input_names: tuple[str, ...], feeds: Mapping[str, Any]) -> None:
    """Raise RunError listing every input of ``label`` that ``feeds`` lacks."""
    missing = [n for n in input_names if n not in feeds]
    if missing:
        raise RunError(f"{label}: missing input(s) {missing}; got {sorted(feeds)}")


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


def model_inputs(
    feeds: Mapping[str, Any], input_names: tuple[str, ...], specs: tuple[InputSpec, ...],
    passthrough: Callable[[Any], bool] | None = None,
) -> dict[str, Any]:
    """A whole model's ``feeds`` (every name of ``input_names``, nothing else), each input
    conformed to its spec but those ``passthrough`` accepts (an executor's own device values,
    fed back: the runner that reads them checks them); one RunError lists every missing and
    unknown name."""
    if not isinstance(feeds, Mapping):
        raise RunError(f"inputs must map each input name to its value (as in "
                       f"onnxruntime's run), got a {type(feeds).__name__}; the model's "
                       f"inputs are {list(input_names)}")
    missing = [n for n in input_names if n not in feeds]
    unknown = sorted(set(feeds) - set(input_names))
    if missing or unknown:
        raise RunError(f"the model's inputs are {list(input_names)}: "
                       + "; ".join(filter(None, (f"missing {missing}" if missing else "",
                                                f"unknown {unknown}" if unknown else ""))))
    values = dict(feeds)
    for spec in specs:
        if passthrough is None or not passthrough(values[spec.name]):
            values[spec.name] = conform(spec, values[spec.name])
    return values


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


# -- feeds for a whole model: random, or from an .npz file -------------------------------------


def random_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds of the right shapes and dtypes.

    Floats are standard normal; integers lie in the input's ``value_range`` (e.g. the
    vocabulary size of the embedding it indexes) or in [0, 2); booleans are fair coins.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
        elif dtype.kind in "iu":
            low, high = spec.value_range or (0, 2)
            feeds[spec.name] = rng.integers(low, max(high, low + 1), spec.shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, spec.shape).astype(bool)
        else:
            raise InputError(
                f"input {spec.name!r} has dtype {spec.dtype}; pass it with --inputs FILE.npz"
            )
    return feeds


def load_inputs(path: str | Path, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Read feeds from an ``.npz`` file, checking names, shapes and dtypes.

    Raises:
        InputError: unreadable file, or every missing/unknown name and every wrong shape or
            dtype, in one message.
    """
    file = Path(path)
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"--inputs {file}: cannot read as .npz: {exc}") from None
    problems: list[str] = []
    wanted = {s.name: s for s in specs}
    missing = [n for n in wanted if n not in arrays]
    if missing:
        problems.append(f"missing input(s) {missing}")
    extra = sorted(set(arrays) - set(wanted))
    if extra:
        problems.append(f"unknown name(s) {extra} (model inputs: {sorted(wanted)})")
    for name, spec in wanted.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if tuple(array.shape) != tuple(spec.shape):
            problems.append(f"{name!r} has shape {list(array.shape)}, expected {list(spec.shape)}")
        if array.dtype != np.dtype(spec.dtype):
            problems.append(f"{name!r} has dtype {array.dtype}, expected {spec.dtype}")
    if problems:
        raise InputError(f"--inputs {file}: " + "; ".join(problems))
    return {name: arrays[name] for name in wanted}
