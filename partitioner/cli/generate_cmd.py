"""``hetpart generate``: greedy generation on a generation plan (prefill and decode phases on
their devices) or, for comparison, on a decoder folder's whole model in one ONNX Runtime
session; TTFT, TPOT and tokens/s measured against the plan's prediction, ``--check`` against
the unpartitioned model (and onnxruntime-genai's own Generator on genai folders)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from partitioner.cli.common import print_json, ray_address
from partitioner.errors import PartitionerError, RunError

DEFAULT_ATOL = 1e-4


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate tokens greedily on a generation plan (or a decoder folder) and time it",
        description="Prefill on the plan's prefill partitions, decode steps on its decode "
        "partitions (the KV cache fed back step to step), greedy. TARGET is a generation plan "
        "directory (generation.json) or a decoder folder (genai or Optimum layout: its whole "
        "model in one ONNX Runtime CPU session).",
    )
    p.add_argument("target", metavar="PLAN_DIR|MODEL_DIR")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt-tokens", type=int, metavar="N",
                        help="a prompt of N token ids drawn from --seed")
    prompt.add_argument("--prompt", metavar="TEXT", help="a prompt encoded with the layout's "
                        "tokenizer.json")
    p.add_argument("--max-new-tokens", type=int, required=True, metavar="M")
    p.add_argument("--batch", type=int, default=1, metavar="B",
                   help="concurrent sequences (default 1; --prompt repeats the text)")
    p.add_argument("--seed", type=int, default=0, help="seed of --prompt-tokens (default 0)")
    p.add_argument("--ignore-eos", action="store_true",
                   help="generate M tokens even after EOS (steady timing)")
    p.add_argument("--warmup", type=int, default=1, metavar="K",
                   help="untimed short generates first (default 1)")
    p.add_argument("--check", action="store_true",
                   help="also run the unpartitioned model: token ids must be identical and "
                   "logits within --atol (genai folders: also onnxruntime-genai's Generator)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"--check logit tolerance (default {DEFAULT_ATOL})")
    p.add_argument("--emulate", action="store_true",
                   help="run devices absent here on ONNX Runtime CPU")
    p.add_argument("--ray", metavar="ADDRESS", type=ray_address,
                   help="run prefill and decode on a Ray cluster, each phase's actors on the "
                   "nodes advertising its devices: 'local' (a throwaway loopback cluster, one "
                   "node per host) or its address (auto, HOST:PORT)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _prompt(args: argparse.Namespace, layout: Any, tokenizer_path: Path | None) -> Any:
    if args.batch < 1:
        raise RunError(f"--batch must be >= 1, got {args.batch}")
    if args.max_new_tokens < 1:
        raise RunError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.prompt_tokens is not None:
        if args.prompt_tokens < 1:
            raise RunError(f"--prompt-tokens must be >= 1, got {args.prompt_tokens}")
        layout.check_context(args.prompt_tokens + args.max_new_tokens,
                             "--prompt-tokens + --max-new-tokens:")
        rng = np.random.default_rng(args.seed)
        low = min(3, layout.spec.vocab_size - 1)  # past the usual pad/bos/eos ids
        return rng.integers(low, layout.spec.vocab_size, (args.batch, args.prompt_tokens))
    tokenizer = _tokenizer(tokenizer_path)
    ids = tokenizer.encode(args.prompt).ids
    if not ids:
        raise RunError(f"--prompt {args.prompt!r} encodes to no tokens")
    return np.tile(np.asarray(ids, dtype=np.int64), (args.batch, 1))


def _tokenizer(path: Path | None) -> Any:
    if path is None or not path.is_file():
        raise RunError("--prompt needs a tokenizer.json beside the model (or in the plan "
                       f"directory){f': {path} is missing' if path else ''}; use "
                       "--prompt-tokens N instead")
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own Exception type
        raise RunError(f"{path}: cannot load tokenizer: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from partitioner.generation.layout import is_decoder_folder, load_layout
    from partitioner.generation.plan_dir import is_generation_plan, load_generation_plan
    from partitioner.generation.reference import ReferenceSession

    target = Path(args.target)
    plan = None
    if is_generation_plan(target):
        plan = load_generation_plan(target)
        layout, tokenizer_path = plan.layout, plan.tokenizer_path or plan.layout.tokenizer_path
    elif target.exists() and is_decoder_folder(target):
        layout = load_layout(target)
        tokenizer_path = layout.tokenizer_path
    else:
        raise PartitionerError(f"{target} is neither a generation plan (generation.json) nor a "
                               f"decoder folder (genai_config.json, or config.json beside "
                               f"model.onnx)")
    if args.ray and plan is None:
        raise RunError(f"--ray runs a generation plan; {target} is a decoder folder (compile it "
                       "with `hetpart compile --workload ...` first)")
    ids = _prompt(args, layout, tokenizer_path)
    if args.check and plan is not None:  # a missing or foreign model fails before the run
        from partitioner.plan.io import check_model_hash

        check_model_hash(plan.decode, layout.model_path)
    if plan is not None:
        from partitioner.generation.generator import Generator

        runner: Any = Generator(plan, emulate=args.emulate, ray=args.ray)
    else:
        runner = ReferenceSession(layout)
    keep = args.check
    try:
        for _ in range(max(args.warmup, 0)):
            runner.generate(ids, min(args.max_new_tokens, 2), stop_at_eos=False)
        result = runner.generate(ids, args.max_new_tokens, stop_at_eos=not args.ignore_eos,
                                 keep_logits=keep)
        ray_record = runner.ray.record(args.ray) if plan is not None and runner.ray else None
    finally:
        if plan is not None:
            runner.close()
    record: dict[str, Any] = {
        "target": str(target),
        "kind": "plan" if plan is not None else "model",
        "layout": layout.kind,
        "model": str(layout.model_path),
        "measured": result.summary(),
    }
    if plan is not None:
        record["devices"] = {"prefill": runner.devices("prefill"),
                             "decode": runner.devices("decode")}
        record["partition_s"] = {
            "prefill": {str(k): v for k, v in sorted(result.prefill_partition_s.items())},
            "decode_per_step": {str(k): v / max(len(result.step_s), 1)
                                for k, v in sorted(result.decode_partition_s.items())}}
        record["predicted"] = plan.predicted
        record["workload"] = plan.workload
        if runner.ray is not None:
            from partitioner.generation.ray_phases import KV_AS_REFS

            record["ray"] = ray_record
            context = result.sequences.shape[1] - 1
            record["kv"] = {"transport": KV_AS_REFS,
                            "bytes_at_end": layout.kv_bytes(result.batch, context)}
    if tokenizer_path is not None and tokenizer_path.is_file():
        tok = _tokenizer(tokenizer_path)
        record["text"] = [tok.decode([int(t) for t in row]) for row in result.tokens]
    ok = True
    if args.check:
        record["check"] = _check(layout, ids, args, result)
        ok = record["check"]["passed"]
    if args.json:
        print_json(record)
    else:
        print(_format(record))
    return 0 if ok else 1


def _check(layout: Any, ids: Any, args: argparse.Namespace, result: Any) -> dict[str, Any]:
    from partitioner.generation.reference import (
        ReferenceSession,
        compare,
        genai_available,
        genai_generate,
    )

    reference = ReferenceSession(layout).generate(
        ids, args.max_new_tokens, stop_at_eos=not args.ignore_eos, keep_logits=True)
    genai_tokens = None
    genai_note = None
    if layout.kind == "genai":
        if genai_available() and not args.ignore_eos:
            genai_tokens = genai_generate(layout.folder, ids, args.max_new_tokens)
        else:
            genai_note = ("onnxruntime-genai is not installed" if not genai_available()
                          else "not compared with --ignore-eos (its Generator stops at EOS)")
    outcome = compare(result, reference, args.atol, genai_tokens)
    return {"passed": outcome.ok, "tokens_identical": outcome.tokens_equal,
            "max_logit_diff": outcome.max_logit_diff, "atol": outcome.atol,
            "genai_tokens_identical": outcome.genai_tokens_equal, "genai_note": genai_note,
            "detail": outcome.detail,
            "reference": {"ttft_s": reference.ttft_s,
                          "tpot_p50_s": reference.tpot_percentile(50),
                          "tokens_per_s": reference.tokens_per_s}}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.3f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _format(record: dict[str, Any]) -> str:
    m = record["measured"]
    lines = [f"{record['kind']:<9} {record['target']} ({record['layout']} layout)"]
    if "devices" in record:
        for phase in ("prefill", "decode"):
            lines.append(f"{phase:<9} partitions on {', '.join(record['devices'][phase])}")
    if "ray" in record:
        ray = record["ray"]
        lines.append(f"ray       {ray['cluster']}: " + "; ".join(
            f"{phase} " + ", ".join(f"{d}@{h}" for d, h in hosts.items())
            for phase, hosts in ray["hosts"].items()))
        held = record["kv"]["bytes_at_end"] / 2**20
        lines.append(f"kv cache  {held:.2f} MiB at the last step, as {record['kv']['transport']}")
    lines.append(f"workload  batch {m['batch']}, prompt {m['prompt_tokens']} tokens, "
                 f"{m['new_tokens']} new tokens")
    predicted = record.get("predicted") or {}
    planned = record.get("workload") or {}
    ran = {"batch": m["batch"], "prompt": m["prompt_tokens"], "new": m["new_tokens"]}
    if predicted and any(planned.get(k) not in (None, v) for k, v in ran.items()):
        lines.append(f"predicted for the plan's workload (batch {planned.get('batch')}, prompt "
                     f"{planned.get('prompt')}, {planned.get('new')} new tokens), not this "
                     "run's: compile for this workload to compare")
    rows = [("TTFT", _ms(predicted.get("ttft_s")), _ms(m["ttft_s"])),
            ("TPOT p50", _ms(predicted.get("tpot_s")), _ms(m["tpot_p50_s"])),
            ("TPOT p90", "-", _ms(m["tpot_p90_s"])),
            ("tokens/s", _rate(predicted.get("tokens_per_s")), _rate(m["tokens_per_s"])),
            ("decode tokens/s", "-", _rate(m["decode_tokens_per_s"]))]
    lines.append(f"  {'':<16}{'predicted':>14}{'measured':>14}")
    lines.extend(f"  {name:<16}{p:>14}{q:>14}" for name, p, q in rows)
    if "partition_s" in record:
        for phase, label in (("prefill", "prefill"), ("decode_per_step", "decode/step")):
            parts = record["partition_s"][phase]
            devices = record["devices"]["prefill" if phase == "prefill" else "decode"]
            lines.append(f"  {label:<16}" + ", ".join(
                f"p{k} {devices[int(k)]} {_ms(v)}" for k, v in parts.items()))
    for b, row in enumerate(m["tokens"]):
        lines.append(f"tokens[{b}] {row}")
    for b, text in enumerate(record.get("text", [])):
        lines.append(f"text[{b}]   {text!r}")
    if "check" in record:
        c = record["check"]
        verdict = "PASSED" if c["passed"] else "FAILED"
        genai = {True: "identical", False: "DIFFERENT", None: c.get("genai_note") or "n/a"}
        same = "identical" if c["tokens_identical"] else "DIFFERENT"
        lines.append(f"check     {verdict}: tokens {same} to the unpartitioned model (onnxruntime "
                     f"CPU), max |logit diff| {c['max_logit_diff']:.3g} (atol {c['atol']:g}); "
                     f"onnxruntime-genai Generator: {genai[c['genai_tokens_identical']]}")
        if not c["passed"]:
            lines.append(f"why       {c['detail']}")
        ref = c["reference"]
        lines.append(f"reference unpartitioned: TTFT {_ms(ref['ttft_s'])}, TPOT p50 "
                     f"{_ms(ref['tpot_p50_s'])}, {_rate(ref['tokens_per_s'])} tokens/s")
    return "\n".join(lines)
