"""The Ray actor of one plan device: prepares that device's partitions once, then runs them.

Ray wraps :class:`DeviceWorker` with ``ray.remote`` when a plan starts (so importing this
module imports no Ray). It is built once per run of the executor with the device's spec and
its partitions' ONNX bytes (shipped once through the object store), and prepares them with
the device's runner (``partitioner.registry.get_runner``, the options the in-process executor
uses). Ray sets ``OMP_NUM_THREADS=1`` in workers, so the runner's thread count is set
explicitly: the device's ``threads`` option, else every CPU this process may use.

``run`` receives the model inputs it reads by value (from the driver, where they start) and
its producers' results (resolved by Ray before the call: small dicts of ObjectRefs). It fetches
each input itself, timing the fetch of every tensor from another device as that boundary's
transfer, runs the partition, and ``ray.put``s each output another partition reads into this
node's object store: consumers pull them from here, never through the driver (a small task
return value would travel inline through the caller). Model outputs, which the driver
fetches anyway, are returned with the call.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from partitioner.cluster.types import DeviceSpec
from partitioner.errors import PartitionerError, RunError
from partitioner.runtime.feeds import one_line

#: Seconds a worker waits for one input tensor (its producer has finished when Ray starts
#: the call, so only a lost node makes it wait).
FETCH_TIMEOUT_S = 60.0


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
    outputs other partitions read (``returns``: put in the object store) and the model
    outputs (``to_driver``: returned to the driver, where they go anyway), and whether an
    absent runner may be emulated."""

    device: DeviceSpec
    inputs: dict[int, tuple[PartitionInput, ...]]
    returns: dict[int, tuple[str, ...]]
    to_driver: dict[int, tuple[str, ...]]
    emulate: bool

    @property
    def host(self) -> str:
        return self.device.host or "-"


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
        options = dict(spec.device.runner_options)
        self.threads = worker_threads(options)
        os.environ["OMP_NUM_THREADS"] = str(self.threads)  # Ray's default is 1
        try:
            runner, options = self._runner(options)
            options["threads"] = self.threads
            import onnx

            for index in sorted(partitions):
                label = f"partition {index} on {spec.device.id}"
                started = time.perf_counter()
                model = onnx.ModelProto.FromString(partitions[index])
                self._prepared[index] = runner.prepare(model, {**options, "label": label})
                self.prepare_s[index] = time.perf_counter() - started
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
        }

    def run(self, index: int, feeds: Mapping[str, Any], *producers: Mapping[str, Any]
            ) -> dict[str, Any]:
        """Run partition ``index``: fetch its inputs, call the runner, put its outputs.

        Returns ``{"outputs": {name: ObjectRef}, "values": {model output: array}, "span":
        (start, end) wall-clock seconds of the runner call, "partition_s", "transfers":
        [(tensor, src, dst, bytes, seconds)]}``.
        """
        import ray

        if self.failure is not None:
            raise RunError(self.failure)
        refs: dict[str, Any] = {}
        for produced in producers:
            refs.update(produced["outputs"])
        inputs: dict[str, Any] = {}
        transfers = []
        for spec in self.spec.inputs[index]:
            if spec.from_partition is None:
                inputs[spec.name] = feeds[spec.name]
                continue
            c0 = time.perf_counter()
            inputs[spec.name] = ray.get(refs[spec.name], timeout=FETCH_TIMEOUT_S)
            if spec.crosses:
                transfers.append((spec.name, spec.from_partition, index, spec.nbytes,
                                  time.perf_counter() - c0))
        start, r0 = time.time(), time.perf_counter()
        try:
            outputs = self._prepared[index].run(inputs)
        except PartitionerError as exc:
            raise RunError(self._failure(index, str(exc))) from None
        except Exception as exc:  # a runner bug must still name the partition
            raise RunError(self._failure(index, f"{type(exc).__name__}: {exc}")) from None
        partition_s = time.perf_counter() - r0
        end = start + partition_s
        wanted = (*self.spec.returns[index], *self.spec.to_driver[index])
        missing = [n for n in wanted if n not in outputs]
        if missing:
            raise RunError(self._failure(index, f"its runner returned no tensor {missing}"))
        return {
            "outputs": {name: ray.put(outputs[name]) for name in self.spec.returns[index]},
            "values": {name: outputs[name] for name in self.spec.to_driver[index]},
            "span": (start, end),
            "partition_s": partition_s,
            "transfers": transfers,
        }

    def _failure(self, index: int, message: str) -> str:
        prefix = f"partition {index} on {self.spec.device.id}"
        message = one_line(message)
        message = message[len(prefix):].lstrip(" :") if message.startswith(prefix) else message
        return f"{prefix} (host {self.spec.host}) failed: {message}"

    def pid(self) -> int:
        return os.getpid()
