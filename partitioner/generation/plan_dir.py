"""Generation plan directories: one plan per phase of the same decoder, and what ties them.

Layout (docs/plan-format.md, "Generation plans")::

    PLAN_DIR/generation.json   format, layout summary, workload, predicted, placement
    PLAN_DIR/prefill/          an ordinary plan directory (plan.json + partitions/)
    PLAN_DIR/decode/           an ordinary plan directory of the same model.onnx
    PLAN_DIR/tokenizer.json    copied from the model folder when it has one

Each phase directory is written by ``partitioner.plan.io.write_plan`` and loads with
``load_plan`` on its own; ``generation.json`` is written last, so a directory without it is
not a generation plan. ``generation.json`` keeps the layout summary (names, sizes, EOS), so
the plan runs without the model folder; ``layout.model`` records where the unpartitioned
model was (``hetpart generate --check`` runs it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partitioner.errors import PlanError
from partitioner.generation.layout import DecoderLayout, LayoutError
from partitioner.jsonfile import read_json_object
from partitioner.plan.io import PLAN_FILE, load_plan
from partitioner.plan.types import Plan

if TYPE_CHECKING:
    from partitioner.compiler import Compilation

GENERATION_FILE = "generation.json"
GENERATION_FORMAT = "1"
PHASES = ("prefill", "decode")
TOKENIZER_FILE = "tokenizer.json"
#: Keys of ``predicted`` that ``hetpart generate`` compares with its measurements.
PREDICTED_KEYS = ("ttft_s", "tpot_s", "tokens_per_s")
WORKLOAD_KEYS = ("prompt", "new", "batch", "context")


@dataclass(frozen=True)
class GenerationPlan:
    """A loaded generation plan directory.

    Attributes:
        root: The directory.
        layout: The decoder layout (from ``generation.json``; ``layout.model_path`` is the
            unpartitioned model as recorded, which may no longer exist).
        prefill, decode: The phase plans; their partitions live under ``phase_dir(phase)``.
        workload: ``prompt``, ``new``, ``batch``, ``context`` (tokens / sequences) or {}.
        predicted: ``ttft_s``, ``tpot_s``, ``tokens_per_s`` and whatever the planner adds.
        placement: The planner's free-form explanation (devices per layer group and phase,
            bound, gap, baselines).
        tokenizer_path: ``tokenizer.json`` in the plan directory, or None.
    """

    root: Path
    layout: DecoderLayout
    prefill: Plan
    decode: Plan
    workload: dict[str, Any] = field(default_factory=dict)
    predicted: dict[str, Any] = field(default_factory=dict)
    placement: dict[str, Any] = field(default_factory=dict)
    tokenizer_path: Path | None = None
    format_version: str = GENERATION_FORMAT

    def phase_dir(self, phase: str) -> Path:
        return self.root / phase

    def phase_plan(self, phase: str) -> Plan:
        return self.prefill if phase == "prefill" else self.decode


def is_generation_plan(path: str | Path) -> bool:
    return (Path(path) / GENERATION_FILE).is_file()


def _plain(value: Any, what: str) -> dict[str, Any]:
    """A mapping or dataclass as a JSON-ready dict (the planner may pass its own types)."""
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise PlanError(f"generation plan: {what} must be a mapping or dataclass, got "
                        f"{type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise PlanError(f"generation plan: {what} is not JSON-serialisable: {exc}") from None


def _check_target(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise PlanError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not (root / GENERATION_FILE).is_file():
            raise PlanError(f"{root} is a non-empty directory that is not a generation plan; "
                            f"refusing to write into it")
        if not overwrite:
            raise PlanError(f"{root} already holds a generation plan; pass --force to replace it")


def write_generation_plan(
    out_dir: str | Path,
    layout: DecoderLayout,
    prefill_plan: Plan | Compilation,
    decode_plan: Plan | Compilation,
    workload: Mapping[str, Any] | Any | None = None,
    predicted: Mapping[str, Any] | Any | None = None,
    placement: Mapping[str, Any] | Any | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a generation plan directory; returns the path of ``generation.json``.

    Args:
        out_dir: Target directory (created; an existing generation plan is replaced only
            with ``overwrite``; any other non-empty directory is refused).
        layout: The decoder layout both plans were compiled from (``layout.model_path``).
        prefill_plan, decode_plan: Plans of ``layout.model_path`` (``Plan``, or the
            ``Compilation`` from ``compile_model``, which skips re-analysing the model).
        workload: ``prompt``, ``new``, ``batch``, ``context`` (mapping or dataclass).
        predicted: ``ttft_s``, ``tpot_s``, ``tokens_per_s`` (any subset) and extra keys.
        placement: Free-form JSON-ready explanation of the placement.
        overwrite: Replace an existing generation plan in ``out_dir``.

    Raises:
        PlanError: a refused target, a plan of another model, a value that is not JSON.
    """
    from partitioner.compiler import Compilation
    from partitioner.generation.phase_plans import symbolic_source, with_symbolic_inputs
    from partitioner.graph.analysis import analyse
    from partitioner.plan.io import write_plan

    root = Path(out_dir)
    _check_target(root, overwrite)
    sections = {"workload": _plain(workload, "workload"),
                "predicted": _plain(predicted, "predicted"),
                "placement": _plain(placement, "placement")}
    root.mkdir(parents=True, exist_ok=True)
    (root / GENERATION_FILE).unlink(missing_ok=True)  # the plan is whole again only at the end
    # Partitions are cut from the original graph: they keep its symbolic dimensions.
    source = symbolic_source(layout.model_path)
    for phase, given in zip(PHASES, (prefill_plan, decode_plan), strict=True):
        if isinstance(given, Compilation):
            plan, analysed = given.plan, given.analysed
        else:
            plan = given
            analysed = analyse(str(layout.model_path),
                               {t.name: t.shape for t in plan.model.inputs})
        if analysed.facts.model_sha256 != plan.model.sha256:
            raise PlanError(f"{phase} plan is of another model than {layout.model_path} "
                            f"(sha256 {plan.model.sha256[:12]}...)")
        write_plan(with_symbolic_inputs(plan, source), analysed, root / phase, overwrite=True,
                   source=source)
    tokenizer = None
    if layout.tokenizer_path is not None and layout.tokenizer_path.is_file():
        shutil.copyfile(layout.tokenizer_path, root / TOKENIZER_FILE)
        tokenizer = TOKENIZER_FILE
    elif (root / TOKENIZER_FILE).exists():
        (root / TOKENIZER_FILE).unlink()
    document = {
        "format_version": GENERATION_FORMAT,
        "layout": layout.summary(),
        "phases": {phase: f"{phase}/{PLAN_FILE}" for phase in PHASES},
        "tokenizer": tokenizer,
        **sections,
    }
    staging = root / f".{GENERATION_FILE}.tmp"
    staging.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(staging, root / GENERATION_FILE)
    return root / GENERATION_FILE


def load_generation_plan(plan_dir: str | Path) -> GenerationPlan:
    """Load ``PLAN_DIR/generation.json`` and both phase plans.

    Raises:
        PlanError: not a generation plan, an unreadable or unknown-format file, a missing
            field, or a phase plan that fails ``load_plan``'s checks.
    """
    root = Path(plan_dir)
    path = root / GENERATION_FILE
    if not path.is_file():
        raise PlanError(f"{root} is not a generation plan: {GENERATION_FILE} is missing")
    data = read_json_object(path, PlanError)
    version = data.get("format_version")
    if version != GENERATION_FORMAT:
        raise PlanError(f"{path}: format_version {version!r} is not supported (this hetpart "
                        f"reads {GENERATION_FORMAT!r})")
    if data.get("runnable") is False:
        note = data.get("note") or "no model to run"
        raise PlanError(f"{root} is a plan-only generation plan ({note}): it can be reported, "
                        "not run")
    if not isinstance(data.get("layout"), dict):
        raise PlanError(f"{path}: missing key 'layout'")
    try:
        layout = DecoderLayout.from_summary(data["layout"], base=root)
    except LayoutError as exc:
        raise PlanError(f"{path}: {exc}") from None
    plans = {phase: load_plan(root / phase) for phase in PHASES}
    for phase, plan in plans.items():
        missing = [n for n in (layout.input_ids, *layout.past_names)
                   if n not in {t.name for t in plan.model.inputs}]
        if missing:
            raise PlanError(f"{root / phase}: its model has no input {missing[0]!r} of the "
                            f"layout in {GENERATION_FILE}: not a plan of the same decoder")
    sections = {}
    for key in ("workload", "predicted", "placement"):
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise PlanError(f"{path}: {key} must be an object, got {type(value).__name__}")
        sections[key] = value
    if plans["prefill"].model.sha256 != plans["decode"].model.sha256:
        raise PlanError(f"{root}: prefill and decode plans are of different models (sha256 "
                        f"{plans['prefill'].model.sha256[:12]}... and "
                        f"{plans['decode'].model.sha256[:12]}...)")
    tokenizer = root / TOKENIZER_FILE if data.get("tokenizer") else None
    return GenerationPlan(root=root, layout=layout, prefill=plans["prefill"],
                          decode=plans["decode"], tokenizer_path=tokenizer,
                          format_version=GENERATION_FORMAT, **sections)
