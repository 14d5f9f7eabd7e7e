"""Partition extraction: each partition of a plan as a standalone ONNX model (via onnx_ir)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Iterator
from pathlib import Path

import onnx
import onnx_ir as ir

from partitioner.errors import PlanError
from partitioner.graph.loading import MAX_IR_VERSION
from partitioner.plan.types import Plan, PlanPartition

logger = logging.getLogger(__name__)


#: Partitions whose weights exceed this are saved with external data next to them
#: (protobuf cannot serialise a message over 2 GiB).
EXTERNAL_DATA_THRESHOLD = int(1.5 * 2**30)


class PartitionExtractor:
    """Extracts partitions from one model; the model is converted to onnx_ir once, when a
    partition first needs it.

    ``placed``: when given, the model may hold nodes the plan places nowhere (the plan was
    built from a folded copy: constants and shape arithmetic became initializers there), and
    a partition pulls in those it needs; only nodes in ``placed`` that belong to another
    partition are refused. Generation plans cut the original graph this way, so partitions
    keep its symbolic dimensions and run at every sequence length.
    """

    def __init__(self, model: onnx.ModelProto, placed: Collection[str] | None = None) -> None:
        self._proto = model
        self._placed = None if placed is None else frozenset(placed)
        self._ir_version = min(model.ir_version or MAX_IR_VERSION, MAX_IR_VERSION)

    @functools.cached_property
    def _model(self) -> ir.Model:
        return ir.from_proto(self._proto)

    @functools.cached_property
    def _initializer_rank(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self._model.graph.initializers)}

    @functools.cached_property
    def _self_contained(self) -> bool:
        """Whether every weight is in the proto (external data is resolved by onnx_ir)."""
        return all(t.data_location != onnx.TensorProto.EXTERNAL
                   for t in self._proto.graph.initializer)

    def extract(self, partition: PlanPartition, label: str | None = None
                ) -> ir.Model | onnx.ModelProto:
        """The partition as a model (see ``extract_ir``); a partition that is the whole
        model is the model itself, renamed, with no onnx_ir round trip (7 s on its way in
        and more on its way out at 100k nodes)."""
        graph = self._proto.graph
        if (self._self_contained and len(partition.nodes) == len(graph.node)
                and [i.name for i in partition.inputs] == _graph_inputs(graph)
                and [o.name for o in partition.outputs] == [o.name for o in graph.output]
                and set(partition.nodes) == {n.name for n in graph.node}):
            whole = onnx.ModelProto()
            whole.CopyFrom(self._proto)
            whole.graph.name = label or f"p{partition.index}_{partition.device}"
            whole.producer_name = "hetpart"
            whole.ir_version = self._ir_version
            return whole
        return self.extract_ir(partition, label)

    def extract_ir(self, partition: PlanPartition, label: str | None = None) -> ir.Model:
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
        extra = sorted(n for n in got - set(partition.nodes)
                       if self._placed is None or n in self._placed)
        if extra:
            raise PlanError(
                f"partition {partition.index} ({partition.device}) would run nodes placed "
                f"elsewhere: {extra[:10]}; the plan does not match the model"
            )
        self._order_initializers(graph)
        graph.name = name
        return ir.Model(
            graph,
            ir_version=self._ir_version,
            producer_name="hetpart",
            functions=list(self._model.functions.values()),
        )

    def _order_initializers(self, graph: ir.Graph) -> None:
        """Initializers in the model's order: onnx_ir's ``extract`` collects them in a set,
        so without this the same plan's partition files differ from process to process."""
        kept = dict(graph.initializers)
        graph.initializers.clear()
        for name in sorted(kept, key=lambda n: self._initializer_rank.get(n, len(kept))):
            graph.register_initializer(kept[name])

    def extract_proto(self, partition: PlanPartition) -> onnx.ModelProto:
        """:meth:`extract` as a ModelProto (weights in memory)."""
        model = self.extract(partition)
        return model if isinstance(model, onnx.ModelProto) else ir.to_proto(model)

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


def save_partition(model: ir.Model | onnx.ModelProto, path: Path) -> Path | None:
    """Save ``model`` to ``path``; large weights go to ``<name>.data`` next to it.

    Returns:
        The external data path when one was written, else None.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, onnx.ModelProto):
        if sum(_tensor_bytes(t) for t in model.graph.initializer) > EXTERNAL_DATA_THRESHOLD:
            data_name = path.name + ".data"
            onnx.save_model(model, str(path), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=data_name)
            return path.parent / data_name
        onnx.save_model(model, str(path))
        return None
    if weight_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        data_name = path.name + ".data"
        ir.save(model, path, external_data=data_name)
        return path.parent / data_name
    ir.save(model, path)
    return None


def _graph_inputs(graph: onnx.GraphProto) -> list[str]:
    """The graph's real inputs (not initializers listed as inputs by older exporters)."""
    weights = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in weights]


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    return len(tensor.raw_data) or tensor.ByteSize()
