"""Generation on Ray: the prefill plan and the decode plan, each on its own ``RayExecutor``,
sharing one connection to the cluster.

Each phase's actors run on the nodes that advertise that phase's devices
(``hetpart_device:<id>``), exactly as ``hetpart run --ray`` places a plan. A device that serves
both phases (a co-located plan) gets one actor per phase, each holding one unit of its
resource, so its node must advertise two units: ``--ray local`` starts its nodes so, and
against a running cluster a device advertised with fewer units than phases is named at once
(``hetpart ray-node --units 2`` prints the command that advertises two).

The KV cache: both executors return ``present.*`` as the ObjectRefs the actors returned
(``RayExecutor(device_outputs=...)``) and the next call takes them as top-level arguments, so
the driver never fetches the cache: a tensor over Ray's 100 KB inline limit stays in the
object store of the node whose actor made it (and is pulled by another node only where the
next layer group runs elsewhere); a smaller one Ray inlines through the driver's core worker.
Only the logits come back to the driver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from partitioner.distributed.connection import RayConnection, ray_module
from partitioner.distributed.resources import advertised_devices, device_resource, hosts_of
from partitioner.errors import RayClusterError
from partitioner.generation.plan_dir import PHASES

if TYPE_CHECKING:
    from partitioner.distributed.executor import RayExecutor
    from partitioner.generation.plan_dir import GenerationPlan
    from partitioner.plan.types import Plan

#: How the KV cache travels between decode steps on Ray (``hetpart generate --json``: ``kv``).
KV_AS_REFS = ("ObjectRefs: present.* stay in the object store of the node that made them "
              "(over Ray's 100 KB inline limit) and go back as the next call's "
              "past_key_values.*; the driver never fetches them")


def phase_units(plans: Mapping[str, Plan]) -> dict[str, int]:
    """Device id -> how many phases place partitions on it (the units its node must offer)."""
    counts: Counter[str] = Counter()
    for plan in plans.values():
        counts.update({p.device for p in plan.partitions})
    return dict(sorted(counts.items()))


def check_units(units: Mapping[str, int], total: Mapping[str, float], where: str) -> None:
    """Name every device whose node offers fewer units than the phases that use it (a
    device no node advertises at all is left to the executor's own check, which names it)."""
    have = advertised_devices(total)
    short = [d for d, n in units.items() if 0 < have.get(d, 0) < n]
    if short:
        raise RayClusterError(
            f"Ray cluster {where}: device(s) {', '.join(map(repr, short))} serve both prefill "
            f"and decode, so generate --ray runs an actor per phase on each and needs 2 units "
            f"of {device_resource('<id>')} (advertised: "
            + ", ".join(f"{d} {have.get(d, 0):g}" for d in short)
            + "); start their nodes with the command `hetpart ray-node --units 2` prints")


class RayPhases:
    """One connection and one ``RayExecutor`` per phase of a generation plan.

    Args:
        plan: The generation plan.
        address: ``"local"`` (a throwaway loopback cluster, one node per host either phase
            names) or a Ray address (``"auto"``, ``"HOST:PORT"``).
        emulate: As ``RayExecutor``'s.

    Raises:
        RayClusterError: Ray missing, the cluster unreachable, a device not advertised (or
            with fewer units than phases using it).
    """

    def __init__(self, plan: GenerationPlan, address: str, *, emulate: bool = False) -> None:
        from partitioner.distributed.executor import RayExecutor
        from partitioner.generation.generator import free_dims

        plans = {phase: plan.phase_plan(phase) for phase in PHASES}
        self.units = phase_units(plans)
        devices = {d.id: d for phase in PHASES for d in plans[phase].cluster.devices}
        used = [devices[d] for d in self.units]
        self.executors: dict[str, RayExecutor] = {}
        self._connection = RayConnection(address, hosts_of(used), self.units)
        self._connection.open()
        try:
            local = self._connection.local
            if local is None:
                check_units(self.units, ray_module().cluster_resources(), self.where)
            # The executors join the session this connection opened (they own none of it).
            target = local.address if local is not None and local.address else address
            for phase in PHASES:
                self.executors[phase] = RayExecutor(
                    free_dims(plans[phase]), plan.phase_dir(phase), address=target,
                    emulate=emulate, device_outputs=plan.layout.present_names)
        except BaseException:
            self.close()
            raise

    @property
    def where(self) -> str:
        """The cluster, for messages."""
        return self._connection.where

    def hosts(self) -> dict[str, dict[str, str]]:
        """Phase -> device id -> the host its actor runs on."""
        return {phase: dict(sorted(ex.hosts.items())) for phase, ex in self.executors.items()}

    def record(self, address: str) -> dict[str, Any]:
        """What ``hetpart generate --json`` says under ``ray``."""
        emulated = {phase: ex.emulated for phase, ex in self.executors.items() if ex.emulated}
        return {"address": address, "cluster": self.where, "hosts": self.hosts(),
                "units": self.units, "emulated": emulated}

    def close(self) -> None:
        """Stop both phases' actors, then disconnect (and stop a local cluster)."""
        executors, self.executors = self.executors, {}
        try:
            for executor in executors.values():
                executor.close()
        finally:
            self._connection.close()
