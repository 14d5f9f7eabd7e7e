"""Baseline placements every generation plan is compared with (and never loses to).

* ``single:<device>``: every group, both phases, on one device (the best one is reported).
* ``layer-offload``: llama.cpp's ``--n-gpu-layers``: layers fill the fastest accelerator (highest
  memory bandwidth) in order, weights and KV cache, up to its memory; the rest run on the CPU.
* ``homogeneous:<n>x<device>``: the first ``n`` devices of one type, the groups split into
  ``n`` contiguous runs (the cheapest such fleet meeting the SLOs is reported).
* ``memory fill``: co-located first fit by memory (a start for the solver, and the
  constructive test behind "the largest context that fits").
* The best co-located plan is the CP-SAT co-located solve (``planner.py``).

Baselines are placements on the same layer groups, so the comparison is like for like.
"""

from __future__ import annotations

from collections.abc import Sequence

from partitioner.cluster.types import Cluster
from partitioner.generation.problem import GenerationProblem, memory_use

Placement = tuple[tuple[int, ...], tuple[int, ...]]


def single_device(problem: GenerationProblem, d: int) -> Placement:
    everything = tuple(d for _ in problem.groups)
    return everything, everything


def layer_offload(problem: GenerationProblem, cluster: Cluster) -> tuple[str, Placement] | None:
    """llama.cpp-style offload onto the fastest accelerator, the rest on the CPU (None when
    the cluster has no CPU or no accelerator)."""
    ids = problem.devices
    cpu = cluster.fallback_device or next(
        (d.id for d in cluster.devices if d.device_class == "cpu"), None)
    accelerators = [d for d in cluster.devices if d.device_class != "cpu" and d.id != cpu]
    if cpu is None or not accelerators:
        return None
    fast = ids.index(max(accelerators, key=lambda d: d.memory_bandwidth).id)
    host = ids.index(cpu)
    G = len(problem.groups)
    on_fast = 0
    while on_fast < G:
        trial = tuple(fast if g <= on_fast else host for g in range(G))
        if memory_use(problem, trial, trial)[fast] > problem.memory[fast]:
            break
        on_fast += 1
    placed = tuple(fast if g < on_fast else host for g in range(G))
    return f"{on_fast}/{G} groups on {ids[fast]}, rest on {ids[host]}", (placed, placed)


def homogeneous_fleets(problem: GenerationProblem,
                       classes: Sequence[Sequence[int]]) -> list[tuple[str, Placement]]:
    """For every device type (``classes``: interchangeable device indices, singletons
    included) and every ``n`` up to its count: groups split evenly over the first ``n``."""
    out = []
    G = len(problem.groups)
    for cls in classes:
        for n in range(1, min(len(cls), G) + 1):
            base, extra = divmod(G, n)
            placed: list[int] = []
            for i in range(n):
                placed += [cls[i]] * (base + (1 if i < extra else 0))
            name = problem.devices[cls[0]] if n == 1 else f"{n}x{problem.devices[cls[0]]}"
            out.append((name, (tuple(placed), tuple(placed))))
    return out


def memory_fill(problem: GenerationProblem) -> Placement | None:
    """Co-located first fit: each group, in layer order, on the device already in use if it
    has room (weights, KV cache, workspace), else on the fastest decoding device that has;
    None when some group fits nowhere."""
    G, D = len(problem.groups), len(problem.devices)
    placed: list[int] = []
    for g in range(G):
        order = sorted(range(D), key=lambda d: problem.decode_mean_s[g][d])
        if placed:
            order.remove(placed[-1])
            order.insert(0, placed[-1])
        for d in order:
            p = tuple(placed + [d])  # memory_use of the first g + 1 groups
            if memory_use(problem, p, p)[d] <= problem.memory[d]:
                placed.append(d)
                break
        else:
            return None
    return tuple(placed), tuple(placed)
