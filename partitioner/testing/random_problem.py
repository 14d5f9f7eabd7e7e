"""Random placement problems (DAGs with roofline-like costs) for tests and benchmarks."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

from partitioner.cluster.types import Cluster, DeviceSpec, Link
from partitioner.costing.types import CostTable, Supported, Unsupported
from partitioner.solver.evaluate import evaluate, is_acceptable, objective_value
from partitioner.solver.index import index_of
from partitioner.solver.problem import Problem, ProblemEdge, ProblemNode

_OPS = ("MatMul", "Conv", "Add", "Relu", "Softmax", "LayerNormalization", "Gather", "Reshape")


def demo_cluster(kind: str = "cpu+gpu", gpu_memory: int = 16 * 2**30,
                 copy_engines: bool | None = None) -> Cluster:
    """A small spec-sheet cluster: ``cpu+gpu``, ``cpu+npu`` or ``cpu+cpu`` (shared processor).

    ``copy_engines``: None gives every device its class default (``DEFAULT_COPY_ENGINE``:
    the CPU and the NPU are busy for their copies); True or False sets every device.
    """
    cpu = DeviceSpec(id="cpu", device_class="cpu", runner="null", memory_bytes=64 * 2**30,
                     peak_flops={"float32": 1e12}, memory_bandwidth=50e9,
                     call_overhead_s=10e-6, price_per_hour=0.1, power_w=65.0)
    if kind == "cpu+cpu":
        a = DeviceSpec(id="ort", device_class="cpu", runner="null", memory_bytes=8 * 2**30,
                       peak_flops={"float32": 1e11}, memory_bandwidth=20e9,
                       call_overhead_s=10e-6, processor="host")
        b = DeviceSpec(id="ov", device_class="cpu", runner="null", memory_bytes=8 * 2**30,
                       peak_flops={"float32": 3e11}, memory_bandwidth=20e9,
                       call_overhead_s=170e-6, processor="host")
        return _engines(Cluster("cpu+cpu", (b, a), (), 20e9, "ort"), copy_engines)
    acc_class = "npu" if kind == "cpu+npu" else "gpu"
    acc = DeviceSpec(id=acc_class, device_class=acc_class, runner="null",
                     memory_bytes=gpu_memory, peak_flops={"float32": 30e12},
                     memory_bandwidth=300e9, call_overhead_s=20e-6, price_per_hour=0.8,
                     power_w=72.0)
    links = (Link(acc.id, "cpu", 16e9, 10e-6), Link("cpu", acc.id, 16e9, 10e-6))
    return _engines(Cluster(kind, (acc, cpu), links, 10e9, "cpu"), copy_engines)


def _engines(cluster: Cluster, copy_engines: bool | None) -> Cluster:
    if copy_engines is None:
        return cluster
    devices = tuple(replace(d, copy_engine=copy_engines) for d in cluster.devices)
    return replace(cluster, devices=devices)


def random_problem(n: int, cluster: Cluster, seed: int = 0, *, width: int = 4,
                   unsupported_rate: float = 0.05, objective: str = "latency",
                   latency_target_s: float | None = None) -> Problem:
    """A random layered DAG of ``n`` nodes with roofline costs on ``cluster``.

    Args:
        n: Number of nodes.
        cluster: Devices to cost for.
        seed: Random seed (same seed, same problem).
        width: Typical number of parallel branches.
        unsupported_rate: Chance that a non-CPU device (npu: five times more) lacks the op.
        objective: Problem objective.
        latency_target_s: Latency target for the cost objective.
    """
    rng = random.Random(seed)
    nodes = []
    edges = []
    costs = CostTable()
    for i in range(n):
        op = _OPS[rng.randrange(len(_OPS))]
        flops = rng.choice((1e5, 1e6, 1e7, 1e8)) if op in ("MatMul", "Conv") else 1e4
        out = rng.choice((4096, 65536, 262144))
        weights = rng.choice((0, 0, 65536, 1 << 20)) if op in ("MatMul", "Conv") else 0
        name = f"n{i}"
        nodes.append(ProblemNode(name, op, weights, out, (name,)))
        if i:
            preds = {max(0, i - 1 - rng.randrange(min(i, width)))}
            if rng.random() < 0.3 and i > 1:
                preds.add(rng.randrange(max(0, i - 4 * width), i))
            for p in sorted(preds):
                edges.append(ProblemEdge(f"n{p}", name, nodes[p].output_bytes, f"t{p}"))
        for dev in cluster.devices:
            rate = unsupported_rate * (5 if dev.device_class == "npu" else 1)
            if dev.device_class != "cpu" and rng.random() < rate:
                costs.set(name, dev.id, Unsupported(f"{op} not supported on {dev.device_class}"))
                continue
            t = max(flops / dev.flops_for("float32"), (out + weights) / dev.memory_bandwidth)
            costs.set(name, dev.id, Supported(t, 0, "roofline"))
    return Problem(tuple(nodes), tuple(edges), cluster, costs, objective=objective,
                   latency_target_s=latency_target_s)


def toy_device(device_id: str, *, overhead_s: float = 0.0, memory_bytes: int = 2**40,
               processor: str | None = None, price_per_hour: float = 0.0,
               power_w: float = 0.0, copy_engine: bool | None = True) -> DeviceSpec:
    """A device with only the fields the solver reads (for hand-written problems).

    ``copy_engine`` defaults to True (transfers overlap compute), unlike the ``cpu`` class
    default: hand-written problems say when a copy occupies a device (``False``).
    """
    return DeviceSpec(id=device_id, device_class="cpu", runner="null",
                      memory_bytes=memory_bytes, peak_flops={"float32": 1e9},
                      memory_bandwidth=1e9, call_overhead_s=overhead_s,
                      price_per_hour=price_per_hour, power_w=power_w, processor=processor,
                      copy_engine=copy_engine)


def toy_problem(costs: dict[str, dict[str, float | None]],
                edges: list[tuple[str, str, int]], devices: tuple[DeviceSpec, ...], *,
                bandwidth: float = 1e9, weights: dict[str, int] | None = None,
                outputs: dict[str, int] | None = None, **problem_fields: object) -> Problem:
    """A hand-written problem: ``costs[node][device]`` seconds (None = unsupported).

    Nodes keep the insertion order of ``costs`` (must be topological); ``edges`` are
    ``(src, dst, bytes)``; every link has ``bandwidth`` and no latency.
    """
    weights = weights or {}
    outputs = outputs or {}
    cluster = Cluster("toy", devices, (), bandwidth, devices[-1].id)
    table = CostTable()
    nodes = []
    for name, per_dev in costs.items():
        nodes.append(ProblemNode(name, name.rstrip("0123456789") or name,
                                 weights.get(name, 0), outputs.get(name, 0), (name,)))
        for dev, value in per_dev.items():
            table.set(name, dev, Unsupported(f"{name} unsupported on {dev}") if value is None
                      else Supported(value))
    problem_edges = tuple(ProblemEdge(s, d, b, f"{s}:out") for s, d, b in edges)
    return Problem(tuple(nodes), problem_edges, cluster, table, **problem_fields)  # type: ignore[arg-type]


def brute_force_optimum(problem: Problem) -> float:
    """The least objective over every assignment the evaluator accepts, inf when none fits
    (for tests: the number of assignments grows exponentially with the nodes)."""
    idx = index_of(problem)
    best = float("inf")
    for combo in itertools.product(*idx.allowed):
        ev = evaluate(problem, {n: idx.devices[k] for n, k in zip(idx.names, combo, strict=True)})
        if is_acceptable(problem, ev):
            best = min(best, objective_value(problem, ev))
    return best
