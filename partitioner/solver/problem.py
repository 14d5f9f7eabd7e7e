"""The placement problem the solver sees (plain data, no ONNX) and what solving it reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from partitioner.cluster.types import Cluster
from partitioner.costing.types import CostTable
from partitioner.solver.partitioning import Partition

OBJECTIVES = ("latency", "throughput", "cost")


@dataclass(frozen=True)
class ProblemNode:
    """A unit of placement: a node (or, after coarsening, a group of nodes).

    Attributes:
        name: Unique name.
        op_type: Operator type (used by ``--pin OP_TYPE=DEVICE`` and reports).
        weight_bytes: Bytes of the weights it owns (resident on its device).
        output_bytes: Bytes of the activations it produces.
        members: Original node names when this is a coarsened group; ``(name,)`` otherwise.
    """

    name: str
    op_type: str
    weight_bytes: int = 0
    output_bytes: int = 0
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProblemEdge:
    """Data dependency ``src -> dst`` carrying ``nbytes`` (one per tensor and consumer)."""

    src: str
    dst: str
    nbytes: int
    tensor: str = ""


@dataclass(frozen=True)
class Problem:
    """Everything the solver and the baselines need.

    Attributes:
        nodes: Nodes in topological order.
        edges: Dependencies.
        cluster: Devices and links; ``cluster.devices`` order is the priority order.
        costs: Per (node, device) costs.
        pins: node name -> device id it must run on.
        forbidden: node name -> device ids it must not run on.
        objective: One of ``OBJECTIVES``.
        latency_target_s: Upper bound on latency for the ``cost`` objective.
        max_partitions: Upper bound on partitions, if the user asked for one.
    """

    nodes: tuple[ProblemNode, ...]
    edges: tuple[ProblemEdge, ...]
    cluster: Cluster
    costs: CostTable = field(hash=False, compare=False)
    pins: dict[str, str] = field(default_factory=dict, hash=False)
    forbidden: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    objective: str = "latency"
    latency_target_s: float | None = None
    max_partitions: int | None = None


@dataclass(frozen=True)
class Evaluation:
    """An assignment costed by the common evaluator (same model for plans and baselines).

    Attributes:
        latency_s: Makespan of one input under the list schedule.
        stage_s: Busiest device or link per input when pipelined.
        cost_per_1k: Price of 1,000 inferences (device price × busy time).
        energy_j: Energy of one inference from device power × busy time.
        busy_s: Busy time per device id.
        peak_memory: Peak bytes per device id (weights plus live activations).
        schedule: node -> (device, start_s, end_s).
        num_partitions: Connected same-device runs (runner calls per inference).
        partitions: The runner calls that were scheduled, in execution order; a plan built
            from this evaluation executes exactly these.
    """

    latency_s: float
    stage_s: float
    cost_per_1k: float
    energy_j: float
    busy_s: dict[str, float]
    peak_memory: dict[str, int]
    schedule: dict[str, tuple[str, float, float]]
    num_partitions: int
    partitions: tuple[Partition, ...] = field(default=(), hash=False, compare=False)


@dataclass(frozen=True)
class BaselineResult:
    """A complete feasible placement from a baseline heuristic, with its evaluation."""

    name: str
    assignment: dict[str, str]
    evaluation: Evaluation | None
    note: str = ""


@dataclass(frozen=True)
class SolveReport:
    """What the solver found and what it proved.

    Attributes:
        assignment: node name -> device id (original node names, never group names).
        evaluation: The assignment costed by the common evaluator.
        status: ``OPTIMAL``, ``FEASIBLE``, ``HINT`` (solver found nothing better than the
            hint), or ``SINGLE_DEVICE`` (one device could run everything, or the best
            several-device plan gained less than ``min_gain`` over the best single device).
        objective: The minimised quantity's value in seconds (or price for ``cost``).
        bound: Proven lower bound on ``objective``.
        gap: ``(objective - bound) / objective``; 0 when optimal.
        solve_time_s: Wall time of the whole solve (baselines to refinement).
        seed: Random seed given to CP-SAT.
        workers: Number of search workers.
        time_limit_s: Time limit given.
        baselines: Baseline results by name.
        groups: Coarsened group name -> member node names (for reports on large graphs).
        clock_stopped: Whether the wall clock ended a stage before its deterministic budget
            (a loaded or slow machine): the same input may then give another plan.
        clock_stopped_stages: The stages the clock ended (``search``, ``relaxation``,
            ``refinement``; ``solver.stages``), empty when none: with none, the same input,
            seed and worker count give the same report, timings aside.
    """

    assignment: dict[str, str]
    evaluation: Evaluation
    status: str
    objective: float
    bound: float
    gap: float
    solve_time_s: float
    seed: int
    workers: int
    time_limit_s: float
    baselines: dict[str, BaselineResult] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    clock_stopped: bool = False
    clock_stopped_stages: tuple[str, ...] = ()
