"""Generation placement on spec-sheet fleets: 7B- and 70B-class decoders on mixed
A100/L4/T4/CPU fleets, the plan against every baseline, its proven gap and solve time, and why
it is disaggregated or co-located; plus, measured here, how well the decode curve measured
at three contexts predicts decode steps at the others."""

from __future__ import annotations

import statistics
import time
from typing import Any

#: (model, cluster, workload, objective, SLOs in ms (ttft, tpot)).
CASES: tuple[tuple[str, str, str, str, tuple[float | None, float | None]], ...] = (
    ("llama-7b", "fleet-a100-l4-t4-cpu", "prompt=512,new=128,batch=32,context=2048",
     "tokens-per-s", (None, None)),
    ("llama-7b", "fleet-l4-t4-cpu", "prompt=512,new=128,batch=32,context=2048",
     "cost-per-mtok", (None, None)),
    ("llama-70b", "fleet-a100-l4-t4-cpu", "prompt=512,new=128,batch=16,context=2048",
     "tokens-per-s", (None, None)),
    ("llama-70b", "fleet-a100-l4-t4-cpu", "prompt=512,new=128,batch=16,context=2048",
     "cost-per-mtok", (None, None)),
    ("llama-70b", "fleet-l4-t4-cpu", "prompt=512,new=128,batch=16,context=2048",
     "tokens-per-s", (None, None)),
    ("llama-70b", "fleet-l4-t4-cpu", "prompt=512,new=128,batch=16,context=2048",
     "cost-per-mtok", (None, 400.0)),
    ("llama-70b", "fleet-l4-t4-cpu", "prompt=512,new=128,batch=8,context=2048",
     "ttft", (None, None)),
)
BASELINES = ("best single device", "layer offload", "best co-located plan",
             "cheapest homogeneous fleet")
TIME_LIMIT_S = 10.0


def _fmt(b: dict[str, Any] | None) -> str:
    if b is None:
        return "none"
    return f"{b['tokens_per_s']:.3g} tok/s, {b['cost_per_mtok']:.3g} $/Mtok"


def _value(objective: str, v: float | None) -> str:
    if v is None:
        return "-"
    if objective in ("ttft", "tpot"):
        return f"{v * 1e3:.4g} ms"
    return f"{v:.4g}"


def fleets(repeats: int) -> str:
    from partitioner.cluster.file import load_cluster
    from partitioner.generation.planner import plan_generation
    from partitioner.generation.spec import named_spec
    from partitioner.generation.workload import Targets, Workload

    results: dict[int, list[Any]] = {i: [] for i in range(len(CASES))}
    for _ in range(repeats):  # interleaved: every case once per round
        for i, (model, cluster, workload, objective, (ttft, tpot)) in enumerate(CASES):
            targets = Targets(objective, ttft / 1e3 if ttft else None,
                              tpot / 1e3 if tpot else None)
            t0 = time.perf_counter()
            plan = plan_generation(named_spec(model), Workload.parse(workload), targets,
                                   load_cluster(cluster), time_limit_s=TIME_LIMIT_S)
            results[i].append((time.perf_counter() - t0, plan))
    lines = [
        f"Spec-sheet fleets (devices.toml; 100 Gb/s network), {TIME_LIMIT_S:g} s limit per plan "
        f"(the whole batch search), {repeats} interleaved round(s); solve time is the median "
        "(min-max). Objective units: tokens/s, $/Mtok, or ms. Gap: (plan - bound) / plan over "
        "the layer groups (the CP-SAT bound, combined over the batch sizes tried). Never "
        "worse: the plan against best single device, layer offload and best co-located "
        "plan on the objective (the cheapest homogeneous fleet is chosen by $/h).",
        "",
        "| model | fleet (devices) | workload | objective (SLO) | groups | plan | bound | gap "
        "| solve s | batch | plan tok/s, $/Mtok | " + " | ".join(BASELINES)
        + " | never worse | phases |",
        "|" + "---|" * (12 + len(BASELINES)),
    ]
    choices = []
    for i, (model, cluster, workload, objective, (ttft, tpot)) in enumerate(CASES):
        times = [t for t, _ in results[i]]
        plan = results[i][-1][1]
        d = plan.to_dict()
        slo = ", ".join(f"{n} {v:g} ms" for n, v in (("TTFT", ttft), ("TPOT", tpot)) if v)
        never_worse = all(
            d["baselines"][b] is None or plan.plan.eval.key(objective)
            <= plan.baselines[b].eval.key(objective) * (1 + 1e-9)  # type: ignore[union-attr]
            for b in BASELINES[:3])
        gap = "-" if plan.gap is None else f"{plan.gap:.2%}"
        spread = f"{statistics.median(times):.1f} ({min(times):.1f}-{max(times):.1f})"
        lines.append(
            f"| {model} | {cluster} ({len(plan.cluster.devices)}) | {workload} | {objective}"
            + (f" ({slo})" if slo else "")
            + f" | {len(plan.groups)} | {_value(objective, plan.value)} | "
            f"{_value(objective, plan.bound)} | {gap} | {spread} | {d['batch']} | "
            f"{_fmt(d['predicted'])} | "
            + " | ".join(_fmt(d["baselines"].get(b)) for b in BASELINES)
            + f" | {'yes' if never_worse else 'NO'} | "
            f"{'co-located' if plan.plan.eval.colocated else 'disaggregated'} |")
        choices.append(f"- {model} on {cluster}, {objective}: {d['choice']}.")
    return "\n".join(lines + ["", "Disaggregated or co-located, and why:", "", *choices])


def decode_line_accuracy() -> str:
    """The decode curve through three contexts predicts the others, measured (here)."""
    try:
        from models import zoo
    except ImportError as exc:  # pragma: no cover - zoo extras absent
        return f"(skipped: the llama zoo model needs torch and transformers: {exc})"
    from partitioner.cluster.file import load_cluster
    from partitioner.generation.costs import DecodeFit, compute_dtype, measured_rates
    from partitioner.generation.layout import load_layout
    from partitioner.generation.measure import measure_decode_step
    from partitioner.generation.phases import group_layers, group_work

    layout = load_layout(zoo.build("llama", {"size": "llama-small", "layout": "optimum"}))
    spec = layout.spec
    device = load_cluster("local").devices[0]
    fitted, held = (128, 512, 2048), (256, 1024)
    batch = 1
    steps = {s.context: s for s in measure_decode_step(layout, device, sorted(fitted + held),
                                                       batch)}
    fit = DecodeFit.from_points([(c - 1, steps[c].median_s) for c in fitted], batch)
    works = [group_work(spec, g, 1, batch) for g in group_layers(spec.num_layers,
                                                                   spec.num_layers)]
    weights = sum(w.decode_weight_bytes + w.decode_other_bytes for w in works)
    rates = measured_rates(device, compute_dtype(spec.weight_bytes_per_param), fit, weights,
                           spec.kv_bytes_per_token())
    lines = [
        f"Decode step of {spec.name} ({spec.num_layers} layers, f32) on {device.id} here, batch "
        f"{batch}: the curve through the steps measured at contexts "
        f"{', '.join(map(str, fitted))} predicts the others; predicted = the sum over layers "
        "of the per-layer costs from the measured rates + one call overhead (what a "
        "one-device decode plan is predicted at). Measured: "
        "median of 5 interleaved blocks (min-max).",
        "",
        "| context | measured ms | min-max ms | predicted ms | error | fitted on |",
        "|---|---|---|---|---|---|",
    ]
    for c in sorted(fitted + held):
        s = steps[c]
        predicted = sum(float(rates.decode_s(w, c - 1)) for w in works) + device.call_overhead_s
        lines.append(f"| {c} | {s.median_s * 1e3:.3f} | {s.low_s * 1e3:.3f}-"
                     f"{s.high_s * 1e3:.3f} | {predicted * 1e3:.3f} | "
                     f"{(predicted - s.median_s) / s.median_s:+.1%} | "
                     f"{'yes' if c in fitted else 'no'} |")
    return "\n".join(lines)


def run(quick: bool = False) -> str:
    return "\n".join([
        "## Generation placement (spec-sheet fleets)",
        "",
        fleets(1 if quick else 2),
        "",
        decode_line_accuracy(),
    ])
