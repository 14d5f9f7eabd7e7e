"""The Ray actor of one plan device: prepares that device's partitions once, then runs them.

Ray wraps :class:`DeviceWorker` with ``ray.remote`` when a plan starts (so importing this
module imports no Ray). It is built once per run of the executor with the device's spec and
its partitions' ONNX bytes (shipped once through the object store), and prepares them with
the device's runner (``partitioner.registry.get_runner``, the options the in-process executor
uses). Ray sets ``OMP_NUM_THREADS=1`` in workers, so the runner's thread count is set
explicitly: the device's ``threads`` option, else every CPU this process may use.

``run`` receives the model inputs it reads by value (from the driver, where they start) and
its boundary tensors as top-level ObjectRef arguments, which Ray resolves before the call
starts; it returns its timing record (with the model outputs it makes, which the driver
fetches anyway) and then each tensor another partition reads as a return value of its own
(``num_returns``), so every boundary tensor is one ObjectRef that its consumer's call takes
as an argument. The driver never ``ray.get``s one; where its bytes travel is Ray's protocol
(docs/pitfalls.md): a return over ``max_direct_call_object_size`` (100 KB by default) stays
in the producing node's object store and the consumer's node pulls it; a smaller one is
inlined, through the owner (the driver's Ray core worker) into the consumer's call.
Measured, that is far cheaper than either object-store hand-offs of small tensors or nested
``ray.put`` refs fetched by the worker (docs/pitfalls.md).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from partitioner.cluster.types import DeviceSpec
from partitioner.errors import PartitionerError, RunError
from partitioner.runtime.feeds import one_line
from partitioner.runtime.memory import (
    RssLedger,
    device_memory,
    load_runtime,
    rss_unavailable_reason,
)


@dataclass(frozen=True)
class PartitionInput:
    """One input of a partition: its tensor, producer partition (None: a model input),
    bytes, and whether it comes from another device (a boundary, timed)."""

    name: str
    from_partition: int | None
    nbytes: int
    crosses: bool


@dataclass(frozen=True)
class WorkerSpec:
    """What a device's actor needs, in plain data: the device, its partitions' inputs, the
    outputs other partitions read (``returns``: each its own return value, in this order)
    and the model outputs (``to_driver``: in the record, for the driver), whether an
    absent runner may be emulated, and whether to measure the process's memory
    (``runtime.memory``: the runtime load, then each partition's preparation)."""

    device: DeviceSpec
    inputs: dict[int, tuple[PartitionInput, ...]]
    returns: dict[int, tuple[str, ...]]
    to_driver: dict[int, tuple[str, ...]]
    emulate: bool
    measure_memory: bool = False

    @property
    def host(self) -> str:
        return self.device.host or "-"


def boundary_names(inputs: tuple[PartitionInput, ...]) -> tuple[str, ...]:
    """The inputs another partition produces, in the order ``DeviceWorker.run`` takes them."""
    return tuple(x.name for x in inputs if x.from_partition is not None)


def worker_threads(options: Mapping[str, Any]) -> int:
    """The runner's thread count: its ``threads`` option, else every usable CPU."""
    threads = int(options.get("threads") or 0)
    return threads if threads > 0 else len(os.sched_getaffinity(0))


class DeviceWorker:
    """One device's partitions, prepared once (the body of a Ray actor)."""

    def __init__(self, spec: WorkerSpec, partitions: Mapping[int, bytes]) -> None:
        self.spec = spec
        self.failure: str | None = None
        self.emulated: str | None = None
        self.prepare_s: dict[int, float] = {}
        self._prepared: dict[int, Any] = {}
        #: Why this process's memory is not measured (None when it is, or was not asked).
        self.memory_unmeasured: str | None = None
        self._ledger: RssLedger | None = None
        #: RSS before the last call of a memory run (None: not measuring).
        self._measured_call: int | None = None
        self._measuring = False
        options = dict(spec.device.runner_options)
        self.threads = worker_threads(options)
        os.environ["OMP_NUM_THREADS"] = str(self.threads)  # Ray's default is 1
        try:
            runner, options = self._runner(options)
            options["threads"] = self.threads
            import onnx

            ledger = self._start_ledger(runner, options) if spec.measure_memory else None
            for index in sorted(partitions):
                label = f"partition {index} on {spec.device.id}"
                before = ledger.now() if ledger else 0
                started = time.perf_counter()
                model = onnx.ModelProto.FromString(partitions[index])
                self._prepared[index] = runner.prepare(model, {**options, "label": label})
                self.prepare_s[index] = time.perf_counter() - started
                if ledger:
                    ledger.charge_prepare(spec.device.id, before)
        except Exception as exc:  # reported by ready(): an actor that dies in __init__ says less
            self.failure = one_line(f"device {spec.device.id!r} on host {spec.host}: {exc}")

    def _runner(self, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        from partitioner.registry import get_runner
        from partitioner.runtime.executor import EMULATION_RUNNER

        runner = get_runner(self.spec.device.runner)
        reason = runner.absent_reason(options)
        if reason is None:
            return runner, options
        if not self.spec.emulate:
            raise RunError(f"not available on this node: {reason} (pass --emulate to map it "
                           "onto ONNX Runtime CPU)")
        self.emulated = reason
        name, emulated_options = EMULATION_RUNNER
        return get_runner(name), dict(emulated_options)

    def _start_ledger(self, runner: Any, options: dict[str, Any]) -> RssLedger | None:
        """A ledger charging this process's memory to the device, its runtime loaded first
        (None, with ``memory_unmeasured`` saying why, where RSS cannot be read)."""
        self.memory_unmeasured = rss_unavailable_reason()
        if self.memory_unmeasured is not None:
            return None
        self._ledger = RssLedger()
        before = self._ledger.now()
        load_runtime(runner, options, self.spec.device.id)
        self._ledger.charge_runtime(self.spec.device.id, before)
        return self._ledger

    def start_memory_run(self) -> bool:
        """Charge the calls that follow, up to :meth:`memory`, to the device (call it
        before any run: runtimes keep what their first run reserves); False when this
        process cannot measure."""
        self._measuring = self._ledger is not None
        return self._measuring

    def memory(self) -> dict[str, Any] | None:
        """End the memory run: the device's ``DeviceMemory`` as JSON (None: not measured)."""
        ledger, self._measuring = self._ledger, False
        if ledger is None:
            return None
        self._charge_kept()
        return device_memory(self.spec.device.id, self._prepared.values(), ledger).to_json()

    def _charge_kept(self) -> None:
        """What the previous measured call left in this process (arena growth, the inputs
        that came since) stays charged to the device for its later calls."""
        if self._ledger is not None and self._measured_call is not None:
            self._ledger.keep(self.spec.device.id, self._measured_call)
        self._measured_call = None

    def ready(self) -> dict[str, Any]:
        """Where this actor runs and how its partitions were prepared."""
        import ray

        return {
            "failure": self.failure,
            "hostname": socket.gethostname(),
            "node_ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "threads": self.threads,
            "prepare_s": dict(self.prepare_s),
            "emulated": self.emulated,
            "memory_unmeasured": self.memory_unmeasured,
        }

    def run(self, index: int, feeds: Mapping[str, Any], held: Sequence[str] = (),
            *tensors: Any) -> Any:
        """Run partition ``index`` on the model inputs ``feeds`` and ``tensors``: its boundary
        tensors (``boundary_names(index)`` order), then the model inputs named in ``held``
        that came as ObjectRefs (device outputs fed back), all resolved by Ray before the
        call.

        Returns ``(record, *outputs)`` (``record`` alone when no other partition reads an
        output): ``outputs`` are ``returns[index]`` in order and
        ``record`` is ``{"values": {model output: array}, "span": (start, end) wall-clock
        seconds of the runner call, "started": wall clock when this call began (its inputs
        in hand), "partition_s"}``.
        """
        started = time.time()
        if self.failure is not None:
            raise RunError(self.failure)
        inputs = dict(feeds)
        inputs.update(zip((*self.boundary_names(index), *held), tensors, strict=True))
        ledger = self._ledger if self._measuring else None
        if ledger is not None:
            self._charge_kept()
            self._measured_call = before = ledger.start_call()
        start, r0 = time.time(), time.perf_counter()
        try:
            outputs = self._prepared[index].run(inputs)
        except PartitionerError as exc:
            raise RunError(self._failure(index, str(exc))) from None
        except Exception as exc:  # a runner bug must still name the partition
            raise RunError(self._failure(index, f"{type(exc).__name__}: {exc}")) from None
        partition_s = time.perf_counter() - r0
        if ledger is not None:
            ledger.end_call(self.spec.device.id, before)
        returns = self.spec.returns[index]
        missing = [n for n in (*returns, *self.spec.to_driver[index]) if n not in outputs]
        if missing:
            raise RunError(self._failure(index, f"its runner returned no tensor {missing}"))
        record = {
            "values": {name: outputs[name] for name in self.spec.to_driver[index]},
            "span": (start, start + partition_s),
            "started": started,
            "partition_s": partition_s,
        }
        if not returns:  # num_returns=1: Ray would store a 1-tuple as one value
            return record
        return (record, *(outputs[name] for name in returns))

    def boundary_names(self, index: int) -> tuple[str, ...]:
        """The tensors partition ``index`` reads from other partitions, in argument order."""
        return boundary_names(self.spec.inputs[index])

    def _failure(self, index: int, message: str) -> str:
        prefix = f"partition {index} on {self.spec.device.id}"
        message = one_line(message)
        message = message[len(prefix):].lstrip(" :") if message.startswith(prefix) else message
        return f"{prefix} (host {self.spec.host}) failed: {message}"

    def pid(self) -> int:
        return os.getpid()
