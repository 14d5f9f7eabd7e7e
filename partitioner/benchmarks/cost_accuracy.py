"""Cost-model accuracy: predicted whole-model latency against the measured one, per runner.

For each zoo model (default parameters) and each local runner: the profiled per-node latencies
summed plus one per-call overhead (raw), the same after the runner's calibration (a scale and
a per-node dispatch cost fitted on a *different* set of models: zoo variants with other
parameters), and the whole model measured in one session on that runner (median of repeats).
Profiles are measured in this run into a fresh cache.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partitioner.cluster.local import detect_local_cluster
from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.costing.types import Supported
from partitioner.graph.analysis import AnalysedModel, analyse
from partitioner.profiling.cache import ProfileCache
from partitioner.profiling.timing import median_and_spread, time_calls
from partitioner.registry import cost_models

if TYPE_CHECKING:
    from cost_models.profiled import ProfiledCostModel

log = logging.getLogger(__name__)

#: Models the predictions are judged on (zoo defaults).
EVALUATED = ("mlp", "resnet", "inception", "gpt", "bert")
#: Models the calibration is fitted on: same families, different sizes, never evaluated.
CALIBRATION: tuple[tuple[str, dict[str, int]], ...] = (
    ("mlp", {"layers": 8, "width": 128}),
    ("resnet", {"blocks": 2, "channels": 24}),
    ("inception", {"blocks": 1, "channels": 24, "image": 40}),
    ("gpt", {"layers": 1, "d_model": 96, "heads": 4}),
    ("bert", {"layers": 3, "d_model": 64, "heads": 4, "seq_len": 32}),
    # --quick stops here
    ("mlp", {"layers": 2, "width": 512}),
    ("resnet", {"blocks": 3, "channels": 8, "image": 48}),
    ("inception", {"blocks": 3, "channels": 8, "image": 32}),
    ("gpt", {"layers": 3, "d_model": 64, "heads": 2, "seq_len": 32}),
    ("bert", {"layers": 1, "d_model": 192, "heads": 4, "seq_len": 96}),
)
QUICK_CALIBRATION = 5
GOAL = 0.10
#: Seconds of timed runs per node signature (longer than `hetpart profile`: steadier minima).
NODE_TIME_S = 0.2
COMMAND = "python -m partitioner.benchmarks --only cost_accuracy"


@dataclass(frozen=True)
class Row:
    """One (model, runner) pair."""

    model: str
    device: str
    median_s: float
    best_s: float
    noise: float
    raw_s: float
    calibrated_s: float
    model_calibrated_s: float

    @property
    def raw_error(self) -> float:
        return (self.raw_s - self.best_s) / self.best_s

    @property
    def cross_error(self) -> float:
        """Prediction corrected on other models against the best whole-model time."""
        return (self.calibrated_s - self.best_s) / self.best_s

    @property
    def error(self) -> float:
        """What compile predicts (scaled to this model's profile-time timing) against best."""
        return (self.model_calibrated_s - self.best_s) / self.best_s

    @property
    def median_error(self) -> float:
        """What compile predicts against the median whole-model time."""
        return (self.model_calibrated_s - self.median_s) / self.median_s


def _load(name: str, params: dict[str, int] | None = None) -> AnalysedModel:
    from models import zoo

    return analyse(zoo.build(name, params))


def _whole(profiled: ProfiledCostModel, model: AnalysedModel, device: DeviceSpec,
           repeats: int) -> tuple[float, float, float]:
    options = dict(device.runner_options, label=f"whole {model.facts.model_name}")
    prepared = profiled._runner(device).prepare(model.model, options)
    feeds = profiled.make_feeds(model.model)  # cost_models.single_node.random_feeds
    samples = time_calls(lambda: prepared.run(feeds), 3, repeats, budget_s=5.0, min_time_s=1.0)
    median, spread = median_and_spread(samples)
    return median, min(samples), spread / median


def _predict(profiled: ProfiledCostModel, model: AnalysedModel,
             device: DeviceSpec) -> tuple[float, float] | None:
    sums = profiled.node_sums(model, device)
    if sums is None:
        return None
    raw = sum(sums)
    total = 0.0
    for node in model.facts.nodes:
        cost = profiled.estimate(model, node, device)
        assert isinstance(cost, Supported), "node_sums saw every node supported"
        total += cost.latency_s
    return raw + device.call_overhead_s, total + device.call_overhead_s


def measure(quick: bool = False, cache: ProfileCache | None = None) -> tuple[list[Row], Any]:
    """Profile, calibrate on CALIBRATION, and judge on EVALUATED. Returns rows and cluster."""
    cache = cache or ProfileCache(Path(tempfile.mkdtemp(prefix="hetpart-bench-")) / "p.sqlite")
    cluster: Cluster = detect_local_cluster(cache=cache)
    repeats = 5 if quick else 15
    calibrating: ProfiledCostModel = cost_models.create(
        "profiled", cache=cache, repeats=repeats, calibrate=True, min_time_s=NODE_TIME_S
    )
    for name, params in CALIBRATION[: QUICK_CALIBRATION if quick else None]:
        calibrating.prepare(_load(name, params), cluster)
    profiled: ProfiledCostModel = cost_models.create(
        "profiled", cache=cache, repeats=repeats, min_time_s=NODE_TIME_S
    )
    # Pass 1: predictions before this model was ever timed whole (raw, other-model correction).
    models = {name: _load(name) for name in EVALUATED}
    predicted: dict[tuple[str, str], tuple[float, float]] = {}
    for name, model in models.items():
        profiled.prepare(model, cluster)
        for device in cluster.devices:
            pair = _predict(profiled, model, device)
            if pair is None:
                log.warning("%s: a node is unsupported on %s; skipped", name, device.id)
            else:
                predicted[(name, device.id)] = pair
    # Pass 2: what `hetpart compile` does: time the model whole at profile time, scale to it.
    scaled: dict[tuple[str, str], float] = {}
    for name, model in models.items():
        calibrating.prepare(model, cluster)
        for device in cluster.devices:
            pair = _predict(calibrating, model, device)
            if pair is not None:
                scaled[(name, device.id)] = pair[1]
    # Pass 3: the measurement, minutes after profiling, as a later `hetpart run` would see it.
    rows: list[Row] = []
    for (name, device_id), (raw, cross) in predicted.items():
        if (name, device_id) not in scaled:
            continue
        device = cluster.device(device_id)
        median, best, noise = _whole(profiled, models[name], device, 10 if quick else 30)
        rows.append(Row(name, device_id, median, best, noise, raw, cross, scaled[name, device_id]))
    return rows, (cluster, profiled)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def render(rows: list[Row], cluster: Cluster, profiled: ProfiledCostModel, quick: bool) -> str:
    """The Markdown section for ``rows``."""
    ok = [r for r in rows if abs(r.error) <= GOAL]
    ok_median = [r for r in rows if abs(r.median_error) <= GOAL]
    raw_ok = [r for r in rows if abs(r.raw_error) <= GOAL]
    cross_ok = [r for r in rows if abs(r.cross_error) <= GOAL]
    calibration = ", ".join(f"{n}({', '.join(f'{k}={v}' for k, v in p.items())})"
                            for n, p in CALIBRATION)
    lines = [
        "## Cost-model accuracy (predicted vs measured whole-model latency)",
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}` (part of `make bench`). ort-cpu is "
        "ONNX Runtime in f32; ov-cpu is OpenVINO's CPU plugin compiled for f32 (the runner's "
        "default `INFERENCE_PRECISION_HINT`, whatever the CPU). Profiles "
        "were measured in this run into a fresh cache. *raw* = sum of per-node latencies "
        "measured alone (best of the repeats, per-call overhead subtracted) + one per-call "
        "overhead; *cross* = the same after the runner's correction (a scale for tensor "
        f"ops, one for other ops, a per-node cost) fitted on different models: {calibration}; "
        "*predicted* = what `hetpart compile --cluster local` uses: the model is timed whole "
        "on each runner at profile time and its node costs are scaled to that time "
        "(partition-level calibration), then it is measured again minutes later. "
        "The later measurement is one session per runner: *median* and *best* of the "
        "repeats; *noise* = p10-p90 spread / median. Errors are against *best* (robust "
        "when other processes share the CPU) and, last column, against the median.",
        "",
        "| model | runner | median ms | best ms | noise | raw err | cross err | predicted ms "
        "| err (best) | ±10% | err (median) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.device} | {_ms(r.median_s)} | {_ms(r.best_s)} | {r.noise:.0%} "
            f"| {r.raw_error:+.0%} | {r.cross_error:+.0%} | {_ms(r.model_calibrated_s)} "
            f"| {r.error:+.0%} | {'yes' if abs(r.error) <= GOAL else 'no'} "
            f"| {r.median_error:+.0%} |"
        )
    lines += ["", "Calibration per runner: " + "; ".join(
        f"{d.id} {profiled.correction(d).describe()}" for d in cluster.devices) + "."]
    share = len(ok) / len(rows) if rows else 0.0
    verdict = "met" if share >= 0.9 else "NOT met"
    lines += [
        "",
        f"**Goal (±10% for ≥90% of pairs): {verdict}** — {len(ok)}/{len(rows)} pairs "
        f"({share:.0%}) predicted vs best; {len(ok_median)}/{len(rows)} vs median; "
        f"{len(cross_ok)}/{len(rows)} with the other-model correction; "
        f"{len(raw_ok)}/{len(rows)} raw.",
    ]
    misses = [r for r in rows if abs(r.error) > GOAL]
    if misses:
        lines += ["", "Where it misses and why: "
                  + ", ".join(f"{r.model} on {r.device} ({r.error:+.0%})" for r in misses) + ". "
                  + _why(rows)]
    return "\n".join(lines) + "\n"


def _why(rows: list[Row]) -> str:
    """The causes of the misses, with numbers from this run."""
    slow = statistics.median(r.median_s / r.best_s for r in rows)
    noisy = sum(r.noise > GOAL for r in rows)
    raw = {d: statistics.median(r.raw_error for r in rows if r.device == d)
           for d in dict.fromkeys(r.device for r in rows)}
    return (
        f"(1) Timing noise: in this run the median whole-model time is {slow:.1f}x the best "
        f"on the median pair and {noisy}/{len(rows)} pairs have a p10-p90 spread above 10% "
        "(the 2-core machine is shared with other jobs; multi-threaded runtimes suffer most "
        "when a core is taken away). Node profiles, calibration models and evaluated models "
        "are timed minutes apart under different load, so a correction fitted on other "
        "models transfers only as well as the load stayed the same. (2) Structure: a node "
        "timed alone misses fusion and layout changes done once per graph; the raw per-node "
        "sums are off by a median of "
        + ", ".join(f"{e:+.0%} on {d}" for d, e in raw.items())
        + " here, and one scale per op class plus one per-node cost per runner cannot fit "
        "CNNs and transformers exactly. Rerun on a quiet machine before trusting a verdict."
    )


def run(quick: bool = False) -> str:
    """Run the benchmark and return its Markdown section."""
    rows, (cluster, profiled) = measure(quick)
    return render(rows, cluster, profiled, quick)


if __name__ == "__main__":
    import sys

    sys.stdout.write(run(quick="--quick" in sys.argv))
