"""Execution benchmark: cost of cutting a model into k partitions, and the ONNX node-test pass rate.

Overhead: a zoo model is cut into k = 1, 2, 4, 8 contiguous chunks of its topological order,
placed alternately on two ONNX Runtime CPU devices (one thread each, like the whole-model
session), and run through the executor; the whole model in one session with the same options
runs interleaved with it in the same process, so the ratio is measured side by side, and so
do the same partitions as bare back-to-back ``InferenceSession.run`` calls, which separates
what ONNX Runtime itself costs per cut from what hetpart adds. Goal: overhead <= 2% + 15 us
per partition boundary.
"""

from __future__ import annotations

import statistics
import sys
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from partitioner.cluster.types import Cluster
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.extract import PartitionExtractor
from partitioner.profiling.timing import time_calls
from partitioner.runtime.executor import Executor
from partitioner.runtime.feeds import random_inputs
from partitioner.testing.onnx_backend import local_pair

OPTIONS = {"threads": 1}


def _pair() -> Cluster:
    return local_pair(("ort-a", "ort-b"), "overhead-pair")


def chunked_assignment(node_names: list[str], k: int) -> dict[str, str]:
    """Split the topological order into ``k`` contiguous chunks on alternating devices."""
    n = len(node_names)
    return {
        name: ("ort-a", "ort-b")[min(k - 1, i * k // n) % 2] for i, name in enumerate(node_names)
    }


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` back-to-back calls of ``fn``."""
    return statistics.median(time_calls(fn, 0, repeat))


def overhead_rows(model_name: str, ks: tuple[int, ...], repeat: int, rounds: int) -> list[dict]:
    """Measure the whole-model session and k-partition plans, interleaved in rounds."""
    from models import zoo
    from partitioner.graph.analysis import analyse
    from partitioner.registry import get_runner

    path = Path(zoo.build(model_name))
    analysed = analyse(str(path))
    feeds = random_inputs([_spec(t) for t in analysed.facts.inputs], seed=0)
    whole = get_runner("onnxruntime").prepare(path, dict(OPTIONS))
    names = [n.name for n in analysed.facts.nodes]
    extractor = PartitionExtractor(analysed.model)
    executors: dict[int, Executor] = {}
    chains: dict[int, Callable[[], Any]] = {}
    for k in ks:
        plan = plan_from_assignment(analysed, _pair(), chunked_assignment(names, k))
        models = {p.index: extractor.extract_proto(p) for p in plan.partitions}
        executors[k] = Executor(plan, models=models)
        chains[k] = _raw_chain([_bare_session(models[i]) for i in sorted(models)], feeds)
    reference = whole.run(feeds)
    for k, ex in executors.items():  # same answers before timing anything
        out = ex.run(feeds).outputs
        for name, value in reference.items():
            np.testing.assert_allclose(
                out[name], value, rtol=1e-3, atol=1e-4, err_msg=f"{model_name} k={k}"
            )
    whole_t: list[float] = []
    split_t: dict[int, list[float]] = {k: [] for k in ks}
    chain_t: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(rounds):
        whole_t.append(median_time(partial(whole.run, feeds), repeat))
        for k, ex in executors.items():
            split_t[k].append(median_time(partial(ex.run, feeds), repeat))
            chain_t[k].append(median_time(chains[k], repeat))
    # Best round of each series: this 2-core machine is shared, and contention only adds time.
    base = min(whole_t)
    rows = []
    for k, ex in executors.items():
        t = min(split_t[k])
        chain = min(chain_t[k])
        parts = len(ex.plan.partitions)
        boundaries = parts - 1
        budget = 0.02 * base + 15e-6 * boundaries
        rows.append(
            {
                "model": model_name,
                "k": k,
                "partitions": parts,
                "whole_s": base,
                "split_s": t,
                "chain_s": chain,
                "executor_per_boundary_s": (t - chain) / max(boundaries, 1),
                "ort_per_boundary_s": (chain - base) / boundaries if boundaries else 0.0,
                "overhead_s": t - base,
                "budget_s": budget,
                "ratio": t / base,
                "per_boundary_s": (t - base) / boundaries if boundaries else 0.0,
                "ok": t - base <= budget,
            }
        )
        ex.close()
    return rows


def _bare_session(model: Any) -> Any:
    """A plain InferenceSession with the devices' options (no hetpart runner around it)."""
    import onnx
    import onnxruntime as ort

    from partitioner.graph.loading import MAX_IR_VERSION

    if model.ir_version > MAX_IR_VERSION:  # as the runner does: cap the IR version in a copy
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.ir_version = MAX_IR_VERSION
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = OPTIONS["threads"]
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _raw_chain(sessions: list[Any], feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """The partitions as bare ``InferenceSession.run`` calls back to back (public API, output
    names given, no executor, no runner wrapper, no copies)."""
    meta = [([i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]) for s in sessions]

    def run() -> dict[str, Any]:
        values: dict[str, Any] = dict(feeds)
        for s, (ins, outs) in zip(sessions, meta, strict=True):
            values.update(zip(outs, s.run(outs, {n: values[n] for n in ins}), strict=True))
        return values

    return run


def _spec(t: Any) -> Any:
    from partitioner.plan.types import TensorSpec

    return TensorSpec(t.name, tuple(t.shape), t.dtype, (0, 2) if "int" in t.dtype else None)


def _overhead_section(quick: bool) -> list[str]:
    ks = (1, 2, 4, 8)
    repeat, rounds = (30, 3) if quick else (100, 7)
    lines = [
        "### Partitioning overhead (ONNX Runtime CPU, 1 thread per session)",
        "",
        "Whole model in one session vs the same model cut into k contiguous chunks on two",
        "alternating ONNX Runtime CPU devices, run by the executor (copies between devices",
        f"included); each entry is the best of {rounds} interleaved rounds, each round the",
        f"median of {repeat} runs (contention on this shared 2-core machine only adds time).",
        "Goal: overhead <= 2% + 15 us per boundary.",
        "",
        "`bare sessions` runs the same partitions as plain `InferenceSession.run` calls back",
        "to back (no hetpart code): `(bare - whole) / boundaries` is what cutting the graph",
        "costs inside ONNX Runtime itself (one more `run` call of ~5-10 us, lost fusions,",
        "layout reorders such as NCHWc at each cut, output allocation per session);",
        "`(split - bare) / boundaries` is what hetpart's runner wrapper and executor add",
        "(negative: the runner calls the session's binding with named outputs and one reused",
        "`RunOptions`, ~1-3 us cheaper per call than the public `run`; also noise).",
        "`per boundary` = `(split - whole) / boundaries`.",
        "",
        "| model | k | partitions | whole (ms) | split (ms) | bare sessions (ms) | ratio "
        "| overhead (us) | per boundary (us) | ORT per boundary (us) "
        "| hetpart per boundary (us) | budget (us) | within goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    all_rows = []
    for model in ("mlp", "resnet"):
        for r in overhead_rows(model, ks, repeat, rounds):
            all_rows.append(r)
            lines.append(
                f"| {r['model']} | {r['k']} | {r['partitions']} | {r['whole_s'] * 1e3:.3f} "
                f"| {r['split_s'] * 1e3:.3f} | {r['chain_s'] * 1e3:.3f} | {r['ratio']:.3f} "
                f"| {r['overhead_s'] * 1e6:.1f} | {r['per_boundary_s'] * 1e6:.1f} "
                f"| {r['ort_per_boundary_s'] * 1e6:.1f} "
                f"| {r['executor_per_boundary_s'] * 1e6:.1f} | {r['budget_s'] * 1e6:.1f} "
                f"| {'yes' if r['ok'] else 'no'} |"
            )
    ok = sum(r["ok"] for r in all_rows)
    bare_over = sum(r["chain_s"] - r["whole_s"] > r["budget_s"] for r in all_rows)
    lines += [
        "",
        f"Goal met in {ok} of {len(all_rows)} rows. In {bare_over} row(s) the bare ONNX Runtime "
        "sessions alone, without any hetpart code, already exceed the budget.",
    ]
    return lines


def _node_test_section(quick: bool) -> list[str]:
    from partitioner.testing.onnx_backend import (
        REPRESENTATIVE_MODULES,
        failure_kinds,
        node_test_pass_rate,
    )

    modules = REPRESENTATIVE_MODULES if quick else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = node_test_pass_rate(modules=modules)
    scope = "a subset of modules (--quick)" if quick else "every node test"
    lines = [
        "### ONNX backend node tests through partitioned execution",
        "",
        f"`partitioner.testing.onnx_backend.PartitionedBackend` on {scope}: each model is placed",
        "alternately on two ONNX Runtime CPU devices (consecutive nodes in different",
        "partitions) and run by the executor. Only tests plain ONNX Runtime passes count.",
        "",
        "| node tests | ONNX Runtime passes | partitioned passes | pass rate "
        "| ran as >= 2 partitions | seconds |",
        "|---|---|---|---|---|---|",
        f"| {result.selected} | {result.ort_passed} | {result.passed} | {result.rate:.1%} "
        f"| {result.multi_partition} | {result.seconds:.0f} |",
    ]
    if result.failures:
        lines += [
            "",
            "Failures by kind: "
            + ", ".join(
                f"{kind} x{count}" for kind, count in failure_kinds(result.failures).items()
            ),
        ]
        lines += ["", "<details><summary>failing tests</summary>", ""]
        lines += [f"- `{name}`: {reason[:160]}" for name, reason in sorted(result.failures.items())]
        lines += ["", "</details>"]
    return lines


def run(quick: bool = False) -> str:
    """The execution benchmark section (Markdown) with numbers measured in this run."""
    command = "python -m partitioner.benchmarks --only execution" + (" --quick" if quick else "")
    lines = ["## Execution", "", f"Command: `{command}`", ""]
    lines += _overhead_section(quick)
    lines += [""]
    lines += _node_test_section(quick)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(run(quick="--quick" in sys.argv))
