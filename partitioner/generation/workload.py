"""What a generation plan is asked for: the workload (``--workload``), the SLOs and the objective.

``prompt=512,new=128,batch=8,context=2048``: prompt tokens, new tokens per sequence, concurrent
sequences, and the context the KV cache is reserved for (default prompt + new). The TTFT and
TPOT objectives place for exactly ``batch`` sequences; the throughput and cost objectives search
the batch size up to it (``batch`` is then the most sequences the service may hold at once).
"""

from __future__ import annotations

from dataclasses import dataclass

from partitioner.errors import PartitionerError
from partitioner.generation.spec import DecoderSpec


class WorkloadError(PartitionerError):
    """A ``--workload``, SLO or objective that is malformed or does not suit the model."""


#: Generation objectives: what the CP-SAT placement minimises (tokens-per-s is maximised).
OBJECTIVES = ("ttft", "tpot", "tokens-per-s", "cost-per-mtok")
#: Objectives for which the batch size is searched (powers of two up to the workload's batch).
BATCH_SEARCHED = ("tokens-per-s", "cost-per-mtok")

_KEYS = ("prompt", "new", "batch", "context")


@dataclass(frozen=True)
class Workload:
    """Prompt length, new tokens, concurrent sequences and the KV cache's reserved context."""

    prompt: int
    new: int
    batch: int = 1
    context: int = 0  # 0: prompt + new

    def __post_init__(self) -> None:
        for key in ("prompt", "new", "batch"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise WorkloadError(f"--workload: {key} must be a positive integer, got {value!r}")
        if not self.context:
            object.__setattr__(self, "context", self.prompt + self.new)
        if self.context < self.prompt + self.new:
            raise WorkloadError(
                f"--workload: context={self.context} is shorter than prompt + new = "
                f"{self.prompt} + {self.new} = {self.prompt + self.new}")

    @classmethod
    def parse(cls, text: str) -> Workload:
        """Parse ``prompt=512,new=128,batch=8,context=2048`` (prompt and new required)."""
        values: dict[str, int] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in _KEYS:
                raise WorkloadError(f"--workload {text!r}: {item!r} is not KEY=N with KEY one of "
                                    f"{', '.join(_KEYS)}")
            if key in values:
                raise WorkloadError(f"--workload {text!r}: {key} is given twice")
            try:
                values[key] = int(raw.strip())
            except ValueError:
                raise WorkloadError(f"--workload {text!r}: {key}={raw.strip()!r} is not an "
                                    "integer") from None
        for key in ("prompt", "new"):
            if key not in values:
                raise WorkloadError(f"--workload {text!r}: missing {key}=N "
                                    "(example: prompt=512,new=128,batch=8,context=2048)")
        return cls(**values)

    def check_model(self, spec: DecoderSpec) -> None:
        """Refuse a context beyond what the model was built for."""
        if self.context > spec.max_context:
            raise WorkloadError(
                f"--workload context={self.context} is beyond the maximum context of model "
                f"{spec.name!r} ({spec.max_context} tokens)")

    def batch_candidates(self, objective: str) -> tuple[int, ...]:
        """Batch sizes the placement tries: the workload's own, or for throughput and cost
        every power of two up to it and the batch itself."""
        if objective not in BATCH_SEARCHED:
            return (self.batch,)
        sizes = {self.batch}
        size = 1
        while size < self.batch:
            sizes.add(size)
            size *= 2
        return tuple(sorted(sizes))

    def as_text(self) -> str:
        return f"prompt={self.prompt},new={self.new},batch={self.batch},context={self.context}"

    def to_dict(self) -> dict[str, int]:
        return {"prompt": self.prompt, "new": self.new, "batch": self.batch,
                "context": self.context}


@dataclass(frozen=True)
class Targets:
    """Objective and service-level objectives (seconds; None: no bound)."""

    objective: str = "tokens-per-s"
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise WorkloadError(f"--objective {self.objective!r}: a generation plan takes one "
                                f"of {', '.join(OBJECTIVES)}")
        for flag, value in (("--ttft-slo", self.ttft_slo_s), ("--tpot-slo", self.tpot_slo_s)):
            if value is not None and not value > 0:
                raise WorkloadError(f"{flag}: must be a positive number of milliseconds, "
                                    f"got {value * 1e3:g}")
