"""Loading ONNX models from files or protos, with safe external data and clear errors."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from partitioner.errors import ModelError
from partitioner.graph.shapes import tensor_nbytes

logger = logging.getLogger(__name__)

#: Highest IR version onnxruntime 1.31 loads is 13; 10 is accepted by every runner we use.
MAX_IR_VERSION = 10


@dataclass
class LoadedModel:
    """A parsed model with its data in memory.

    Attributes:
        model: The ModelProto, external data loaded, ``ir_version`` capped.
        source: The path given, or ``"<ModelProto>"``.
        name: Human-readable name (file stem or graph name).
        sha256: SHA-256 of the serialized model as given (external data excluded).
        base_dir: Folder of the file (where external data lives), or ``None``.
    """

    model: onnx.ModelProto
    source: str
    name: str
    sha256: str
    base_dir: Path | None


def iter_graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Yield every TensorProto in ``graph``: initializers and attribute tensors, recursively.

    Args:
        graph: The graph to walk (subgraphs of If/Loop/Scan included).

    Yields:
        Each initializer and each tensor stored in a node attribute.
    """
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from iter_graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from iter_graph_tensors(sub)


def _external_location(tensor: onnx.TensorProto) -> str | None:
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    for entry in tensor.external_data:
        if entry.key == "location":
            return entry.value
    return ""


def check_external_data(model: onnx.ModelProto, base_dir: Path | None, source: str) -> int:
    """Validate every external-data location before anything is read.

    A location must be relative, must not contain ``..``, must resolve (symlinks
    followed) inside ``base_dir``, and the file must exist.

    Args:
        model: The parsed model (external data not yet loaded).
        base_dir: Folder of the model file; ``None`` for an in-memory proto.
        source: Name of the model for messages.

    Returns:
        Number of tensors stored externally.

    Raises:
        ModelError: A location escapes the folder, is missing, or there is no folder.
    """
    count = 0
    root = base_dir.resolve() if base_dir is not None else None
    for tensor in iter_graph_tensors(model.graph):
        location = _external_location(tensor)
        if location is None:
            continue
        count += 1
        what = f"{source}: external data of tensor {tensor.name!r}"
        if not location:
            raise ModelError(f"{what} has no 'location' entry")
        if root is None:
            raise ModelError(
                f"{what} is stored in {location!r} but the model was given as a ModelProto "
                "without a folder; pass the file path instead"
            )
        rel = Path(location)
        if rel.is_absolute() or os.path.isabs(location) or ".." in rel.parts or "\\" in location:
            raise ModelError(
                f"{what}: location {location!r} escapes the model's folder {str(root)!r}; refused"
            )
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise ModelError(
                f"{what}: location {location!r} resolves to {str(target)!r}, outside the "
                f"model's folder {str(root)!r}; refused"
            )
        if not target.is_file():
            raise ModelError(f"{what}: file {location!r} is missing in {str(root)!r}")
        _check_extent(tensor, target, what, location)
    return count


def _proto_sha256(model: onnx.ModelProto) -> str:
    """SHA-256 of the serialized proto; over 2 GiB (not serializable in one piece) the graph
    without initializers and then each initializer are hashed in sequence."""
    try:
        return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()
    except (ValueError, OSError, RuntimeError):  # protobuf refuses messages over 2 GiB
        h = hashlib.sha256()
        skeleton = onnx.ModelProto()
        skeleton.CopyFrom(model)
        skeleton.graph.ClearField("initializer")
        h.update(skeleton.SerializeToString(deterministic=True))
        for tensor in model.graph.initializer:
            h.update(tensor.SerializeToString(deterministic=True))
        return h.hexdigest()


def _check_extent(tensor: onnx.TensorProto, target: Path, what: str, location: str) -> None:
    """Fail before reading if the data file is too short for the tensor's shape."""

    info = {e.key: e.value for e in tensor.external_data}
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ModelError(f"{what}: bad offset/length in its external_data entry") from None
    need = tensor_nbytes(tensor.data_type, tensor.dims)
    if length is not None and length < need:
        raise ModelError(f"{what}: length {length} is less than its shape needs ({need} bytes)")
    size = target.stat().st_size
    if offset + (length if length is not None else need) > size:
        raise ModelError(
            f"{what}: {location!r} has {size} bytes, the tensor needs bytes up to "
            f"{offset + (length if length is not None else need)} (truncated data file?)"
        )


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        # An ONNX file starts with field 1 (ir_version, varint) -> byte 0x08.
        if data[:1] == b"\x08":
            raise ModelError(f"{source}: truncated or corrupt ONNX file ({exc})") from None
        raise ModelError(f"{source}: not an ONNX model (protobuf parse failed)") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelError(f"{source}: not an ONNX model (no IR version or no graph)")
    if not model.graph.node:
        raise ModelError(f"{source}: the model's graph has no nodes")
    return model


def load(model: str | os.PathLike[str] | onnx.ModelProto) -> LoadedModel:
    """Load an ONNX file or take a ModelProto, load external data safely, cap the IR version.

    Args:
        model: Path to an ``.onnx`` file, or a ModelProto (copied, never mutated).

    Returns:
        The loaded model.

    Raises:
        ModelError: The file does not exist, is not ONNX, is truncated, or its external
            data is missing or escapes the model's folder.
    """
    if isinstance(model, onnx.ModelProto):
        source = "<ModelProto>"
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        sha = _proto_sha256(proto)
        if proto.ir_version <= 0 or not proto.graph.node:
            raise ModelError(f"{source}: not a usable ONNX model (no IR version or no nodes)")
        check_external_data(proto, None, source)
        name = proto.graph.name or "model"
        base_dir = None
    else:
        path = Path(model)
        source = str(model)
        if not path.exists():
            raise ModelError(f"{source}: no such file")
        if not path.is_file():
            raise ModelError(f"{source}: not a file")
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        proto = _parse(data, source)
        base_dir = path.resolve().parent
        name = path.stem
        if check_external_data(proto, base_dir, source):
            try:
                onnx.external_data_helper.load_external_data_for_model(proto, str(base_dir))
            except (OSError, ValueError, onnx.checker.ValidationError) as exc:
                raise ModelError(f"{source}: cannot read external data: {exc}") from None
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    logger.info("loaded %s (%d nodes, sha256 %s)", source, len(proto.graph.node), sha[:12])
    return LoadedModel(model=proto, source=source, name=name, sha256=sha, base_dir=base_dir)
