"""Per-(node, device) costs: Supported(latency, memory) or Unsupported(reason), as data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Supported:
    """The device can run the node.

    Attributes:
        latency_s: Predicted execution time of the node alone, excluding the per-call
            overhead of the partition it sits in.
        memory_bytes: Workspace the runner needs while running it (beyond weights and
            the node's inputs/outputs).
        source: Which cost model produced the number (``roofline``, ``profiled``, ...).
    """

    latency_s: float
    memory_bytes: int = 0
    source: str = ""

    supported = True


@dataclass(frozen=True)
class Unsupported:
    """The device cannot run the node; ``reason`` is shown in reports and diagnoses."""

    reason: str

    supported = False


Cost = Supported | Unsupported


class CostTable:
    """Costs for every (node, device) pair of a problem."""

    def __init__(self, entries: dict[tuple[str, str], Cost] | None = None) -> None:
        self._entries: dict[tuple[str, str], Cost] = dict(entries or {})

    def set(self, node: str, device: str, cost: Cost) -> None:
        self._entries[(node, device)] = cost

    def get(self, node: str, device: str) -> Cost:
        """Cost of ``node`` on ``device``; a missing pair counts as unsupported."""
        return self._entries.get((node, device), Unsupported("no cost was computed"))

    def latency(self, node: str, device: str) -> float:
        """Latency of a supported pair; raises KeyError for unsupported pairs."""
        cost = self.get(node, device)
        if not isinstance(cost, Supported):
            raise KeyError(f"{node} is not supported on {device}: {cost.reason}")
        return cost.latency_s

    def supported_devices(self, node: str, devices: tuple[str, ...]) -> list[str]:
        return [d for d in devices if isinstance(self.get(node, d), Supported)]

    def items(self) -> Iterator[tuple[tuple[str, str], Cost]]:
        return iter(self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)
