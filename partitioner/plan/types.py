"""The Plan artifact: frozen, plain data (``partitioner.plan.build`` makes one).

A plan is plain data: which nodes run where, cut into partitions (runner calls) - exactly
the cut the solver's evaluator priced (``Evaluation.partitions``) - with the tensors crossing
each boundary, the transfers between devices, the solver's statistics, the baselines and, per
node, the cost on every device (or why it cannot run there). ``partitioner.plan.io`` writes
and loads it; ``partitioner.plan.extract`` materialises partitions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from partitioner._version import __version__
from partitioner.cluster.types import Cluster
from partitioner.profiling.timing import Timing

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel

logger = logging.getLogger(__name__)

#: The plan format this code writes; loaders refuse any other.
FORMAT_VERSION = "hetpart-plan/1"


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, concrete shape, NumPy dtype name.

    ``value_range`` is ``(low, high)`` (high exclusive) for integer inputs used as indices
    (e.g. token ids feeding a Gather), so random inputs stay valid.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    value_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class ModelRef:
    """The model a plan was compiled from: path as given, SHA-256 of its bytes, name."""

    path: str
    sha256: str
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class PartitionInput:
    """A tensor a partition consumes; ``from_partition`` is None for a graph input."""

    name: str
    nbytes: int
    from_partition: int | None


@dataclass(frozen=True)
class PartitionOutput:
    """A tensor a partition produces for later partitions and/or the caller."""

    name: str
    nbytes: int
    to_partitions: tuple[int, ...]
    graph_output: bool


@dataclass(frozen=True)
class PlanPartition:
    """One runner call: nodes on one device, with its boundary tensors and predicted times."""

    index: int
    device: str
    file: str
    nodes: tuple[str, ...]
    inputs: tuple[PartitionInput, ...]
    outputs: tuple[PartitionOutput, ...]
    predicted_start_s: float
    predicted_end_s: float


@dataclass(frozen=True)
class Transfer:
    """A tensor copied between devices (only when producer and consumer devices differ)."""

    tensor: str
    nbytes: int
    src_device: str
    dst_device: str
    src_partition: int
    dst_partition: int
    predicted_s: float


@dataclass(frozen=True)
class SolverStats:
    """What the solver reported and what the evaluator predicts for the chosen assignment.

    ``busy_s`` (seconds) and ``peak_memory`` (bytes: weights + largest workspace + live
    activations) are the evaluator's per-device numbers; empty when the plan's evaluation did
    not compute them (``peak_memory`` is empty for hand-made assignments).
    """

    status: str
    objective: float
    bound: float
    gap: float
    solve_time_s: float
    seed: int
    workers: int
    time_limit_s: float
    predicted_latency_s: float
    predicted_stage_s: float
    cost_per_1k: float
    energy_j: float
    num_partitions: int
    devices_used: tuple[str, ...]
    busy_s: dict[str, float] = field(default_factory=dict, hash=False)
    peak_memory: dict[str, int] = field(default_factory=dict, hash=False)
    #: Stages the clock ended early (``SolveReport.clock_stopped_stages``): a rerun may differ.
    clock_stopped_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaselineSummary:
    """A baseline's predicted latency, stage time and price per 1,000 inferences.

    All three are None when the baseline found no feasible placement; ``cost_per_1k`` is also
    None in plans written before it was recorded.
    """

    latency_s: float | None
    stage_s: float | None
    note: str = ""
    cost_per_1k: float | None = None


@dataclass(frozen=True)
class NodeCost:
    """Cost of a node on one device: latency and memory, or the reason it is unsupported."""

    latency_s: float | None = None
    memory_bytes: int = 0
    source: str = ""
    unsupported: str | None = None


@dataclass(frozen=True)
class NodePlacement:
    """Where a node went, when it is predicted to run, its cost on every device and the bytes
    of the weights it owns (resident on its device)."""

    device: str
    op_type: str
    partition: int
    start_s: float
    end_s: float
    costs: dict[str, NodeCost] = field(hash=False)
    weight_bytes: int = 0


@dataclass(frozen=True)
class MeasuredCandidate:
    """A plan timed at compile time as it runs, beside what the cost model predicted.

    Attributes:
        name: ``round N`` (a split candidate of feedback round N) or ``single:<device>``.
        round: The feedback round (0: the first solve); None for single-device plans.
        assignment: First 12 hex digits of the SHA-256 of the node -> device assignment.
        partitions: Runner calls per inference.
        devices: Devices the plan uses.
        predicted_s: Latency the cost model predicted before it was measured.
        measured: The measurement.
        cached: Whether the measurement came from the profile cache.
    """

    name: str
    round: int | None
    assignment: str
    partitions: int
    devices: tuple[str, ...]
    predicted_s: float
    measured: Timing
    cached: bool = False


@dataclass(frozen=True)
class CompileMeasurements:
    """The compile-time measurement loop (``partitioner.compiler``), on measured clusters.

    Attributes:
        rounds: Each feedback round's candidate, in order.
        singles: Each device's whole-model single-device plan.
        chosen: Name of the candidate the plan is (``round N`` or ``single:<device>``).
        min_gain: Gain over the best single device a split needed (fraction).
        min_gain_source: ``noise`` (the measured noise) or ``option`` (``--min-gain``).
        note: One line on why the chosen candidate won.
    """

    rounds: tuple[MeasuredCandidate, ...]
    singles: tuple[MeasuredCandidate, ...]
    chosen: str
    min_gain: float
    min_gain_source: str
    note: str = ""


@dataclass(frozen=True)
class Tolerance:
    """The numeric tolerance a plan was compiled for (``hetpart compile --tolerance``): its
    outputs may differ from the whole model's by ``atol + rtol * |expected|`` per element
    (``numpy.allclose``), which lets the compiler use lower-precision devices."""

    atol: float = 0.0
    rtol: float = 0.0


@dataclass(frozen=True)
class Plan:
    """A versioned, diffable placement plan (see ``docs/plan-format.md``).

    ``pins`` (node -> device) and ``forbidden`` (node -> devices) are the user's constraints
    as the problem resolved them: a ``--pin OP_TYPE=DEVICE`` appears once per node of that op.
    ``compiled_with`` maps hetpart, onnxruntime, openvino and ortools to the versions that
    compiled the plan (None: not installed); empty for hand-made and older plans.
    ``measured`` records the compile-time measurement rounds (clusters measured here).
    ``tolerance`` is the numeric tolerance the plan was compiled for (None: exact, f32).
    """

    format_version: str
    model: ModelRef
    cluster: Cluster
    objective: str
    latency_target_s: float | None
    max_partitions: int | None
    partitions: tuple[PlanPartition, ...]
    transfers: tuple[Transfer, ...]
    solver: SolverStats
    baselines: dict[str, BaselineSummary] = field(hash=False)
    placement: dict[str, NodePlacement] = field(hash=False)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    created_by: str = f"hetpart {__version__}"
    pins: dict[str, str] = field(default_factory=dict, hash=False)
    forbidden: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    compiled_with: dict[str, str | None] = field(default_factory=dict, hash=False)
    #: Compile-time measurements (None: not measured, e.g. spec-sheet clusters, older plans).
    measured: CompileMeasurements | None = field(default=None, hash=False)
    #: ``--tolerance`` it was compiled for (None: not given; older plans).
    tolerance: Tolerance | None = None
    #: The in-memory model (ModelProto or AnalysedModel) a ``compile`` call made the plan
    #: from, analysed; never saved. Lets ``Session(plan)`` cut the partitions without a file.
    source: AnalysedModel | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def assignment(self) -> dict[str, str]:
        """node name -> device id."""
        return {name: p.device for name, p in self.placement.items()}

    def partition_devices(self) -> dict[int, str]:
        return {p.index: p.device for p in self.partitions}

    def predicted_call_s(self, partition: PlanPartition) -> float:
        """Predicted duration of ``partition``'s runner call: the device's per-call overhead
        (paid before ``predicted_start_s``, the first node's start) plus its nodes."""
        overhead = self.cluster.device(partition.device).call_overhead_s
        return partition.predicted_end_s - partition.predicted_start_s + overhead


def partition_file_name(index: int, device: str) -> str:
    """``partitions/p<index>_<device>.onnx`` with the device id made filename-safe."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device)
    return f"partitions/p{index}_{safe}.onnx"
