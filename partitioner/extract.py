"""Partition extraction: each partition of a plan as a standalone ONNX model (via onnx_ir)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir

from partitioner.errors import PlanError
from partitioner.loading import MAX_IR_VERSION
from partitioner.plan import Plan, PlanPartition

logger = logging.getLogger(__name__)


#: Partitions whose weights exceed this are saved with external data next to them
#: (protobuf cannot serialise a message over 2 GiB).
EXTERNAL_DATA_THRESHOLD = int(1.5 * 2**30)


class PartitionExtractor:
    """Extracts partitions from one model; the model is converted to onnx_ir once."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self._proto = model
        self._model = ir.from_proto(model)
        self._ir_version = min(model.ir_version or MAX_IR_VERSION, MAX_IR_VERSION)

    def extract(self, partition: PlanPartition, label: str | None = None) -> ir.Model:
        """The partition's nodes as a model: its inputs, outputs and the weights it uses.

        Raises:
            PlanError: the partition's boundary does not enclose its nodes (a plan that does
                not belong to this model), naming the partition.
        """
        inputs = [i.name for i in partition.inputs]
        outputs = [o.name for o in partition.outputs]
        name = label or f"p{partition.index}_{partition.device}"
        if not outputs:
            raise PlanError(f"partition {partition.index} ({partition.device}) has no outputs")
        try:
            graph = ir.convenience.extract(self._model.graph, inputs, outputs)
        except ValueError as exc:
            raise PlanError(
                f"cannot extract partition {partition.index} ({partition.device}): {exc}"
            ) from exc
        got = {n.name or "" for n in graph}
        missing = sorted(set(partition.nodes) - got)
        if missing:
            logger.debug(
                "partition %d: nodes with no effect on its outputs: %s",
                partition.index,
                missing[:10],
            )
        extra = sorted(got - set(partition.nodes))
        if extra:
            raise PlanError(
                f"partition {partition.index} ({partition.device}) would run nodes placed "
                f"elsewhere: {extra[:10]}; the plan does not match the model"
            )
        graph.name = name
        return ir.Model(
            graph,
            ir_version=self._ir_version,
            producer_name="hetpart",
            functions=list(self._model.functions.values()),
        )

    def extract_proto(self, partition: PlanPartition) -> onnx.ModelProto:
        """:meth:`extract` as a ModelProto (weights in memory)."""
        return ir.to_proto(self.extract(partition))

    def iter_protos(self, plan: Plan) -> Iterator[tuple[PlanPartition, onnx.ModelProto]]:
        for partition in plan.partitions:
            yield partition, self.extract_proto(partition)


def annotate_model(model: onnx.ModelProto, plan: Plan) -> onnx.ModelProto:
    """A copy of ``model`` whose nodes carry their placement as ``metadata_props``.

    Keys: ``hetpart.device`` (device id), ``hetpart.partition`` (partition index, which is also
    the pipeline stage in execution order) and ``hetpart.runner``. Viewers such as Netron
    show them; runtimes ignore them. IR version stays <= 10 (node metadata needs IR >= 10).
    """
    annotated = onnx.ModelProto()
    annotated.CopyFrom(model)
    annotated.ir_version = MAX_IR_VERSION
    runners = {d.id: d.runner for d in plan.cluster.devices}
    for node in annotated.graph.node:
        where = plan.placement.get(node.name)
        if where is None:
            continue
        for key, value in (
            ("hetpart.device", where.device),
            ("hetpart.partition", str(where.partition)),
            ("hetpart.runner", runners.get(where.device, "")),
        ):
            prop = node.metadata_props.add()
            prop.key, prop.value = key, value
    entry = annotated.metadata_props.add()
    entry.key, entry.value = "hetpart.plan", f"{plan.format_version} {plan.model.sha256}"
    return annotated


def save_annotated(model: onnx.ModelProto, path: Path) -> None:
    """Save an annotated model, with external data when its weights are large."""
    size = sum(t.ByteSize() for t in model.graph.initializer)
    if size > EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            location=path.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def weight_bytes(model: ir.Model) -> int:
    """Bytes of the initializers a model holds."""
    return sum(
        v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None
    )


def save_partition(model: ir.Model, path: Path) -> Path | None:
    """Save ``model`` to ``path``; large weights go to ``<name>.data`` next to it.

    Returns:
        The external data path when one was written, else None.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if weight_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        data_name = path.name + ".data"
        ir.save(model, path, external_data=data_name)
        return path.parent / data_name
    ir.save(model, path)
    return None
