"""``hetpart compile`` for generation: plan a decoder per phase and write the plan directory.

* A named spec-sheet configuration (``llama-7b``, ``llama-70b``; ``spec.NAMED_SPECS``) gives a
  plan-only directory: ``generation.json`` with the placement, its bound and baselines, and no
  runnable phase plans (there is no model to run; ``"runnable": false`` says so).
* A decoder folder (``generation.layout``) also gets runnable ``prefill/`` and ``decode/``
  plans: each phase's model is compiled by the ordinary compiler with every node pinned to the
  device of its layer group (nodes named ``/model/layers.N/...``; the embedding goes with the
  first group, the final norm and LM head with the last), and written by
  ``plan_dir.write_generation_plan``. Devices on this machine are costed from decode steps
  measured at several contexts (``measure.measure_decode_step``), a curve through them.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partitioner.cluster.types import Cluster
from partitioner.errors import PlanError, RunError
from partitioner.generation.costs import DecodeFit
from partitioner.generation.spec import NAMED_SPECS, DecoderSpec
from partitioner.generation.workload import Targets, Workload

if TYPE_CHECKING:  # the planner loads OR-Tools: only when a plan is made
    from partitioner.generation.planner import GenerationPlan

GENERATION_FILE = "generation.json"
#: Contexts the local decode step is measured at (those within the workload's context).
MEASURED_CONTEXTS = (128, 256, 512, 1024, 2048)
#: Turns every local device takes at the measurements (interleaved; the median is kept).
MEASURE_TURNS = 3


@dataclass(frozen=True)
class GenerationCompile:
    """What ``compile_generation`` wrote: the plan and its directory."""

    plan: GenerationPlan
    plan_dir: Path
    runnable: bool
    fits: dict[str, DecodeFit]


def is_generation_model(model: str) -> bool:
    """A named decoder configuration or a decoder folder (the generation compile path)."""
    from partitioner.generation.layout import is_decoder_folder

    return model in NAMED_SPECS or (Path(model).exists() and is_decoder_folder(model))


def measured_decode_fits(layout: Any, cluster: Cluster, workload: Workload, batch: int,
                         progress: Callable[[str], None] | None = None
                         ) -> dict[str, DecodeFit]:
    """Measured decode curves for the cluster's devices on this machine (``local``)."""
    from partitioner.generation.generator import openvino_gqa_hint
    from partitioner.generation.measure import measure_decode_step

    # The generation's own range (prompt + 1 .. context) and the standard points within it.
    top = min(workload.context, layout.spec.max_context)
    low = min(workload.prompt + 1, top)
    contexts = sorted({c for c in MEASURED_CONTEXTS if low <= c <= top}
                      | {low, (low + top) // 2, top})
    local = [d for d in cluster.devices if d.local]
    if progress and local:
        progress(f"measuring decode steps on {', '.join(d.id for d in local)} at contexts "
                 f"{contexts}")
    # Devices take turns, round by round, so that a load change on a shared machine falls
    # on all of them rather than on whichever was measured then.
    samples: dict[str, dict[int, list[float]]] = {d.id: {c: [] for c in contexts}
                                                  for d in local}
    for _ in range(MEASURE_TURNS):
        for device in local:
            try:
                steps = measure_decode_step(layout, device, contexts, batch, warmup=1,
                                            rounds=2)
            except RunError as exc:
                hint = openvino_gqa_hint(layout, batch, exc)
                if hint:
                    raise RunError(f"{device.id}: {exc}; {hint}: compile for batch 1, or "
                                   f"without {device.id} (--devices)") from exc
                raise
            for step in steps:
                samples[device.id][step.context].append(step.median_s)
    # A step at context c attends to c - 1 cached tokens.
    return {device: DecodeFit.from_points(
                [(c - 1, statistics.median(times)) for c, times in per_context.items()],
                batch=batch)
            for device, per_context in samples.items()}


def measured_prefill_s(layout: Any, device: Any, prompt: int, batch: int,
                       repeat: int = 5) -> float:
    """Median seconds of one whole-model prefill of ``batch x prompt`` tokens on ``device``
    (warmed up; the same runner call the phase plan makes)."""
    import statistics

    import numpy as np

    from partitioner.generation.generator import empty_past, step_feeds
    from partitioner.profiling.timing import time_calls
    from partitioner.registry import get_runner

    prepared = get_runner(device.runner).prepare(
        str(layout.model_path), {**device.runner_options,
                                 "label": f"{layout.model_path.name} prefill on {device.id}"})
    ids = np.random.default_rng(0).integers(3, layout.spec.vocab_size, (batch, prompt),
                                            dtype=np.int64)
    feeds = step_feeds(layout, ids, 0, empty_past(layout, batch))
    return statistics.median(time_calls(lambda: prepared.run(feeds), 2, repeat))


def _layer_devices(plan: GenerationPlan, phase: str) -> list[str]:
    """The device of every decoder layer in ``phase`` (from its group's placement)."""
    ev, devices = plan.plan.eval, plan.problem.devices
    chosen = ev.prefill if phase == "prefill" else ev.decode
    out = []
    for group in plan.groups:
        out += [devices[chosen[group.index]]] * group.count
    return out


def _write_plan_only(plan: GenerationPlan, out: Path, overwrite: bool) -> None:
    for phase in ("prefill", "decode"):
        if (out / phase).exists():
            raise PlanError(f"{out / phase}: a runnable phase plan is in the way of a plan-only "
                            "directory; write to a fresh directory")
    out.mkdir(parents=True, exist_ok=True)
    data = plan.to_dict()
    document = {
        "format_version": "1",
        "runnable": False,
        "note": (f"plan only: {plan.spec.name!r} is a named spec-sheet configuration with no "
                 "model to run; compile an exported decoder folder for runnable phase plans"),
        "layout": None,
        "phases": {},
        "workload": plan.workload.to_dict(),
        "predicted": _predicted(data),
        "placement": data,
    }
    staging = out / f".{GENERATION_FILE}.tmp"
    staging.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(staging, out / GENERATION_FILE)


def _predicted(data: dict[str, Any]) -> dict[str, Any]:
    p = data["predicted"]
    return {k: p[k] for k in ("ttft_s", "tpot_s", "tpot_worst_s", "tokens_per_s",
                              "cost_per_mtok", "price_per_hour", "batch")}


def compile_generation(model: str, cluster: Cluster, workload: Workload, targets: Targets,
                       out_dir: str | Path, *, time_limit_s: float = 10.0, seed: int = 0,
                       workers: int = 1, overwrite: bool = False, measure: bool = True,
                       phase_options: dict[str, Any] | None = None,
                       progress: Callable[[str], None] | None = None) -> GenerationCompile:
    """Plan ``model`` (a named config or a decoder folder) and write the plan directory.

    Args:
        measure: Time decode steps on the cluster's local devices (a decoder folder only).
        phase_options: Extra ``CompileOptions`` fields for the phase plans.
    """
    from partitioner.generation.plan_dir import _check_target
    from partitioner.generation.planner import plan_generation

    out = Path(out_dir)
    _check_target(out, overwrite)  # before measuring and solving, not after
    if model in NAMED_SPECS:
        spec: DecoderSpec = NAMED_SPECS[model]
        plan = plan_generation(spec, workload, targets, cluster, time_limit_s=time_limit_s,
                               seed=seed, workers=workers)
        _write_plan_only(plan, out, overwrite)
        return GenerationCompile(plan, out, False, {})

    from partitioner.generation.layout import load_layout
    from partitioner.generation.phase_plans import compile_phase
    from partitioner.generation.plan_dir import write_generation_plan

    layout = load_layout(model)
    workload.check_model(layout.spec)
    fits: dict[str, DecodeFit] = {}
    prefill_times: dict[str, float] = {}
    if measure and any(d.local for d in cluster.devices):
        fits = measured_decode_fits(layout, cluster, workload, workload.batch, progress)
        turns: dict[str, list[float]] = {d.id: [] for d in cluster.devices if d.local}
        for _ in range(MEASURE_TURNS):
            for device in cluster.devices:
                if device.local:
                    turns[device.id].append(measured_prefill_s(
                        layout, device, workload.prompt, workload.batch, repeat=3))
        prefill_times = {d: statistics.median(t) for d, t in turns.items()}
    plan = plan_generation(layout.spec, workload, targets, cluster, time_limit_s=time_limit_s,
                           seed=seed, workers=workers, decode_fits=fits,
                           prefill_times=prefill_times)
    batch = plan.plan.eval.batch
    options = {"measure_rounds": 0, **(phase_options or {})}
    compiled = {}
    for phase, tokens in (("prefill", workload.prompt), ("decode", workload.context - 1)):
        if progress:
            progress(f"compiling the {phase} plan (batch {batch}, {tokens} tokens)")
        compiled[phase] = compile_phase(layout, phase, cluster, batch=batch, tokens=tokens,
                                        split=_layer_devices(plan, phase), options=options)
    data = plan.to_dict()
    data["decode_fits"] = {d: {"batch": f.batch, "points": [list(p) for p in f.points],
                               "intercept_s": f.intercept_s, "slope_s": f.slope_s,
                               "prefill_s": prefill_times.get(d)} for d, f in fits.items()}
    write_generation_plan(out, layout, compiled["prefill"], compiled["decode"],
                          workload={**workload.to_dict(), "batch": batch},
                          predicted=_predicted(data), placement=data, overwrite=overwrite)
    return GenerationCompile(plan, out, True, fits)


def layer_devices(plan: GenerationPlan) -> dict[str, Sequence[str]]:
    """Each phase's device per decoder layer (what the phase plans are pinned to)."""
    return {phase: _layer_devices(plan, phase) for phase in ("prefill", "decode")}
