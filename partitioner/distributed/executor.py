"""Running a plan on Ray: one actor per plan device, boundary tensors worker to worker.

:class:`RayExecutor` has the in-process executor's interface (``run``, ``stream``,
``measure_memory``, ``plan``, ``prepare_s``, ``emulated``), so ``runtime.records.measure``,
``hetpart run --json/--save/--check`` and reports treat its results the same way.

* **Placement.** Each device's actor asks for one unit of the custom resource
  ``hetpart_device:<id>`` (``resources.device_resource``), so Ray starts it on the node that
  advertises that device; the plan's device ids are the only glue. Before any actor is
  created, the cluster's resources are checked and every device no node advertises is named
  (an actor asking for an absent resource would wait pending forever).
* **Once per executor.** Each actor is built once with its device's spec and its partitions'
  ONNX bytes (one ``ray.put`` per device) and prepares them with the device's runner.
* **Per run.** The driver passes the model inputs with the calls and submits every call in
  wave order (so a device's queue holds work in the order it can run). Each call returns
  its timing record and, as separate ObjectRefs (``num_returns``), each tensor another
  partition reads; a consumer's call takes those refs as top-level arguments, which Ray
  resolves before the call runs (``worker.DeviceWorker``). The driver waits for the calls
  producing model outputs with a deadline and fetches the records (a few hundred bytes,
  with the model outputs), never a boundary tensor: a large one goes from the producing
  node's object store to the consumer's; a small one (under Ray's 100 KB
  ``max_direct_call_object_size``) is inlined by Ray through its owner, the driver's core
  worker, into the consumer's call; measured, the cheapest hand-off Ray offered for small
  tensors here (docs/pitfalls.md: nested refs, the object store, actor-to-actor chaining
  and compiled graphs were each slower or hung).
* **Faults.** A call whose actor died raises :class:`~partitioner.errors.DeviceLostError`
  naming the device, its host and the partition; nothing is rerun elsewhere
  (``max_task_retries=0``). With ``restarts=N`` Ray restarts the actor (``max_restarts``),
  which prepares its partitions again, and the next run goes through.

Timing: ``latency_s`` is the driver's wall time from submitting an input to its outputs
being ready in the object store (so it includes Ray's scheduling and hand-offs); ``spans``
are the workers' wall clocks (``time.time``: comparable across hosts only as far as their
clocks agree); ``partition_s`` is each runner call. A boundary's transfer is its hand-off:
from the producer's runner finishing to the consumer's call starting with the tensor in
hand, less any time the consumer's device was still busy with its previous call (so it
counts Ray's return, submission, pull and deserialisation, not queueing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from partitioner.cluster.types import DeviceSpec
from partitioner.distributed.connection import LOCAL, RayConnection, ray_module
from partitioner.distributed.resources import check_advertised, device_resource, hosts_of
from partitioner.distributed.worker import (
    DeviceWorker,
    PartitionInput,
    WorkerSpec,
)
from partitioner.errors import DeviceLostError, PartitionerError, RayClusterError, RunError
from partitioner.plan.types import Plan
from partitioner.runtime.executor import RunResult, StreamResult, TransferTiming
from partitioner.runtime.feeds import InputSpec, model_inputs, one_line
from partitioner.runtime.memory import DeviceMemory

logger = logging.getLogger(__name__)

#: Seconds to wait for every actor to prepare its partitions, and for one run's outputs.
READY_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 300.0
#: Protobuf's limit: a partition shipped as one serialized ModelProto must stay below it.
MAX_PARTITION_BYTES = 2**31 - 1


class RayExecutor:
    """Runs a plan's partitions on Ray actors, one per device.

    Args:
        plan: The plan.
        plan_dir: Directory holding the partition files.
        models: Alternatively, partition index -> ModelProto or path.
        address: ``"local"`` (a throwaway loopback cluster, one node per host the plan
            names), or what ``ray.init`` takes (``"auto"``, ``"HOST:PORT"``).
        emulate: Map devices whose runner is absent on their node onto ONNX Runtime CPU.
        restarts: Ray restarts a device's actor up to this many times (``max_restarts``).
        timeout_s: Deadline of one run (or stream).
        device_outputs: Model outputs returned as the ObjectRefs their producing actor
            returned, never fetched by the driver, and taken back as feeds the same way (a
            decode step's KV cache: it stays where the decode actor put it, in its node's
            object store when over Ray's 100 KB inline limit).
        measure_memory: Each actor measures its own process's memory (see
            :meth:`measure_memory`); ``memory_unmeasured`` says why not where it cannot.

    Raises:
        RayClusterError: Ray missing, the cluster unreachable, or devices not advertised.
        RunError: a device's runner cannot prepare its partitions.
    """

    def __init__(
        self,
        plan: Plan,
        plan_dir: str | Path | None = None,
        *,
        models: Mapping[int, onnx.ModelProto | str | Path] | None = None,
        address: str = LOCAL,
        emulate: bool = False,
        restarts: int = 0,
        timeout_s: float = RUN_TIMEOUT_S,
        device_outputs: Collection[str] = (),
        measure_memory: bool = False,
    ) -> None:
        if plan_dir is None and models is None:
            raise RunError("RayExecutor needs a plan directory or in-memory partition models")
        if restarts < 0:
            raise RunError(f"--restarts {restarts}: must be at least 0")
        self.plan = plan
        self.timeout_s = timeout_s
        self.restarts = restarts
        self.emulated: dict[str, str] = {}
        self.prepare_s: dict[int, float] = {}
        #: True when memory was asked for; each actor then measures its own process.
        self.measures_memory = measure_memory
        #: Why memory was not measured (None when it was, or was not asked for).
        self.memory_unmeasured: str | None = None
        #: Device id -> the host it runs on (its ``host``, else the node's hostname).
        self.hosts: dict[str, str] = {}
        #: Device id -> {"hostname", "node_ip", "pid", "threads"} reported by its actor.
        self.placement: dict[str, dict[str, Any]] = {}
        self._parts = {p.index: p for p in plan.partitions}
        self._actors: dict[str, Any] = {}
        self._payloads: dict[str, Any] = {}
        #: Device id -> Ray's restart count of its actor when last seen alive.
        self._restarts_seen: dict[str, int] = {}
        #: Devices lost in an earlier run: the next run waits for Ray to restart them.
        self._recovering: set[str] = set()
        self._input_names = tuple(t.name for t in plan.model.inputs)
        self._input_specs = tuple(InputSpec.of(t.name, t.dtype, t.shape)
                                  for t in plan.model.inputs)
        self._graph_outputs = [t.name for t in plan.model.outputs]
        unknown = sorted(set(device_outputs) - set(self._graph_outputs))
        if unknown:
            raise RunError(f"device_outputs names no output of the model: {unknown}")
        self._deps = {i: sorted({x.from_partition for x in p.inputs
                                 if x.from_partition is not None})
                      for i, p in self._parts.items()}
        self._feeds_of = {i: sorted({x.name for x in p.inputs if x.from_partition is None})
                          for i, p in self._parts.items()}
        self._inputs = {i: tuple(
            PartitionInput(x.name, x.from_partition, x.nbytes,
                           x.from_partition is not None
                           and self._parts[x.from_partition].device != p.device)
            for x in p.inputs) for i, p in self._parts.items()}
        #: Partition -> the outputs other partitions read, then the ``device_outputs`` it
        #: makes, in the order ``run`` returns them (each its own ObjectRef).
        self._returns = {i: tuple(o.name for o in p.outputs if o.to_partitions) + tuple(
            o.name for o in p.outputs if o.graph_output and o.name in device_outputs
            and not o.to_partitions) for i, p in self._parts.items()}
        #: Partition -> the model outputs it returns to the driver inside its record.
        self._to_driver = {i: tuple(o.name for o in p.outputs
                                    if o.graph_output and o.name not in device_outputs)
                           for i, p in self._parts.items()}
        self._device_outputs = {i: tuple((o.name, 1 + self._returns[i].index(o.name))
                                         for o in p.outputs if o.name in device_outputs)
                                for i, p in self._parts.items()}
        #: Partition -> its boundary inputs, in argument order (that of
        #: ``worker.boundary_names``): (name, producer, the producer's return slot).
        self._arguments = {i: tuple((x.name, x.from_partition,
                                     1 + self._returns[x.from_partition].index(x.name))
                                    for x in self._inputs[i] if x.from_partition is not None)
                           for i in self._parts}
        self._level: dict[int, int] = {}
        for i in sorted(self._parts):  # partitions are numbered in dependency order
            self._level[i] = 1 + max((self._level[d] for d in self._deps[i]), default=-1)
        self._output_parts = sorted({i for i, p in self._parts.items()
                                     for o in p.outputs if o.graph_output})
        used_ids = {p.device for p in plan.partitions}
        used = [d for d in plan.cluster.devices if d.id in used_ids]
        self._connection = RayConnection(address, hosts_of(used))
        try:
            self._connection.open()
            ray = ray_module()
            self._check_devices(ray, used_ids)
            self._start(ray, used, plan_dir, models, emulate)
        except BaseException:
            self.close()
            raise

    def _check_devices(self, ray: Any, device_ids: set[str]) -> None:
        """Every device advertised (else fail at once), and free: an actor of a run that just
        ended frees its device a moment later, so a held device is waited for, bounded."""
        deadline = time.monotonic() + RELEASE_TIMEOUT_S
        while True:
            try:
                check_advertised(device_ids, ray.cluster_resources(),
                                 ray.available_resources(), self.where)
                return
            except RayClusterError as exc:
                if "held by" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def where(self) -> str:
        """The cluster this executor runs on, for messages."""
        return self._connection.where

    # -- start ---------------------------------------------------------------------------------

    def _start(self, ray: Any, devices: list[DeviceSpec], plan_dir: str | Path | None,
               models: Mapping[int, onnx.ModelProto | str | Path] | None, emulate: bool) -> None:
        remote = ray.remote(DeviceWorker)
        ready = {}
        for device in devices:
            mine = [p for p in self.plan.partitions if p.device == device.id]
            payload = ray.put({
                p.index: _partition_bytes(
                    models[p.index] if models is not None else Path(plan_dir or ".") / p.file,
                    p.index)
                for p in mine
            })
            spec = WorkerSpec(
                device=device,
                inputs={p.index: self._inputs[p.index] for p in mine},
                returns={p.index: self._returns[p.index] for p in mine},
                to_driver={p.index: self._to_driver[p.index] for p in mine},
                emulate=emulate,
                measure_memory=self.measures_memory,
            )
            # Held for the executor's life: Ray restarts an actor from its constructor's
            # arguments, and an argument no one references is gone (ray-project/ray#53727).
            self._payloads[device.id] = payload
            actor = remote.options(
                resources={device_resource(device.id): 1}, num_cpus=0,
                max_restarts=self.restarts, max_task_retries=0,
            ).remote(spec, payload)
            self._actors[device.id] = actor
            ready[device.id] = actor.ready.remote()
        done, pending = ray.wait(list(ready.values()), num_returns=len(ready),
                                 timeout=READY_TIMEOUT_S)
        if pending:
            late = sorted(d for d, ref in ready.items() if ref in pending)
            raise RayClusterError(
                f"Ray cluster {self.where}: device(s) {', '.join(map(repr, late))} did not "
                f"prepare their partitions within {READY_TIMEOUT_S:.0f} s")
        for device in devices:
            try:
                info = ray.get(ready[device.id], timeout=READY_TIMEOUT_S)
            except ray.exceptions.RayActorError as exc:
                raise RunError(f"device {device.id!r}: its Ray actor died while starting: "
                               f"{_first_line(exc)}") from None
            if info["failure"]:
                raise RunError(info["failure"])
            self._restarts_seen[device.id] = _actor_state(ray, self._actors[device.id])[1]
            self.hosts[device.id] = device.host or info["hostname"]
            self.placement[device.id] = {k: info[k]
                                         for k in ("hostname", "node_ip", "pid", "threads")}
            self.prepare_s.update(info["prepare_s"])
            if info["memory_unmeasured"] and self.memory_unmeasured is None:
                self.memory_unmeasured = f"device {device.id!r}: {info['memory_unmeasured']}"
            if info["emulated"]:
                self.emulated[device.id] = info["emulated"]
                logger.warning("emulating device %s on ONNX Runtime CPU: %s", device.id,
                               info["emulated"])

    # -- runs ----------------------------------------------------------------------------------

    def run(self, feeds: Mapping[str, Any]) -> RunResult:
        """Run one input; returns outputs and measurements (as ``Executor.run``).

        Raises:
            RunError: bad inputs, or a partition that failed (naming it and its device).
            DeviceLostError: a device's actor died (naming the device, host and partition).
        """
        return self._execute([feeds])[0]

    def stream(self, feeds: Sequence[Mapping[str, Any]]) -> StreamResult:
        """Run ``feeds`` pipelined: every call is submitted at once, devices work in parallel."""
        started = time.perf_counter()
        results = self._execute(feeds)
        return StreamResult(results, time.perf_counter() - started)

    def measure_memory(self, feeds: Mapping[str, Any]) -> dict[str, DeviceMemory]:
        """Run ``feeds`` once and return each device's measured peak memory: its actor's
        process alone, charged as the in-process executor charges a device
        (``runtime.memory``; {} unless created with ``measure_memory=True`` on nodes that
        can measure it). Call it before any other run, as ``Executor.measure_memory``.
        """
        if not self.measures_memory or self.memory_unmeasured is not None:
            return {}
        ray = ray_module()
        actors = sorted(self._actors.items())
        try:
            # Each actor runs its calls in submission order: the flag precedes the run.
            ray.get([actor.start_memory_run.remote() for _, actor in actors],
                    timeout=self.timeout_s)
            self._execute([feeds])
            found = ray.get([actor.memory.remote() for _, actor in actors],
                            timeout=self.timeout_s)
        except ray.exceptions.RayError as exc:
            raise RunError(f"measuring memory on Ray cluster {self.where}: "
                           f"{_first_line(exc)}") from None
        return {device: DeviceMemory(**record)
                for (device, _), record in zip(actors, found, strict=True) if record}

    def _execute(self, items: Sequence[Mapping[str, Any]]) -> list[RunResult]:
        ray = ray_module()
        batch = [self._model_inputs(ray, f) for f in items]
        self._recover(ray)
        submitted = time.perf_counter()
        deadline = submitted + self.timeout_s
        order = sorted((k + self._level[i], k, i)
                       for k in range(len(batch)) for i in self._parts)
        calls: dict[tuple[int, int], Any] = {}  # (input, partition) -> its record's ref
        returned: dict[tuple[int, int], list[Any]] = {}  # ... -> every ref it returns
        for _, k, i in order:
            part = self._parts[i]
            # Model inputs come from the driver anyway: passed by value, Ray inlines small
            # ones into the call and puts large ones in the object store once per call.
            feeds = {name: batch[k][name] for name in self._feeds_of[i]}
            # Fed-back device outputs travel as top-level refs, resolved by Ray like
            # boundary tensors, after them (``DeviceWorker.run``).
            held = [n for n, v in feeds.items() if isinstance(v, ray.ObjectRef)]
            tensors = [returned[(k, src)][slot] for _, src, slot in self._arguments[i]]
            tensors += [feeds.pop(n) for n in held]
            refs = self._actors[part.device].run.options(
                num_returns=1 + len(self._returns[i])).remote(i, feeds, held, *tensors)
            returned[(k, i)] = refs if isinstance(refs, list) else [refs]
            calls[(k, i)] = returned[(k, i)][0]
        kept = [{name: returned[(k, i)][slot] for i in self._parts
                 for name, slot in self._device_outputs[i]} for k in range(len(batch))]
        del returned  # the boundary tensors' refs: Ray frees each once its consumer ran
        ready_at = self._wait_outputs(ray, calls, len(batch), deadline, order)
        keys = [(k, i) for _, k, i in order]
        try:
            records = dict(zip(keys, ray.get([calls[key] for key in keys],
                                             timeout=_left(deadline)), strict=True))
            previous = _previous_on_device(order, self._parts)
            results = [self._result(k, batch[k], records, previous, ready_at[k] - submitted,
                                    kept[k]) for k in range(len(batch))]
        except (ray.exceptions.RayError, PartitionerError) as exc:
            raise self._diagnose(ray, exc, calls, order) from None
        return results

    def _model_inputs(self, ray: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """``feeds`` checked and conformed to the plan's inputs; ObjectRefs (device outputs
        fed back) pass as they are, for the actor that reads them to resolve."""
        return model_inputs(feeds, self._input_names, self._input_specs,
                            lambda value: isinstance(value, ray.ObjectRef))

    def _check_health(self, ray: Any, calls: Mapping[tuple[int, int], Any],
                      order: Sequence[tuple[int, int, int]]) -> None:
        """Raise DeviceLostError when an actor died or was restarted by Ray during this run:
        its in-flight calls would otherwise wait for the restart (seconds) before failing."""
        for device, actor in self._actors.items():
            state, restarts = _actor_state(ray, actor)
            if state == "ALIVE" and restarts == self._restarts_seen.get(device, restarts):
                continue
            # The device's first unfinished call in submission order is the one it was running.
            item, index = next(((k, i) for _, k, i in order if self._parts[i].device == device
                                and not ray.wait([calls[(k, i)]], timeout=0)[0]),
                               (0, min(i for i, p in self._parts.items() if p.device == device)))
            raise self._lost(index, item, RuntimeError(
                f"its Ray actor is {state.lower()} (restarted {restarts} time(s))"))

    def _recover(self, ray: Any) -> None:
        """Before a run: wait (bounded) for actors Ray restarts after a loss to be ready."""
        for device in sorted(self._recovering):
            actor = self._actors[device]
            deadline = time.monotonic() + READY_TIMEOUT_S
            # Calls to a restarting actor fail at once (max_task_retries=0): wait until alive.
            state = _actor_state(ray, actor)[0]
            while state not in ("ALIVE", "DEAD") and time.monotonic() < deadline:
                # A node that left takes its device with it: Ray would wait for it forever.
                total = ray.cluster_resources()
                check_advertised([device], total, total, self.where)
                time.sleep(0.1)
                state = _actor_state(ray, actor)[0]
            try:
                info = ray.get(actor.ready.remote(), timeout=_left_monotonic(deadline))
            except ray.exceptions.RayError as exc:
                first = min(i for i, p in self._parts.items() if p.device == device)
                raise self._lost(first, 0, exc) from None
            if info["failure"]:
                raise RunError(info["failure"])
            self.placement[device] = {k: info[k]
                                      for k in ("hostname", "node_ip", "pid", "threads")}
            self._restarts_seen[device] = _actor_state(ray, actor)[1]
            self._recovering.discard(device)

    def _wait_outputs(self, ray: Any, calls: Mapping[tuple[int, int], Any], items: int,
                      deadline: float, order: Sequence[tuple[int, int, int]]) -> list[float]:
        """When each input's output-producing calls finished (or failed: then diagnosed)."""
        pending = {calls[(k, i)]: k for k in range(items) for i in self._output_parts}
        left = [len(self._output_parts)] * items
        ready_at = [time.perf_counter()] * items
        checked = time.monotonic()
        while pending:
            wait_s = _left(deadline)
            if wait_s <= 0:
                raise self._timed_out(ray, calls, pending.values())
            if time.monotonic() - checked >= HEALTH_CHECK_S:
                self._check_health(ray, calls, order)
                checked = time.monotonic()
            done, _ = ray.wait(list(pending), num_returns=1,
                               timeout=min(wait_s, HEALTH_CHECK_S))
            if done:
                done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            now = time.perf_counter()
            for ref in done:
                k = pending.pop(ref)
                left[k] -= 1
                if left[k] == 0:
                    ready_at[k] = now
        return ready_at

    def _result(self, k: int, feeds: Mapping[str, Any],
                records: Mapping[tuple[int, int], Mapping[str, Any]],
                previous: Mapping[tuple[int, int], tuple[int, int]],
                latency_s: float, refs: Mapping[str, Any]) -> RunResult:
        result = RunResult(dict(refs), latency_s, {})
        for i in self._parts:
            record = records[(k, i)]
            result.partition_s[i] = record["partition_s"]
            result.spans[i] = tuple(record["span"])  # type: ignore[assignment]
            result.outputs.update(record["values"])
            free_at = previous.get((k, i))
            for x in self._inputs[i]:
                if x.crosses and x.from_partition is not None:
                    ready = records[(k, x.from_partition)]["span"][1]
                    if free_at is not None:
                        ready = max(ready, records[free_at]["span"][1])
                    result.transfers.append(TransferTiming(
                        x.name, x.from_partition, i, x.nbytes,
                        max(0.0, record["started"] - ready)))
        for name in self._graph_outputs:
            if name not in result.outputs:
                if name not in feeds:
                    raise RunError(f"model output {name!r} was produced by no partition")
                result.outputs[name] = feeds[name]
        return result

    # -- faults --------------------------------------------------------------------------------

    def _diagnose(self, ray: Any, exc: BaseException, calls: Mapping[tuple[int, int], Any],
                  order: Sequence[tuple[int, int, int]]) -> PartitionerError:
        """The first failed call in submission order, as a one-line error naming it."""
        if isinstance(exc, PartitionerError):
            return exc
        for _, k, i in order:
            try:
                ray.get(calls[(k, i)], timeout=0)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayActorError as failed:
                return self._lost(i, k, failed)
            except ray.exceptions.RayTaskError as failed:
                cause = failed.cause
                if isinstance(cause, ray.exceptions.RayActorError):
                    return self._lost(i, k, cause)
                if isinstance(cause, PartitionerError):
                    return RunError(one_line(str(cause)))
                part = self._parts[i]
                return RunError(f"partition {i} on {part.device} (host "
                                f"{self.hosts.get(part.device, '?')}) failed: "
                                f"{_first_line(failed)}")
            except ray.exceptions.RayError as failed:
                return self._lost(i, k, failed)
        return RunError(f"run on Ray cluster {self.where} failed: {_first_line(exc)}")

    def _lost(self, index: int, item: int, exc: BaseException) -> DeviceLostError:
        device = self._parts[index].device
        self._recovering.add(device)
        again = (f"Ray restarts its actor (--restarts {self.restarts}), so the next run can go "
                 "on" if self.restarts else "rerun with --restarts N to let Ray restart it")
        return DeviceLostError(
            f"device {device!r} on host {self.hosts.get(device, '?')} was lost while running "
            f"partition {index} (input {item}): {_first_line(exc)}; nothing was rerun "
            f"elsewhere; {again}")

    def _timed_out(self, ray: Any, calls: Mapping[tuple[int, int], Any],
                   waiting: Any) -> PartitionerError:
        """A run past its deadline: name devices whose node left, else the late partitions."""
        used = {p.device for p in self._parts.values()}
        try:
            total = ray.cluster_resources()
            check_advertised(used, total, total, self.where)
        except RayClusterError as gone:
            return DeviceLostError(f"{gone} (a node left during the run)")
        late = sorted({i for (k, i), ref in calls.items()
                       if ray.wait([ref], timeout=0)[1]})
        where = ", ".join(f"partition {i} on {self._parts[i].device}" for i in late[:5])
        return RunError(f"run on Ray cluster {self.where} did not finish within "
                        f"{self.timeout_s:.0f} s (waiting for {where})")

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the actors and disconnect (and stop the local cluster this executor started)."""
        actors, self._actors = self._actors, {}
        self._payloads = {}
        if actors:
            try:
                import ray

                for actor in actors.values():
                    ray.kill(actor, no_restart=True)
                if not self._connection.owns_session:
                    _wait_released(ray, actors)
            except Exception as exc:  # the cluster may be gone already
                logger.debug("killing actors: %s", exc)
        self._connection.close()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _previous_on_device(order: Sequence[tuple[int, int, int]], parts: Mapping[int, Any]
                        ) -> dict[tuple[int, int], tuple[int, int]]:
    """(input, partition) -> the call its device ran just before (an actor runs its calls in
    submission order), for telling a hand-off from waiting for a busy device."""
    last: dict[str, tuple[int, int]] = {}
    previous = {}
    for _, k, i in order:
        device = parts[i].device
        if device in last:
            previous[(k, i)] = last[device]
        last[device] = (k, i)
    return previous


#: Seconds between checks, while a run waits, that every actor is alive and not restarted.
HEALTH_CHECK_S = 0.5


def _actor_state(ray: Any, actor: Any) -> tuple[str, int]:
    """(state, restart count) of ``actor`` from Ray's GCS actor table (``ALIVE``,
    ``RESTARTING``, ``DEAD``, ...). Ray has no public call for it outside the dashboard's
    state API, which a cluster may not run."""
    from ray._private import state

    info = state.actors(actor_id=actor._actor_id.hex())
    return str(info.get("State", "UNKNOWN")), int(info.get("NumRestarts", 0))


#: Seconds :meth:`RayExecutor.close` waits for Ray to free the devices of killed actors.
RELEASE_TIMEOUT_S = 10.0


def _wait_released(ray: Any, actors: Mapping[str, Any]) -> None:
    """Wait (bounded) until the killed actors' devices are free again, so that the next
    executor on a cluster that stays up finds them available."""
    wanted = {device_resource(d) for d in actors}
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    while time.monotonic() < deadline:
        free = ray.available_resources()
        if all(free.get(r, 0) >= 1 for r in wanted):
            return
        time.sleep(0.05)
    logger.warning("Ray has not freed devices %s after %.0f s", sorted(actors),
                   RELEASE_TIMEOUT_S)


def _left_monotonic(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.perf_counter())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return one_line(text.splitlines()[0]) if text else type(exc).__name__


def _partition_bytes(source: onnx.ModelProto | str | Path, index: int) -> bytes:
    """A partition as one serialized ModelProto, external weights included."""
    try:
        model = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source))
    except Exception as exc:
        raise RunError(f"partition {index}: cannot load {source}: {exc}") from exc
    size = model.ByteSize()
    if size > MAX_PARTITION_BYTES:
        raise RunError(f"partition {index}: {size / 2**30:.1f} GiB is over protobuf's 2 GiB, "
                       "which shipping it to a Ray actor as one model needs")
    return model.SerializeToString()
