"""Generation benchmark (run side): the zoo llama in both folder layouts, generated greedily
through generation plans on this machine's runners against the unpartitioned model in one
ONNX Runtime session, and decode step time measured across contexts.

For each layout: a single-device plan (every layer on ``ort-cpu``) and a split plan (first
half of the layers on ``ort-cpu``, second half on ``ov-cpu``), both compiled with
``generation.phase_plans.compile_split_plan``; each generates the same prompt, rounds
interleaved with the unpartitioned reference (``generation.reference.ReferenceSession``),
medians of TTFT and of the per-step median (TPOT p50) over rounds. Token ids are compared
with the reference (and, for genai, onnxruntime-genai's own Generator). Then
``measure_decode_step`` on ``onnxruntime`` and ``openvino`` at contexts 128-2048: the KV
growth the planner's decode costs are checked against.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SPLIT = ("ort-cpu", "ov-cpu")
CONTEXTS = (128, 256, 512, 1024, 2048)
RUNNERS = {"onnxruntime": {"provider": "CPUExecutionProvider"}, "openvino": {"device": "CPU"}}
#: The ``local`` cluster's device of each runner above.
DEVICE_OF = {"onnxruntime": "ort-cpu", "openvino": "ov-cpu"}


def _compile_time_fits(layout: Any) -> dict[str, Any]:
    """The decode lines a compile for a workload up to context 2048 fits on this machine."""
    from partitioner.cluster.local import detect_local_cluster
    from partitioner.generation.compile import measured_decode_fits
    from partitioner.generation.workload import Workload

    cluster = detect_local_cluster().restricted_to(list(DEVICE_OF.values()))
    workload = Workload(prompt=128, new=1920, batch=1, context=2048)
    return measured_decode_fits(layout, cluster, workload, 1)


def _ratio_table(caption: str, rows: list[tuple[str, str, list[float]]]) -> list[str]:
    """A caption, then one row per (layout, runner) of relative differences per context and
    how many are within ±10%."""
    lines = ["", caption, "",
             "| layout | runner | " + " | ".join(f"ctx {c}" for c in CONTEXTS)
             + " | within ±10% |",
             "| --- | --- | " + " | ".join("---:" for _ in CONTEXTS) + " | ---: |"]
    for kind, runner, values in rows:
        within = sum(abs(v) <= 0.10 for v in values)
        lines.append(f"| {kind} | {runner} | " + " | ".join(f"{v:+.0%}" for v in values)
                     + f" | {within}/{len(values)} |")
    return lines


def _generate_rounds(candidates: dict[str, Any], ids: np.ndarray, new: int,
                     rounds: int) -> dict[str, dict[str, Any]]:
    """Per candidate: median TTFT, median of per-round TPOT p50, last tokens."""
    samples: dict[str, dict[str, list[float]]] = {n: {"ttft": [], "tpot": []}
                                                  for n in candidates}
    tokens: dict[str, np.ndarray] = {}
    for runner in candidates.values():  # warm every session before timing any
        runner.generate(ids, 2, stop_at_eos=False)
    for _ in range(rounds):
        for name, runner in candidates.items():
            result = runner.generate(ids, new, stop_at_eos=False)
            samples[name]["ttft"].append(result.ttft_s)
            samples[name]["tpot"].append(result.tpot_percentile(50) or 0.0)
            tokens[name] = result.tokens
    return {name: {"ttft_s": statistics.median(s["ttft"]),
                   "tpot_s": statistics.median(s["tpot"]),
                   "tpot_spread": (max(s["tpot"]) - min(s["tpot"])) / statistics.median(s["tpot"]),
                   "tokens": tokens[name]}
            for name, s in samples.items()}


def run(quick: bool = False) -> str:
    from models import zoo
    from partitioner.generation.generator import Generator
    from partitioner.generation.layout import load_layout
    from partitioner.generation.measure import measure_decode_step
    from partitioner.generation.phase_plans import compile_split_plan
    from partitioner.generation.reference import (
        ReferenceSession,
        genai_available,
        genai_generate,
    )

    size = "llama-tiny" if quick else "llama-small"
    prompt, new, rounds = (16, 16, 3) if quick else (64, 32, 5)
    layouts = ["optimum"] + (["genai"] if genai_available() else [])
    lines = [
        "## Generation: plans against the unpartitioned model (zoo llama, both layouts)",
        "",
        f"`{size}` (f32, random weights), batch 1, prompt {prompt} tokens, {new} new tokens, "
        f"greedy; {rounds} rounds interleaved (plan, plan, reference), medians. `whole` = "
        "every layer on ort-cpu; `split` = first half of the layers on ort-cpu, second half "
        "on ov-cpu (OpenVINO). Tokens compared with the unpartitioned model in one ONNX "
        "Runtime session (and onnxruntime-genai's Generator for genai).",
        "",
        "| layout | run | TTFT ms | TPOT p50 ms | TPOT spread | tokens/s | tokens identical |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    ids = np.random.default_rng(0).integers(3, 500, (1, prompt))
    with tempfile.TemporaryDirectory(prefix="hetpart-bench-gen-") as tmp:
        for kind in layouts:
            folder = zoo.build("llama", {"size": size, "layout": kind})
            layout = load_layout(folder)
            candidates: dict[str, Any] = {}
            for name, split in (("whole", ("ort-cpu",)), ("split", SPLIT)):
                out = Path(tmp) / f"{kind}-{name}"
                compile_split_plan(layout, out, "local", prefill_split=split,
                                   decode_split=split, prompt=prompt, context=prompt + new,
                                   options={"measure_rounds": 0, "time_limit_s": 5})
                candidates[name] = Generator(out)
            candidates["reference"] = ReferenceSession(layout)
            try:
                stats = _generate_rounds(candidates, ids, new, rounds)
            finally:
                for name in ("whole", "split"):
                    candidates[name].close()
            expected = stats["reference"]["tokens"]
            genai_tokens = genai_generate(folder, ids, new) if kind == "genai" else None
            for name, s in stats.items():
                same = bool(np.array_equal(s["tokens"], expected))
                if genai_tokens is not None:
                    n = genai_tokens.shape[1]
                    same = same and bool(np.array_equal(s["tokens"][:, :n], genai_tokens))
                label = "unpartitioned ORT" if name == "reference" else name
                lines.append(
                    f"| {kind} | {label} | {s['ttft_s'] * 1e3:.2f} | {s['tpot_s'] * 1e3:.3f} | "
                    f"{s['tpot_spread']:.0%} | {1 / s['tpot_s']:.0f} | "
                    f"{'yes' if same else 'NO'} |")
        lines += [
            "",
            "Decode step time of the whole model (one new token over context - 1 cached ones), "
            "`partitioner.generation.measure.measure_decode_step`, batch 1: median of "
            "interleaved warm blocks, (fastest-slowest)/median in brackets.",
            "",
            "| layout | runner | " + " | ".join(f"ctx {c} ms" for c in CONTEXTS) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in CONTEXTS) + " |",
        ]
        fidelity = []
        layouts_read = {kind: load_layout(zoo.build("llama", {"size": size, "layout": kind}))
                        for kind in layouts}
        for kind, layout in layouts_read.items():
            fits = _compile_time_fits(layout)
            for runner, options in RUNNERS.items():
                times = measure_decode_step(layout, runner, CONTEXTS, 1, options=options,
                                            rounds=3 if quick else 5)
                cells = " | ".join(f"{t.median_s * 1e3:.3f} ({t.spread:.0%})" for t in times)
                lines.append(f"| {kind} | {runner} | {cells} |")
                fit = fits[DEVICE_OF[runner]]
                errors = [(fit.predict(t.context - 1) - t.median_s) / t.median_s for t in times]
                fidelity.append((kind, runner, errors, [t.median_s for t in times]))
        # The same steps measured again once all are done: how far this machine's own
        # measurements of one thing drift in minutes, beside the prediction's error.
        drifts = []
        for kind, runner, _, first in fidelity:
            again = measure_decode_step(layouts_read[kind], runner, CONTEXTS, 1,
                                        options=RUNNERS[runner], rounds=3 if quick else 5)
            drifts.append([(t.median_s - f) / f for t, f in zip(again, first, strict=True)])
        lines += _ratio_table(
            "Predicted against measured decode step: *predicted* is the curve `hetpart "
            "compile` draws through the steps it measures on each local device (linear "
            "between its points) for a workload reaching context 2048 "
            "(`generation.compile.measured_decode_fits`, contexts 129-2048), taken before the "
            "measurement above; error = (predicted - measured) / measured.",
            [(kind, runner, errors) for kind, runner, errors, _ in fidelity])
        lines += _ratio_table(
            "The measurement's own repeatability: the same decode steps measured again the "
            "same way after all of the above; drift = (again - first) / first.",
            [(kind, runner, drift)
             for (kind, runner, *_), drift in zip(fidelity, drifts, strict=True)])
        predicted_ok = sum(abs(e) <= 0.10 for *_, errors, _ in fidelity for e in errors)
        steady = sum(abs(d) <= 0.10 for drift in drifts for d in drift)
        total = sum(len(d) for d in drifts)
        lines += ["", f"Predicted within ±10%: **{predicted_ok}/{total}**; the same steps "
                  f"measured twice agree within ±10%: **{steady}/{total}**."]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", f"Load average (1 min) at the end of the section: {load:.1f} on "
              f"{os.cpu_count()} cores; spreads above ~30% mean other work shared the cores."]
    return "\n".join(lines) + "\n"
