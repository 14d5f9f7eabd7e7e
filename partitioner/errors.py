"""The PartitionerError hierarchy: every user-facing failure, each naming what is at fault."""

from __future__ import annotations


class PartitionerError(Exception):
    """Base of every error hetpart reports to a user.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``; messages
    name the file, node, value, device or key at fault.
    """

    exit_code = 2


class ModelError(PartitionerError):
    """The ONNX file or ModelProto cannot be loaded or is malformed."""


class ShapeError(PartitionerError):
    """Shapes cannot be made concrete (unknown dimension, bad --input-shape, op without shape)."""


class ClusterError(PartitionerError):
    """A cluster file, preset or device option is invalid."""


class RunnerNotAvailableError(ClusterError):
    """A runner named by a device is not installed here."""


class CostModelError(PartitionerError):
    """A cost model cannot produce costs (bad profile cache, no samples to fit)."""


class SolverError(PartitionerError):
    """The placement problem is malformed or the solver failed."""


class InfeasibleError(SolverError):
    """No placement satisfies the constraints; the message carries the diagnosis."""


class PlanError(PartitionerError):
    """A plan directory or plan.json is missing, foreign or violates an invariant."""


class RunError(PartitionerError):
    """Executing a plan failed: names the partition, its device and the runner's message."""


class RayClusterError(ClusterError):
    """A Ray cluster cannot run a plan: unreachable, or no node advertises some of its devices."""


class DeviceLostError(RunError):
    """A device's Ray actor died during a run: names the device, its host and the partition."""


class ReportError(PartitionerError):
    """A report cannot be produced from the given inputs."""
