"""Concrete shapes: dtype sizes, --input-shape substitution, shape inference and its fallback."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from partitioner.errors import ShapeError

logger = logging.getLogger(__name__)

_T = onnx.TensorProto
#: ONNX element type -> (numpy-style name, bits per element).
DTYPES: dict[int, tuple[str, int]] = {
    _T.FLOAT: ("float32", 32), _T.UINT8: ("uint8", 8), _T.INT8: ("int8", 8),
    _T.UINT16: ("uint16", 16), _T.INT16: ("int16", 16), _T.INT32: ("int32", 32),
    _T.INT64: ("int64", 64), _T.STRING: ("str", 64), _T.BOOL: ("bool", 8),
    _T.FLOAT16: ("float16", 16), _T.DOUBLE: ("float64", 64), _T.UINT32: ("uint32", 32),
    _T.UINT64: ("uint64", 64), _T.COMPLEX64: ("complex64", 64),
    _T.COMPLEX128: ("complex128", 128), _T.BFLOAT16: ("bfloat16", 16),
    _T.FLOAT8E4M3FN: ("float8_e4m3fn", 8), _T.FLOAT8E4M3FNUZ: ("float8_e4m3fnuz", 8),
    _T.FLOAT8E5M2: ("float8_e5m2", 8), _T.FLOAT8E5M2FNUZ: ("float8_e5m2fnuz", 8),
    _T.UINT4: ("uint4", 4), _T.INT4: ("int4", 4), _T.FLOAT4E2M1: ("float4_e2m1", 4),
}
for _name, _bits in (("FLOAT8E8M0", 8), ("UINT2", 2), ("INT2", 2), ("FLOAT6E2M3", 6),
                     ("FLOAT6E3M2", 6)):
    if hasattr(_T, _name):
        DTYPES[getattr(_T, _name)] = (_name.lower(), _bits)

#: Integer initializers up to this many elements keep their data in the shape-inference
#: copy (so data propagation can read shape constants); others are passed as data-less stubs.
SMALL_INITIALIZER_ELEMENTS = 4096
_SHAPE_DTYPES = frozenset({_T.INT64, _T.INT32})

#: name -> (elem_type, dims); dims is None when the shape is unknown or symbolic.
ShapeTable = dict[str, tuple[int, tuple[int, ...] | None]]


def dtype_bits(elem_type: int) -> int:
    """Bits per element of an ONNX element type (0 if unknown)."""
    return DTYPES.get(elem_type, ("", 0))[1]


def dtype_name(elem_type: int) -> str:
    """Numpy-style dtype name of an ONNX element type (``"undefined"`` if unknown)."""
    return DTYPES.get(elem_type, ("undefined", 0))[0]


def tensor_nbytes(elem_type: int, dims: Sequence[int]) -> int:
    """Bytes of a dense tensor (sub-byte types packed, rounded up)."""
    numel = 1
    for d in dims:
        numel *= d
    return (numel * dtype_bits(elem_type) + 7) // 8


def _dims_of(type_proto: onnx.TypeProto) -> tuple[int, tuple[int, ...] | None]:
    tt = type_proto.tensor_type
    elem = tt.elem_type
    if not elem and not type_proto.HasField("tensor_type"):
        return 0, None
    dims = tt.shape.dim
    values = tuple([d.dim_value for d in dims])
    if values and min(values) > 0:
        return elem, values
    if not tt.HasField("shape"):
        return elem, None
    # Slow path: a 0 is either an explicit empty dimension or a symbolic/missing one.
    if any(not d.HasField("dim_value") or d.dim_value < 0 for d in dims):
        return elem, None
    return elem, values


def type_name(type_proto: onnx.TypeProto) -> str:
    """Readable name of a value type: ``float32``, ``sequence(float32)``, ``optional(...)``."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return dtype_name(type_proto.tensor_type.elem_type)
    if kind == "sparse_tensor_type":
        return f"sparse({dtype_name(type_proto.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"sequence({type_name(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({type_name(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        key = dtype_name(type_proto.map_type.key_type)
        return f"map({key},{type_name(type_proto.map_type.value_type)})"
    return "undefined"


def shape_table(
    graph: onnx.GraphProto,
    into: ShapeTable | None = None,
    initializers: bool = True,
    others: dict[str, onnx.TypeProto] | None = None,
) -> ShapeTable:
    """Collect element types and concrete dims of a graph's values (not recursing).

    Args:
        graph: The graph: inputs, value_info, outputs and initializers are read.
        into: Table to extend (entries already there win for unknown shapes).
        initializers: Whether to read initializers too.
        others: When given, receives the type of every value that is not a tensor
            (sequence, optional, map); such values have no shape and stay ``(0, None)``
            in the table.

    Returns:
        The table, ``name -> (elem_type, dims or None)``.
    """
    table: ShapeTable = {} if into is None else into
    for vi in (*graph.input, *graph.value_info, *graph.output):
        elem, dims = _dims_of(vi.type)
        if not elem and others is not None:
            kind = vi.type.WhichOneof("value")
            if kind is not None and kind != "tensor_type":
                others[vi.name] = vi.type
        if dims is not None or vi.name not in table:
            table[vi.name] = (elem, dims)
    if initializers:
        for init in graph.initializer:
            table[init.name] = (init.data_type, tuple(init.dims))
    return table


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old models list weights as inputs too)."""
    inits = {t.name for t in graph.initializer}
    return [vi for vi in graph.input if vi.name not in inits]


def apply_input_shapes(
    graph: onnx.GraphProto, input_shapes: Mapping[str, Sequence[int]], source: str
) -> None:
    """Write user-given concrete shapes into the graph inputs, checking rank and fixed dims.

    Raises:
        ShapeError: An unknown input name (the real inputs are listed), a rank mismatch,
            or a conflict with a fixed dimension.
    """
    inputs = {vi.name: vi for vi in real_inputs(graph)}
    unknown = [name for name in input_shapes if name not in inputs]
    if unknown:
        raise ShapeError(
            f"{source}: --input-shape names {', '.join(repr(n) for n in unknown)}, which "
            f"{'is not an input' if len(unknown) == 1 else 'are not inputs'}; the model's "
            f"inputs are {', '.join(repr(n) for n in inputs) or '(none)'}"
        )
    for name, dims in input_shapes.items():
        tt = inputs[name].type.tensor_type
        if tt.HasField("shape"):
            old = tt.shape.dim
            if len(old) != len(dims):
                raise ShapeError(
                    f"{source}: --input-shape {name}={','.join(map(str, dims))} has rank "
                    f"{len(dims)}, input {name!r} has rank {len(old)}"
                )
            for i, (d, new) in enumerate(zip(old, dims, strict=True)):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != new:
                    raise ShapeError(
                        f"{source}: --input-shape {name}: dimension {i} is fixed to "
                        f"{d.dim_value} in the model, got {new}"
                    )
        tt.ClearField("shape")
        shape = tt.shape
        shape.SetInParent()  # a scalar has a shape with no dims, not an unknown rank
        for new in dims:
            shape.dim.add().dim_value = int(new)


def check_inputs_concrete(graph: onnx.GraphProto, source: str) -> None:
    """Fail with the exact ``--input-shape`` to pass if any input has a non-concrete dim.

    Raises:
        ShapeError: Naming each input, dimension index and symbol, and the flags to pass.
    """
    problems: list[str] = []
    flags: list[str] = []
    for vi in real_inputs(graph):
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            problems.append(f"input {vi.name!r} has unknown rank")
            flags.append(f"--input-shape {vi.name}=D1,D2,...")
            continue
        bad = []
        suggestion = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value >= 0:  # 0 is an empty dimension
                suggestion.append(str(d.dim_value))
            else:
                symbol = d.dim_param if d.HasField("dim_param") else "?"
                bad.append(f"dimension {i} ({symbol!r})")
                suggestion.append("1")
        if bad:
            problems.append(f"input {vi.name!r} has symbolic {', '.join(bad)}")
            flags.append(f"--input-shape {vi.name}={','.join(suggestion)}")
    if problems:
        raise ShapeError(
            f"{source}: {'; '.join(problems)}; give concrete sizes, e.g. {' '.join(flags)}"
        )


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy for shape inference: big initializers as data-less stubs, no stale value_info."""
    sk = onnx.ModelProto()
    sk.ir_version = model.ir_version
    sk.opset_import.extend(model.opset_import)
    sk.functions.extend(model.functions)
    g, src = sk.graph, model.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    for out in src.output:
        vi = g.output.add()
        vi.name = out.name
        if out.type.HasField("tensor_type"):
            vi.type.tensor_type.elem_type = out.type.tensor_type.elem_type
        else:
            vi.type.CopyFrom(out.type)
    for init in src.initializer:
        numel = 1
        for d in init.dims:
            numel *= d
        if numel <= 16 or (init.data_type in _SHAPE_DTYPES and numel <= SMALL_INITIALIZER_ELEMENTS):
            g.initializer.append(init)
        else:
            stub = g.initializer.add()
            stub.name = init.name
            stub.data_type = init.data_type
            stub.dims.extend(init.dims)
    g.sparse_initializer.extend(src.sparse_initializer)
    return sk


def infer(model: onnx.ModelProto, source: str) -> onnx.GraphProto:
    """Run onnx shape inference (strict, with data propagation) on a data-less copy.

    Works for models over 2 GiB since large initializer data is never serialized.

    Returns:
        The inferred graph (read its ``value_info``/``output``); never the caller's model.
    """
    sk = _skeleton(model)
    try:
        return onnx.shape_inference.infer_shapes(sk, strict_mode=True, data_prop=True).graph
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        logger.warning("%s: strict shape inference failed (%s); retrying leniently", source, first)
        try:
            return onnx.shape_inference.infer_shapes(sk, strict_mode=False, data_prop=True).graph
        except Exception as exc2:  # onnx raises several unrelated types here
            raise ShapeError(f"{source}: shape inference failed: {exc2}") from None


def shapes_by_running(model: onnx.ModelProto, names: Sequence[str], table: ShapeTable,
                      source: str, samples: Mapping[str, Any] | None = None,
                      ) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Fallback: run the model on onnxruntime and read the named values' shapes.

    Inputs are the given ``samples`` where there are some, else zeros of the input's shape
    (shapes that depend on input *values*, e.g. a size read from an input, then come out of
    the zeros; pass real samples for those).

    Args:
        model: The model (data loaded, inputs with concrete shapes).
        names: Values whose shapes onnx inference left unknown.
        table: Known element types.
        source: Model name for messages.
        samples: Example input values by input name (arrays, or lists/None for sequence
            and optional inputs).

    Returns:
        ``name -> (elem_type, dims)`` for each requested value.

    Raises:
        ShapeError: A non-tensor input has no sample, onnxruntime cannot run the model,
            or a requested value is not a tensor.
    """
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.ClearField("value_info")
    existing = {o.name for o in m.graph.output}
    for name in names:
        if name in existing:
            continue
        vi = m.graph.output.add()
        vi.name = name
        elem = table.get(name, (0, None))[0]
        if elem:
            vi.type.tensor_type.elem_type = elem
    feeds: dict[str, Any] = {}
    samples = samples or {}
    for vi in real_inputs(m.graph):
        if vi.name in samples:
            feeds[vi.name] = samples[vi.name]
            continue
        elem, dims = _dims_of(vi.type)
        if dims is None:  # a sequence/optional input: no zeros can stand in for it
            raise ShapeError(f"input {vi.name!r} is a {type_name(vi.type)} and no example "
                             "value of it was given")
        feeds[vi.name] = np.zeros(dims, dtype=onnx.helper.tensor_dtype_to_np_dtype(elem))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        outputs = sess.run(list(names), feeds)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShapeError(message) from None
    result: dict[str, tuple[int, tuple[int, ...]]] = {}
    for name, value in zip(names, outputs, strict=True):
        if not isinstance(value, np.ndarray | np.generic):
            raise ShapeError(f"value {name!r} is a {type(value).__name__}, not a tensor")
        arr = np.asarray(value)
        elem = _T.STRING if arr.dtype == object else int(
            onnx.helper.np_dtype_to_tensor_dtype(arr.dtype))
        result[name] = (elem, tuple(int(d) for d in arr.shape))
    return result
