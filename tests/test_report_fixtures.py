"""Hand-built plans (and their graph detail and runs) for the report tests; holds no tests.

The small plan is worked out by hand with the evaluator's rules so every number in the golden
reports can be checked on paper: three devices (cpu, gpu behind PCIe, a tiny npu that lacks
Gather and Softmax), eight nodes in three partitions, two transfers.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from partitioner.cluster.types import Cluster, DeviceSpec, Link
from partitioner.plan.types import (
    FORMAT_VERSION,
    BaselineSummary,
    ModelRef,
    NodeCost,
    NodePlacement,
    PartitionInput,
    PartitionOutput,
    Plan,
    PlanPartition,
    SolverStats,
    TensorSpec,
    Transfer,
)
from partitioner.report.inputs import GraphDetail, Measurements, NodeEdge

US = 1e-6
MIB = 1 << 20
KIB64 = 65536


def small_cluster() -> Cluster:
    """cpu (10 µs per call), gpu (20 µs, PCIe 16 GB/s + 5 µs), npu (1 MiB, no Gather/Softmax)."""
    common = {"peak_flops": {"float32": 1e12}, "memory_bandwidth": 1e11}
    cpu = DeviceSpec("cpu", "cpu", "null", 64 << 30, call_overhead_s=10 * US,
                     price_per_hour=0.5, power_w=100.0, **common)
    gpu = DeviceSpec("gpu", "gpu", "null", 16 << 30, call_overhead_s=20 * US,
                     price_per_hour=2.0, power_w=300.0, **common)
    npu = DeviceSpec("npu", "npu", "null", MIB, call_overhead_s=50 * US, power_w=5.0,
                     unsupported_ops=("Gather", "Softmax"), **common)
    links = (Link("cpu", "gpu", 16e9, 5 * US), Link("gpu", "cpu", 16e9, 5 * US))
    return Cluster("test-trio", (cpu, gpu, npu), links, 10e9, "cpu")


#: Weights each node owns (NodeInfo.weight_bytes).
_WEIGHTS = {"embed": 2 * MIB, "mm1": 4 * MIB, "mm2": 4 * MIB, "head": MIB}

#: node -> (op, device, partition, start µs, end µs, {device: latency µs or reason})
_NODES = {
    "embed": ("Gather", "cpu", 0, 10.0, 14.0,
              {"cpu": 4, "gpu": 3, "npu": "Gather not in npu table"}),
    "side": ("Tanh", "cpu", 0, 14.0, 20.0, {"cpu": 6, "gpu": 1, "npu": 2}),
    "mm1": ("MatMul", "gpu", 1, 43.1, 45.1, {"cpu": 12, "gpu": 2, "npu": 1.5}),
    "relu1": ("Relu", "gpu", 1, 45.1, 45.6, {"cpu": 1, "gpu": 0.5, "npu": 0.4}),
    "mm2": ("MatMul", "gpu", 1, 45.6, 47.6, {"cpu": 12, "gpu": 2, "npu": 1.5}),
    "softmax": ("Softmax", "cpu", 2, 66.7, 70.7,
                {"cpu": 4, "gpu": 1, "npu": "Softmax not in npu table"}),
    "join": ("Add", "cpu", 2, 70.7, 71.2, {"cpu": 0.5, "gpu": 0.2, "npu": 0.3}),
    "head": ("MatMul", "cpu", 2, 71.2, 75.2, {"cpu": 4, "gpu": 1, "npu": 1}),
}

_EDGES = [
    ("embed", "mm1", "e"), ("embed", "side", "e"), ("mm1", "relu1", "a"),
    ("relu1", "mm2", "r"), ("mm2", "softmax", "m2"), ("softmax", "join", "sm"),
    ("side", "join", "sd"), ("join", "head", "j"),
]


def _cost(value: float | str) -> NodeCost:
    if isinstance(value, str):
        return NodeCost(unsupported=value)
    return NodeCost(value * US, 1024, "roofline")


def price_per_1k(cpu_busy_us: float, gpu_busy_us: float) -> float:
    """The evaluator's price of 1,000 inferences: price per hour × busy time (cpu 0.5, gpu 2)."""
    return (0.5 * cpu_busy_us + 2.0 * gpu_busy_us) * US / 3600 * 1000


def small_plan(objective: str = "latency") -> Plan:
    """The hand-worked plan; ``objective`` changes the label and the baselines' metric.

    For ``cost`` the solver's objective, bound and price are the plan's price per 1k by the
    evaluator's rule and the latency target is 100 µs, which single:cpu and memory_greedy miss.
    """
    parts = (
        PlanPartition(0, "cpu", "partitions/p0_cpu.onnx", ("embed", "side"),
                      (PartitionInput("ids", 64, None),),
                      (PartitionOutput("e", KIB64, (1,), False),
                       PartitionOutput("sd", KIB64, (2,), False)),
                      10 * US, 20 * US),
        PlanPartition(1, "gpu", "partitions/p1_gpu.onnx", ("mm1", "relu1", "mm2"),
                      (PartitionInput("e", KIB64, 0),),
                      (PartitionOutput("m2", KIB64, (2,), False),),
                      43.1 * US, 47.6 * US),
        PlanPartition(2, "cpu", "partitions/p2_cpu.onnx", ("softmax", "join", "head"),
                      (PartitionInput("m2", KIB64, 1), PartitionInput("sd", KIB64, 0)),
                      (PartitionOutput("y", 4096, (), True),),
                      66.7 * US, 75.2 * US),
    )
    transfers = (
        Transfer("e", KIB64, "cpu", "gpu", 0, 1, 9.096 * US),
        Transfer("m2", KIB64, "gpu", "cpu", 1, 2, 9.096 * US),
    )
    placement = {
        name: NodePlacement(dev, op, part, start * US, end * US,
                            {d: _cost(v) for d, v in costs.items()}, _WEIGHTS.get(name, 0))
        for name, (op, dev, part, start, end, costs) in _NODES.items()
    }
    # The evaluator's numbers, by hand. Busy: cpu 4 + 6 + 4 + 0.5 + 4 µs of nodes + two 10 µs
    # calls; gpu 4.5 µs + one 20 µs call. Peak memory = weights + largest workspace (1 KiB) +
    # live activations: on the cpu three 64 KiB tensors at once (sd, the arriving m2, sm),
    # on the gpu two (a and r).
    stats = SolverStats(
        status="FEASIBLE", objective=75.2 * US, bound=70.0 * US, gap=(75.2 - 70.0) / 75.2,
        solve_time_s=1.25, seed=0, workers=2, time_limit_s=2.0,
        predicted_latency_s=75.2 * US, predicted_stage_s=45.0 * US,
        cost_per_1k=1.5e-5, energy_j=0.0111, num_partitions=3, devices_used=("cpu", "gpu"),
        busy_s={"cpu": 38.5 * US, "gpu": 24.5 * US, "npu": 0.0},
        peak_memory={"cpu": 3 * MIB + 1024 + 3 * KIB64, "gpu": 8 * MIB + 1024 + 2 * KIB64,
                     "npu": 0},
    )
    if objective == "cost":  # gap 5.05%, as the solver would report it for this bound
        price = price_per_1k(38.5, 24.5)
        stats = dataclasses.replace(stats, objective=price, bound=1.8e-5,
                                    gap=(price - 1.8e-5) / price, cost_per_1k=price)
    # Prices from each baseline's busy time (µs on cpu, on gpu); a single device is busy for
    # the whole latency, heft found the plan's placement.
    baselines = {
        "best_single": BaselineSummary(90 * US, 60 * US, "= single:gpu", price_per_1k(0, 90)),
        "heft": BaselineSummary(75.2 * US, 45 * US, "", price_per_1k(38.5, 24.5)),
        "memory_greedy": BaselineSummary(110 * US, 80 * US, "", price_per_1k(80, 30)),
        "priority_greedy": BaselineSummary(100 * US, 70 * US, "", price_per_1k(30, 70)),
        "single:cpu": BaselineSummary(120 * US, 120 * US, "", price_per_1k(120, 0)),
        "single:gpu": BaselineSummary(90 * US, 60 * US, "", price_per_1k(0, 90)),
        "single:npu": BaselineSummary(None, None, "npu cannot run 2 node(s), e.g. embed"),
    }
    model = ModelRef("model.onnx", "ab" * 32, "tiny-attn",
                     (TensorSpec("ids", (1, 8), "int64", (0, 100)),),
                     (TensorSpec("y", (1, 1024), "float32"),))
    return Plan(FORMAT_VERSION, model, small_cluster(), objective,
                100 * US if objective == "cost" else None, None, parts, transfers, stats,
                baselines, placement, {}, created_by="hetpart test")


def small_detail() -> GraphDetail:
    """Edges (64 KiB each) of the small plan."""
    return GraphDetail(tuple(NodeEdge(a, b, t, KIB64) for a, b, t in _EDGES))


def small_measurements(plan_digest: str = "d" * 64) -> Measurements:
    """A run of the small plan: slower than predicted on the gpu call."""
    from partitioner.report.inputs import TransferMeasurement

    return Measurements(
        plan_sha256=plan_digest,
        latency_s=90 * US,
        partition_s={0: 14 * US, 1: 30 * US, 2: 25 * US},
        transfers=(TransferMeasurement("e", 0, 1, KIB64, 12 * US),
                   TransferMeasurement("m2", 1, 2, KIB64, 11 * US)),
        repeat=10,
    )


def chain_plan(num_nodes: int, block: int = 50) -> Plan:
    """A chain of ``num_nodes`` Relu nodes, alternating cpu/gpu every ``block`` nodes."""
    base = small_plan()
    devices = ("cpu", "gpu")
    placement = {}
    partitions = []
    t = 0.0
    for k in range(0, num_nodes, block):
        index = k // block
        dev = devices[index % 2]
        names = tuple(f"n{i:04d}" for i in range(k, min(num_nodes, k + block)))
        start = t
        for name in names:
            placement[name] = NodePlacement(dev, "Relu", index, t, t + US,
                                            {"cpu": NodeCost(US), "gpu": NodeCost(US),
                                             "npu": NodeCost(2 * US)})
            t += US
        ins = (PartitionInput("x" if index == 0 else f"t{index}", 1024,
                              None if index == 0 else index - 1),)
        last = k + block >= num_nodes
        outs = (PartitionOutput("y" if last else f"t{index + 1}", 1024,
                                () if last else (index + 1,), last),)
        partitions.append(PlanPartition(index, dev, f"partitions/p{index}_{dev}.onnx", names,
                                        ins, outs, start, t))
    stats = SolverStats("OPTIMAL", t, t, 0.0, 0.5, 0, 2, 2.0, t, t / 2, 0.0, 0.0,
                        len(partitions), devices)
    model = ModelRef("chain.onnx", "cd" * 32, "chain", (TensorSpec("x", (256,), "float32"),),
                     (TensorSpec("y", (256,), "float32"),))
    return Plan(FORMAT_VERSION, model, base.cluster, "latency", None, None, tuple(partitions),
                (), stats, {"single:cpu": BaselineSummary(t * 1.2, t * 1.2)}, placement,
                {"g0": tuple(placement)[:10]})


def write_run(plan_dir: Path, digest: str, latency_s: float = 1e-3) -> Path:
    """Write a minimal ``run.json`` claiming to measure the plan with ``digest``."""
    path = plan_dir / "run.json"
    path.write_text(json.dumps({"plan_sha256": digest, "measured_latency_s": latency_s,
                                "repeat": 3, "partitions": [{"index": 0, "measured_s": 1e-4}]}))
    return path
