"""The plan executor: prepares every partition once, runs them concurrently and pipelined.

One dispatcher drives every run. A (input, partition) task is ready when the partitions it
depends on have finished for that input; each device runs one task at a time (lowest input,
then lowest partition first), so independent partitions on different devices overlap (ONNX
Runtime and OpenVINO release the GIL) and, with several inputs, devices form a pipeline. When
exactly one task can start and nothing else runs, it runs inline on the calling thread, so a
chain of partitions pays no thread hand-off, unless its device is pinned to cores: each
device has its own worker thread, pinned once, because moving a thread between cores for
every call costs more than the hand-off (docs/pitfalls.md). Tensors change hands only
between different devices (a device value comes to the host; host arrays pass without a
copy); each partition run and each hand-off is timed with ``perf_counter``.

Model inputs are conformed once per run to the plan's declared TensorSpecs
(``partitioner.runtime.feeds.conform``: NumPy and Python scalars, 0-d arrays and lists become
contiguous arrays of the declared dtype; a wrong dtype or shape is a one-line RunError). A
runner that fails, or returns fewer tensors than the plan expects of its partition, raises
a RunError naming the partition, its device and the tensor where known.

The executor knows runners only through ``partitioner.protocols``: whether a device's
provider or plugin is present (``Runner.absent_reason``), which CPUs a partition's calls are
pinned to (``PreparedPartition.pinned_cpus``) and whether its outputs stay on a device
(``device_resident`` / ``run_device``) are the runners' to say.

With ``measure_memory=True`` (``hetpart run``) the executor also measures each device's peak
memory (``partitioner.runtime.memory``): it loads every runtime once with a one-node model
before preparing, charges each device the RSS growth of preparing its partitions, and
:meth:`Executor.measure_memory` runs one input partition by partition charging each call's
peak; a prepared partition that implements ``MemoryReporting`` gives its allocator's number
instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from partitioner.cluster.types import DeviceSpec
from partitioner.errors import ClusterError, PartitionerError, RunError
from partitioner.plan.types import Plan, PlanPartition
from partitioner.profiling.timing import pin_thread
from partitioner.protocols import PreparedPartition, Runner
from partitioner.registry import RunnerProtocolError, check_prepared, get_runner
from partitioner.runtime.feeds import InputSpec, model_inputs, one_line
from partitioner.runtime.memory import (
    DeviceMemory,
    RssLedger,
    device_memory,
    load_runtime,
    rss_unavailable_reason,
)

logger = logging.getLogger(__name__)

#: The local runner an absent device is mapped onto with ``emulate=True``.
EMULATION_RUNNER = ("onnxruntime", {"provider": "CPUExecutionProvider", "threads": 1})


@dataclass(slots=True)
class TransferTiming:
    """One hand-off of ``tensor`` from partition ``src`` to ``dst`` (different devices).

    Not frozen: a frozen dataclass costs ~1.7 us to build against ~0.4 us, once per boundary
    per run (docs/pitfalls.md).
    """

    tensor: str
    src_partition: int
    dst_partition: int
    nbytes: int
    seconds: float


@dataclass
class RunResult:
    """One input through the plan.

    Attributes:
        outputs: Model outputs by name (NumPy arrays).
        latency_s: Wall time from the first partition's start to the last one's end.
        partition_s: Measured run time per partition index.
        transfers: Every cross-device hand-off, timed.
        spans: Partition index -> (start, end) ``perf_counter`` stamps of its runner call.
    """

    outputs: dict[str, np.ndarray]
    latency_s: float
    partition_s: dict[int, float]
    transfers: list[TransferTiming] = field(default_factory=list)
    spans: dict[int, tuple[float, float]] = field(default_factory=dict)


@dataclass
class StreamResult:
    """N inputs pipelined through the plan."""

    results: list[RunResult]
    wall_s: float

    @property
    def throughput_per_s(self) -> float:
        return len(self.results) / self.wall_s if self.wall_s > 0 else float("inf")


@dataclass
class _Task:
    item: int
    index: int
    waiting: int


class Executor:
    """Runs a plan's partitions on their devices' runners.

    Args:
        plan: The plan.
        plan_dir: Directory holding the partition files (``plan.partitions[i].file``).
        models: Alternatively, partition index -> ModelProto or path (e.g. extracted in memory).
        emulate: Map every device whose runner, provider or plugin is absent here onto ONNX
            Runtime CPU; timings of those devices are then emulated (see ``emulated``).
        measure_memory: Charge memory to devices while preparing (see
            :meth:`measure_memory`); ``memory_unmeasured`` says why not where it cannot.

    Raises:
        RunnerNotAvailableError / ClusterError: a device is absent and ``emulate`` is False.
        RunError: a runner cannot prepare a partition.
    """

    def __init__(
        self,
        plan: Plan,
        plan_dir: str | Path | None = None,
        *,
        models: Mapping[int, onnx.ModelProto | str | Path] | None = None,
        emulate: bool = False,
        measure_memory: bool = False,
        device_outputs: Collection[str] = (),
    ) -> None:
        if plan_dir is None and models is None:
            raise RunError("Executor needs a plan directory or in-memory partition models")
        self.plan = plan
        self._parts = {p.index: p for p in plan.partitions}
        self.emulated: dict[str, str] = {}
        self.prepare_s: dict[int, float] = {}
        self._prepared: dict[int, PreparedPartition] = {}
        devices = {d.id: d for d in plan.cluster.devices}
        resolved = {
            dev: self._resolve(devices[dev], emulate) for dev in {p.device for p in plan.partitions}
        }
        #: Why memory was not measured (None when it was, or was not asked for).
        self.memory_unmeasured: str | None = None
        #: True when memory was asked for (``measure_memory=True``).
        self.measures_memory = measure_memory
        self._ledger: RssLedger | None = None
        if measure_memory:
            self.memory_unmeasured = rss_unavailable_reason()
            if self.memory_unmeasured is None:
                self._ledger = RssLedger()
                for dev in sorted(resolved):
                    before = self._ledger.now()
                    load_runtime(*resolved[dev], dev)
                    self._ledger.charge_runtime(dev, before)
        for p in plan.partitions:
            runner, options = resolved[p.device]
            source = models[p.index] if models is not None else Path(plan_dir or ".") / p.file
            label = f"partition {p.index} on {p.device}"
            rss_before = self._ledger.now() if self._ledger else 0
            started = time.perf_counter()
            try:
                prepared = runner.prepare(source, {**options, "label": label})
                check_prepared(runner.name, prepared)
                self._prepared[p.index] = prepared
            except PartitionerError as exc:
                raise type(exc)(one_line(f"{label}: {exc}")) from exc
            self.prepare_s[p.index] = time.perf_counter() - started
            if self._ledger:
                self._ledger.charge_prepare(p.device, rss_before)
        self._consumers = {
            p.index: sorted({c for o in p.outputs for c in o.to_partitions})
            for p in plan.partitions
        }
        self._deps = {
            p.index: {i.from_partition for i in p.inputs if i.from_partition is not None}
            for p in plan.partitions
        }
        self._graph_outputs = [t.name for t in plan.model.outputs]
        unknown = sorted(set(device_outputs) - set(self._graph_outputs))
        if unknown:
            raise RunError(f"device_outputs names no output of the model: {unknown}")
        #: Graph outputs returned as their runner produced them (an OrtValue in the device's
        #: memory from a ``device_resident`` partition) instead of as host arrays, so a caller
        #: that feeds them back (a decode step's KV cache) never copies them through the host.
        self._device_outputs = frozenset(device_outputs)
        self._input_names = tuple(t.name for t in plan.model.inputs)
        self._input_specs = tuple(
            InputSpec.of(t.name, t.dtype, t.shape) for t in plan.model.inputs
        )
        #: Partition index -> the tensors its runner must return.
        self._returns = {p.index: frozenset(o.name for o in p.outputs) for p in plan.partitions}
        self._sequential = self._plan_is_sequential()
        self._free_after = self._last_uses()
        self._order = sorted(self._parts)
        # Per partition: (tensor, copy?, producer, bytes) for each input, precomputed.
        self._input_plan = {
            p.index: [
                (
                    i.name,
                    i.from_partition is not None
                    and self._parts[i.from_partition].device != p.device,
                    i.from_partition,
                    i.nbytes,
                )
                for i in p.inputs
            ]
            for p in plan.partitions
        }
        # One worker thread per device, never a shared pool: ThreadPoolExecutor reuses an idle
        # worker for a second task submitted at once, so two devices' calls ran one after the
        # other (docs/pitfalls.md); a device's thread also stays on its pinned core.
        self._pinned = self._device_cpus()
        self._workers = {
            device: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hetpart-{device}",
                                       initializer=pin_thread, initargs=(cpus,))
            for device, cpus in sorted(self._pinned.items())
        }

    def _device_cpus(self) -> dict[str, tuple[int, ...] | None]:
        """Device -> the CPUs its runner pins calls to (None: not pinned)."""
        cpus: dict[str, tuple[int, ...] | None] = {}
        for index, part in self._parts.items():
            cpus[part.device] = cpus.get(part.device) or self._prepared[index].pinned_cpus
        return cpus

    def _resolve(self, device: DeviceSpec, emulate: bool) -> tuple[Runner, dict[str, Any]]:
        reason = absent_reason(device)
        if reason is None:
            return get_runner(device.runner), dict(device.runner_options)
        if not emulate:
            raise ClusterError(
                f"device {device.id!r} is not available here: {reason} "
                "(pass --emulate to map it onto ONNX Runtime CPU)"
            )
        name, options = EMULATION_RUNNER
        self.emulated[device.id] = reason
        logger.warning("emulating device %s on %s CPU: %s", device.id, name, reason)
        return get_runner(name), dict(options)

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def device_resident(self) -> bool:
        """True when a partition keeps values on an accelerator between its calls (graph
        outputs come back to the host unless named in ``device_outputs``)."""
        return any(p.device_resident for p in self._prepared.values())

    def measure_memory(self, feeds: Mapping[str, Any]) -> dict[str, DeviceMemory]:
        """Run ``feeds`` once, one partition at a time in dependency order, and return the
        measured peak memory per device that ran partitions ({} unless the executor was
        created with ``measure_memory=True`` on a machine that can measure it).

        Call it before any other run: runtimes keep the memory their first run reserves
        (ONNX Runtime's arena, OpenVINO's buffers), so later runs show no growth.
        """
        ledger = self._ledger
        if ledger is None:
            return {}
        values = self._model_inputs(feeds)
        order = self._dependency_order()
        last: dict[str, int] = {}
        for position, index in enumerate(order):
            for i in self._parts[index].inputs:
                last[i.name] = position
        keep = set(self._graph_outputs)
        for position, index in enumerate(order):
            part = self._parts[index]
            inputs = {
                name: _hand_off(values[name]) if copy else values[name]
                for name, copy, _, _ in self._input_plan[index]
            }
            before = ledger.start_call()
            outputs = self._invoke(index, inputs)
            ledger.end_call(part.device, before)
            values.update(outputs)
            del inputs, outputs
            for name in [n for n, pos in last.items() if pos == position and n not in keep]:
                values.pop(name, None)
            ledger.keep(part.device, before)
        return {device: device_memory(device, (self._prepared[i] for i, p in self._parts.items()
                                               if p.device == device), ledger)
                for device in sorted({p.device for p in self._parts.values()})}

    def _dependency_order(self) -> list[int]:
        """Partition indices, each after every partition it reads (lowest index first)."""
        waiting = {i: set(deps) for i, deps in self._deps.items()}
        order: list[int] = []
        while waiting:
            ready = min(i for i, deps in waiting.items() if not deps)
            order.append(ready)
            del waiting[ready]
            for deps in waiting.values():
                deps.discard(ready)
        return order

    def close(self) -> None:
        """Stop the device worker threads."""
        for worker in self._workers.values():
            worker.shutdown(wait=True)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, feeds: Mapping[str, Any]) -> RunResult:
        """Run one input; returns outputs and measurements.

        Raises:
            RunError: a missing input, one of the wrong dtype or shape, or a partition that
                failed (naming it, its device and the tensor where known).
        """
        if self._sequential:
            return self._run_sequential(self._model_inputs(feeds))
        return self._execute([feeds])[0]

    def _model_inputs(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """``feeds`` with every model input conformed to the plan's TensorSpec; device values
        (what ``device_outputs`` returned) pass as they are to device-resident partitions
        (whose runners check them) and come to the host for the others."""
        if not self.device_resident and isinstance(feeds, Mapping):
            feeds = {n: _host(v) if _is_device_value(v) else v for n, v in feeds.items()}
        return model_inputs(feeds, self._input_names, self._input_specs, _is_device_value)

    def _invoke(self, index: int, inputs: dict[str, Any]) -> Any:
        """Run partition ``index``'s runner; every failure becomes a RunError naming it."""
        prepared = self._prepared[index]
        outputs: Mapping[str, Any]
        try:
            if prepared.device_resident:
                outputs = prepared.run_device(inputs)
            else:
                outputs = prepared.run(inputs)
        except PartitionerError as exc:
            raise RunError(_failure(self._parts[index], str(exc))) from exc
        except Exception as exc:  # a runner bug must still name the partition
            raise RunError(
                _failure(self._parts[index], f"{type(exc).__name__}: {exc}")
            ) from exc
        if not outputs.keys() >= self._returns[index]:
            missing = sorted(self._returns[index] - outputs.keys())
            raise RunError(
                _failure(
                    self._parts[index],
                    f"its runner returned no tensor {', '.join(map(repr, missing))} "
                    f"(it returned {sorted(outputs)})",
                )
            )
        return outputs

    def _plan_is_sequential(self) -> bool:
        """True when no two partitions can ever run at once: one device, or a chain.

        Such plans run on the calling thread in index order, without the dispatcher.
        """
        if any(p.device_resident for p in self._prepared.values()):
            return False
        order = sorted(self._parts)
        one_device = len({p.device for p in self._parts.values()}) == 1
        return one_device or all(i - 1 in self._deps[i] for i in order[1:])

    def _last_uses(self) -> dict[int, list[str]]:
        """Partition index -> tensors no later partition reads (freed after it runs)."""
        last: dict[str, int] = {}
        for index in sorted(self._parts):
            for i in self._parts[index].inputs:
                if i.from_partition is not None:
                    last[i.name] = index
        keep = set(self._graph_outputs)
        free: dict[int, list[str]] = {i: [] for i in self._parts}
        for name, index in last.items():
            if name not in keep:
                free[index].append(name)
        return free

    def _run_sequential(self, values: dict[str, Any]) -> RunResult:
        """Run the partitions in index order; ``values`` holds the conformed model inputs."""
        result = RunResult({}, 0.0, {})
        clock = time.perf_counter
        start = clock()
        for index in self._order:
            inputs: dict[str, Any] = {}
            for name, copy, src, nbytes in self._input_plan[index]:
                if copy:
                    c0 = clock()
                    inputs[name] = _hand_off(values[name])
                    assert src is not None  # copies only happen between partitions
                    result.transfers.append(TransferTiming(name, src, index, nbytes, clock() - c0))
                else:
                    inputs[name] = values[name]
            r0 = clock()
            outputs = self._invoke(index, inputs)
            t1 = clock()
            result.partition_s[index] = t1 - r0
            result.spans[index] = (r0, t1)
            values.update(outputs)
            for name in self._free_after[index]:
                del values[name]
        result.latency_s = clock() - start
        result.outputs = {name: self._output(values[name], name) for name in self._graph_outputs}
        return result

    def stream(self, feeds: Sequence[Mapping[str, Any]]) -> StreamResult:
        """Run ``feeds`` pipelined: a device starts input k+1 while others work on input k."""
        started = time.perf_counter()
        results = self._execute(feeds)
        return StreamResult(results, time.perf_counter() - started)

    # -- dispatcher ------------------------------------------------------------------------

    def _execute(self, items: Sequence[Mapping[str, Any]]) -> list[RunResult]:
        batch = [self._model_inputs(feeds) for feeds in items]
        values: list[dict[int, dict[str, Any]]] = [{} for _ in batch]
        results = [RunResult({}, 0.0, {}) for _ in batch]
        spans: list[list[float]] = [[float("inf"), 0.0] for _ in batch]
        tasks = {
            (k, i): _Task(k, i, len(self._deps[i])) for k in range(len(batch)) for i in self._parts
        }
        ready = sorted(key for key, t in tasks.items() if t.waiting == 0)
        busy: set[str] = set()
        running: dict[Future[Any], tuple[int, int]] = {}
        remaining = len(tasks)
        while remaining:
            launch: list[tuple[int, int]] = []
            for key in ready:
                device = self._parts[key[1]].device
                if device not in busy:
                    busy.add(device)
                    launch.append(key)
            for key in launch:
                ready.remove(key)
            assert launch or running, "no runnable partition: the plan has a cycle"
            inline = len(launch) == 1 and not running
            if inline and not self._pinned[self._parts[launch[0][1]].device]:
                k, i = launch[0]
                outcome = self._task(i, batch[k], values[k])
                done_keys = [(launch[0], outcome)]
            else:
                for k, i in launch:
                    worker = self._workers[self._parts[i].device]
                    running[worker.submit(self._task, i, batch[k], values[k])] = (k, i)
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                done_keys = [(running.pop(f), f.result()) for f in finished]
            for (k, i), (outputs, transfers, t0, r0, t1) in done_keys:
                remaining -= 1
                busy.discard(self._parts[i].device)
                values[k][i] = outputs
                results[k].partition_s[i] = t1 - r0
                results[k].spans[i] = (r0, t1)
                results[k].transfers.extend(transfers)
                spans[k][0] = min(spans[k][0], t0)
                spans[k][1] = max(spans[k][1], t1)
                for c in self._consumers[i]:
                    task = tasks[(k, c)]
                    task.waiting -= 1
                    if task.waiting == 0:
                        ready.append((k, c))
                self._release(values[k], i)
            ready.sort()
        for k, feeds in enumerate(batch):
            results[k].outputs = self._collect(feeds, values[k])
            results[k].latency_s = spans[k][1] - spans[k][0]
        return results

    def _task(
        self, index: int, feeds: Mapping[str, Any], values: dict[int, dict[str, Any]]
    ) -> tuple[dict[str, Any], list[TransferTiming], float, float, float]:
        part = self._parts[index]
        t0 = time.perf_counter()
        inputs: dict[str, Any] = {}
        transfers: list[TransferTiming] = []
        resident = self._prepared[index].device_resident
        for i in part.inputs:
            if i.from_partition is None:
                value = feeds[i.name]
                inputs[i.name] = value if resident or not _is_device_value(value) else _host(value)
                continue
            value = values[i.from_partition][i.name]
            if self._parts[i.from_partition].device != part.device:
                c0 = time.perf_counter()
                value = _hand_off(value)
                transfers.append(
                    TransferTiming(
                        i.name, i.from_partition, index, i.nbytes, time.perf_counter() - c0
                    )
                )
            inputs[i.name] = value
        r0 = time.perf_counter()
        outputs = self._invoke(index, inputs)
        t1 = time.perf_counter()
        return outputs, transfers, t0, r0, t1

    def _output(self, value: Any, name: str) -> Any:
        return value if name in self._device_outputs else _host(value)

    def _release(self, values: dict[int, dict[str, Any]], finished: int) -> None:
        """Drop producer outputs once every consumer of them has run (keeps memory flat)."""
        for dep in self._deps[finished]:
            if all(c in values for c in self._consumers[dep]):
                kept = {o.name for o in self._parts[dep].outputs if o.graph_output}
                values[dep] = {k: v for k, v in values[dep].items() if k in kept}

    def _collect(
        self, feeds: Mapping[str, Any], values: dict[int, dict[str, Any]]
    ) -> dict[str, np.ndarray]:
        produced: dict[str, Any] = {}
        for part_values in values.values():
            produced.update(part_values)
        out: dict[str, np.ndarray] = {}
        for name in self._graph_outputs:
            if name in produced:
                out[name] = self._output(produced[name], name)
            elif name in feeds:
                out[name] = np.asarray(feeds[name])
            else:
                raise RunError(f"model output {name!r} was produced by no partition")
        return out


def _failure(part: PlanPartition, message: str) -> str:
    """One line naming the partition and its device (runtimes' messages span several)."""
    message = one_line(message)
    prefix = f"partition {part.index} on {part.device}"
    return message if message.startswith(prefix) else f"{prefix} failed: {message}"


def _host(value: Any) -> Any:
    """A runner value on the host: arrays as they are, sequences as lists, optionals as None."""
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        return None
    if isinstance(value, list):
        return [_host(v) for v in value]
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _is_device_value(value: Any) -> bool:
    """A runner's device-resident tensor (an ONNX Runtime OrtValue), not a host value."""
    return hasattr(value, "device_name") and hasattr(value, "numpy")


def _hand_off(value: Any) -> np.ndarray:
    """Move a tensor to another device: device values come to the host; host arrays pass as-is.

    Every runner returns host outputs it owns (fresh arrays, never views of reused buffers)
    and never writes into its inputs, so devices sharing host memory need no copy: copying
    an 800 KB activation cost 22 us per boundary (docs/pitfalls.md).
    """
    if isinstance(value, np.ndarray):
        return value
    return _host(value)


def absent_reason(device: DeviceSpec) -> str | None:
    """Why ``device`` cannot run here (spec-sheet device, runner, provider or plugin missing).

    A device described by a spec sheet (``local = false``: a preset's EPYC or H100) is not
    this machine even when its runner is installed: timing it here would pass this CPU's
    numbers off as that hardware's, so it too needs ``--emulate``.
    """
    if not device.local:
        return "it is described by a spec sheet (local = false), not detected on this machine"
    try:
        runner = get_runner(device.runner)
    except RunnerProtocolError:
        raise  # a broken plug-in is a bug to report, not a device to emulate
    except ClusterError as exc:
        return str(exc)
    return runner.absent_reason(device.runner_options)
