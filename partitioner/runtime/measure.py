"""Plans timed as they will run: the compile-time measurement of candidates.

Each candidate plan's partitions are cut from the model in memory, prepared on their runners
with the plan's runner options by the same ``Executor`` that ``hetpart run`` uses, and timed
end to end with the other candidates in alternating warm blocks
(``profiling.timing.time_interleaved``). A figure is the trimmed median with its p10-p90
spread and the spread of the per-round block medians (the noise); each partition's median
run time comes with it, for feeding back into the costs.

Measurements are cached in the profile cache (``plan_timings``) per batch of candidates timed
together, each under a key made of every partition's content hash (the extracted model's
bytes), the model's input shapes, the dataflow between partitions and each device's runner
fingerprint, so compiling the same model again replays the same comparisons. Timings taken
while other processes held the CPU (``profiling.timing.CACHE_OTHERS_SHARE``) are not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import onnx

from partitioner.plan.extract import PartitionExtractor
from partitioner.plan.types import Plan
from partitioner.profiling.cache import PlanTiming, ProfileCache, runner_fingerprint
from partitioner.profiling.timing import (
    OthersLoad,
    Timing,
    summarise,
    time_interleaved,
)
from partitioner.registry import get_runner
from partitioner.runtime.executor import Executor
from partitioner.runtime.feeds import random_inputs

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel

log = logging.getLogger(__name__)

#: Bumped whenever how a plan is timed changes, so older cached timings are not reused.
HARNESS = "plan-timing/3"



@dataclass(frozen=True)
class MeasuredPlan:
    """One candidate timed as it runs.

    Attributes:
        timing: End-to-end latency (median, p10, p90, samples, noise).
        partition_s: Partition index -> median run time of its runner call.
        cached: Whether the figures came from the profile cache.
        key: The cache key.
    """

    timing: Timing
    partition_s: dict[int, float]
    cached: bool
    key: str


def timing_key(plan: Plan, models: Mapping[int, onnx.ModelProto],
               fingerprints: Mapping[str, str]) -> str:
    """Cache key of ``plan``'s partitions: content hash of each extracted model, its device's
    runner fingerprint and where its inputs come from, and the model's input shapes."""
    parts = []
    for p in plan.partitions:
        content = hashlib.sha256(models[p.index].SerializeToString(deterministic=True))
        parts.append([content.hexdigest(), fingerprints[p.device],
                      [[i.name, i.from_partition] for i in p.inputs]])
    shapes = [[t.name, list(t.shape), t.dtype] for t in plan.model.inputs]
    text = json.dumps([HARNESS, shapes, parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def device_fingerprints(plan: Plan) -> dict[str, str]:
    """Device id -> runner fingerprint (name, version, options, CPU) of the plan's devices."""
    out = {}
    for device in plan.cluster.devices:
        runner = get_runner(device.runner)
        out[device.id] = runner_fingerprint(device.runner, runner.version(),
                                            device.runner_options)
    return out


def measure_plans(
    analysed: AnalysedModel,
    plans: Mapping[str, Plan],
    cache: ProfileCache | None = None,
    rounds: int = 7,
    warmup: int = 3,
) -> dict[str, MeasuredPlan]:
    """Time every plan of ``plans`` end to end, against each other.

    When every plan's timing is cached it is reused; otherwise all of them are timed
    together (a figure is only comparable with figures timed alongside it) and cached.

    Args:
        analysed: The model the plans were compiled from.
        plans: Candidate name -> plan.
        cache: Where timings are stored and looked up (None: nothing cached).
        rounds: Alternating warm blocks per candidate.
        warmup: Untimed calls of each candidate first.

    Returns:
        Candidate name -> its measurement.
    """
    extractor = PartitionExtractor(analysed.model)
    models: dict[str, dict[int, onnx.ModelProto]] = {}
    keys: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    for name, plan in plans.items():
        models[name] = {p.index: extractor.extract_proto(p) for p in plan.partitions}
        # Plans compiled for different clusters (``--devices X``) each bring their devices.
        if not set(plan.partition_devices().values()) <= fingerprints.keys():
            fingerprints.update(device_fingerprints(plan))
        keys[name] = timing_key(plan, models[name], fingerprints)
    # A figure is only comparable with those timed beside it, so rows belong to their batch:
    # keyed per plan alone, a single device timed again beside round 2's split would replace
    # the figure round 1 was judged against, and the next compile would judge it anew.
    batch = hashlib.sha256("\n".join(sorted(keys.values())).encode()).hexdigest()
    keys = {name: hashlib.sha256(f"{batch}:{key}".encode()).hexdigest()
            for name, key in keys.items()}
    if cache is not None:
        hits = {name: cache.get_plan_timing(key) for name, key in keys.items()}
        if all(hit is not None for hit in hits.values()):
            return {name: _from_row(hit, plans[name], keys[name], True)
                    for name, hit in hits.items() if hit is not None}
    executors: dict[str, Executor] = {}
    results: dict[str, list[dict[int, float]]] = {name: [] for name in plans}
    try:
        calls = {}
        for name, plan in plans.items():
            executor = Executor(plan, models=models[name])
            executors[name] = executor
            feeds = random_inputs(plan.model.inputs)
            calls[name] = _call(executor, feeds, results[name])
        with OthersLoad() as others:
            timed = time_interleaved(calls, rounds=rounds, warmup=warmup)
    finally:
        for executor in executors.values():
            executor.close()
    if cache is not None and others.too_busy_to_cache:
        log.info("other processes took %.0f%% of the CPU while these plans were timed: "
                 "not cached", 100 * (others.share or 0.0))
        cache = None
    out = {}
    for name, plan in plans.items():
        samples, blocks = timed[name]
        timing = summarise(samples, blocks)
        runs = results[name][warmup:] or results[name]
        partition_s = {p.index: statistics.median(r[p.index] for r in runs if p.index in r)
                       for p in plan.partitions}
        measured = MeasuredPlan(timing, partition_s, False, keys[name])
        if cache is not None:
            cache.put_plan_timing(keys[name], PlanTiming(
                timing, tuple(partition_s[p.index] for p in plan.partitions)))
        out[name] = measured
        log.info("measured %s: %.3f ms (p10 %.3f, p90 %.3f, noise %.3f, %d calls)", name,
                 timing.median_s * 1e3, timing.p10_s * 1e3, timing.p90_s * 1e3,
                 timing.noise_s * 1e3, timing.samples)
    return out


def _call(executor: Executor, feeds: dict[str, Any],
          sink: list[dict[int, float]]) -> Any:
    def call() -> None:
        sink.append(executor.run(feeds).partition_s)
    return call


def _from_row(row: PlanTiming, plan: Plan, key: str, cached: bool) -> MeasuredPlan:
    partition_s = {p.index: t for p, t in zip(plan.partitions, row.partition_s, strict=False)}
    return MeasuredPlan(row.timing, partition_s, cached, key)
