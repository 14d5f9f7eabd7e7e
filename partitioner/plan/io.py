"""Writing and loading plan directories: ``plan.json`` (schema-checked) and partition files.

A plan directory holds ``plan.json``, ``partitions/p<index>_<device>.onnx`` (plus
``.onnx.data`` for partitions with large weights) and, after ``hetpart run --save``,
``run.json``. Writing never deletes files it did not write, and builds the new plan in a
sibling staging directory first, so a failure while writing leaves the previous plan as it
was; loading refuses plans that break an invariant, each with a message saying which.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partitioner.errors import PlanError

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel
    from partitioner.plan.types import Plan

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
RUN_FILE = "run.json"
PARTITIONS_DIR = "partitions"
ANNOTATED_FILE = "annotated.onnx"


@functools.cache
def plan_schema() -> dict[str, Any]:
    """The JSON Schema of ``plan.json`` (declared draft 2020-12; uses only keywords that
    draft 7, which fastjsonschema implements, reads the same way)."""
    text = resources.files("partitioner.plan").joinpath("schema/plan.schema.json").read_text()
    return dict(json.loads(text))


def _no_remote_refs(uri: str) -> Any:
    raise PlanError(f"plan schema: remote $ref {uri!r} is not allowed")


@functools.cache
def plan_validator() -> Callable[[Any], Any]:
    """The schema compiled to Python by fastjsonschema, once per process (about 0.1 s).

    The generated function checks a 100k-node plan in well under a second, where the
    interpreted ``jsonschema`` validator took about 30 s.
    """
    import fastjsonschema

    schema = plan_schema()
    return fastjsonschema.compile(
        _inline_refs(schema, schema.get("$defs", {})),  # a copy: compile rewrites $refs
        handlers={"http": _no_remote_refs, "https": _no_remote_refs},
        use_default=False,  # validate only: never fill defaults into the document
    )


def _inline_refs(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """A copy of ``node`` with every ``{"$ref": "#/$defs/NAME"}`` replaced by the definition.

    fastjsonschema makes each ``$ref`` a function called with a freshly formatted name, once
    per node of the plan; inline, the check of a 100k-node plan takes 30% less time.
    """
    if isinstance(node, list):
        return [_inline_refs(v, defs, seen) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
        name = ref[len("#/$defs/") :]
        if name in defs and name not in seen:  # a recursive definition keeps its $ref
            return _inline_refs(defs[name], defs, (*seen, name))
    return {k: _inline_refs(v, defs, seen) for k, v in node.items()}


def validate_plan_document(data: Any, source: str) -> None:
    """Check format version, then the schema; PlanError naming the first violation.

    The message is one line: ``SOURCE: invalid plan at PATH: WHAT`` where PATH is the JSON
    path of the value at fault, keys and list indices joined by ``/`` (``(top level)`` for
    the document itself), e.g. ``partitions/0/predicted_start_s``.
    """
    import fastjsonschema

    if not isinstance(data, dict):
        raise PlanError(f"{source}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != _plan.FORMAT_VERSION:
        raise PlanError(
            f"{source}: unknown plan format version {version!r} (this hetpart reads "
            f"{_plan.FORMAT_VERSION!r})"
        )
    try:
        plan_validator()(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        where, what = _describe_violation(exc, data)
        raise PlanError(f"{source}: invalid plan at {where}: {what}") from None


#: Longest explanation a schema violation prints (enum lists and values can be long).
_MAX_VIOLATION_CHARS = 300


def _describe_violation(exc: Any, data: Any) -> tuple[str, str]:
    """``(path, explanation)`` of a fastjsonschema violation, both on one line."""
    name = exc.name or "data"
    steps = _json_path(data, name[len("data") :]) if name.startswith("data") else None
    if steps is None:  # the name did not match the document; use fastjsonschema's split
        steps = list(exc.path[1:])
    where = "/".join(_step(s) for s in steps) or "(top level)"
    message = str(exc.message)
    what = message[len(name) :].strip() if message.startswith(name) else message
    if exc.rule == "required" and isinstance(exc.value, dict):
        missing = [k for k in exc.rule_definition or () if k not in exc.value]
        if missing:
            what = ", ".join(repr(k) for k in missing) + (
                " is a required property" if len(missing) == 1 else " are required properties"
            )
    elif exc.rule == "additionalProperties" and isinstance(exc.value, dict):
        allowed = set((exc.definition or {}).get("properties", {}))
        extra = sorted(k for k in exc.value if k not in allowed)
        if extra:
            what = f"unknown key(s) {extra}"
    what = " ".join(what.split())
    if len(what) > _MAX_VIOLATION_CHARS:
        what = what[: _MAX_VIOLATION_CHARS - 3] + "..."
    return where, what


def _step(step: str | int) -> str:
    text = str(step)
    return repr(text) if isinstance(step, str) and ("/" in text or not text) else text


def _json_path(value: Any, rest: str) -> list[str | int] | None:
    """The keys and indices that fastjsonschema's ``rest`` of a name (``.key[0].key``) walks
    through ``value``, or None. Keys may hold dots and brackets themselves (ONNX node names
    such as ``/layer.0/MatMul``), so the walk follows the document, backtracking."""
    if not rest:
        return []
    if isinstance(value, list):
        match = re.match(r"\[(\d+)\]", rest)
        if match and int(match.group(1)) < len(value):
            index = int(match.group(1))
            tail = _json_path(value[index], rest[match.end() :])
            if tail is not None:
                return [index, *tail]
        return None
    if isinstance(value, dict) and rest.startswith("."):
        # Longest key first: "a.b" before "a" when both are keys.
        for key in sorted((k for k in value if rest.startswith(k, 1)), key=len, reverse=True):
            tail = _json_path(value[key], rest[1 + len(key) :])
            if tail is not None:
                return [key, *tail]
    return None


def check_plan(plan: Plan, source: str) -> None:
    """Refuse a plan that breaks an invariant (placed twice/never, cycle, unknown device).

    Raises:
        PlanError: naming the nodes, partitions or devices at fault.
    """
    devices = set(plan.cluster.device_ids)
    bad_devices = sorted({p.device for p in plan.partitions} - devices)
    bad_devices += sorted({n.device for n in plan.placement.values()} - devices - set(bad_devices))
    if bad_devices:
        raise PlanError(
            f"{source}: device(s) {bad_devices} not in cluster {plan.cluster.name!r} "
            f"(devices: {sorted(devices)})"
        )
    indices = [p.index for p in plan.partitions]
    if indices != list(range(len(indices))):
        raise PlanError(f"{source}: partition indices must be 0..{len(indices) - 1}, got {indices}")
    counts = Counter(n for p in plan.partitions for n in p.nodes)
    twice = sorted(n for n, c in counts.items() if c > 1)
    if twice:
        raise PlanError(f"{source}: node(s) placed twice: {twice[:10]}")
    never = sorted(set(plan.placement) - set(counts))
    if never:
        raise PlanError(f"{source}: node(s) placed in no partition: {never[:10]}")
    unknown = sorted(set(counts) - set(plan.placement))
    if unknown:
        raise PlanError(f"{source}: partition node(s) missing from placement: {unknown[:10]}")
    for p in plan.partitions:
        wrong = [n for n in p.nodes if plan.placement[n].device != p.device]
        if wrong:
            raise PlanError(
                f"{source}: partition {p.index} runs on {p.device} but placement puts "
                f"{wrong[:5]} elsewhere"
            )
        moved = [n for n in p.nodes if plan.placement[n].partition != p.index]
        if moved:
            raise PlanError(
                f"{source}: partition {p.index} lists {moved[:5]}, which placement puts in "
                f"partition {plan.placement[moved[0]].partition}"
            )
    broken = [
        f"{n} pinned to {d} but placed on {plan.placement[n].device}"
        for n, d in plan.pins.items()
        if n in plan.placement and plan.placement[n].device != d
    ] + [
        f"{n} placed on forbidden {plan.placement[n].device}"
        for n, ds in plan.forbidden.items()
        if n in plan.placement and plan.placement[n].device in ds
    ]
    if broken:
        raise PlanError(f"{source}: placement breaks the user's constraints: {broken[:5]}")
    produced = {p.index: {o.name for o in p.outputs} for p in plan.partitions}
    graph_inputs = {t.name for t in plan.model.inputs}
    deps: dict[int, set[int]] = {}
    for p in plan.partitions:
        deps[p.index] = set()
        for i in p.inputs:
            if i.from_partition is None:
                if i.name not in graph_inputs:
                    raise PlanError(
                        f"{source}: partition {p.index} input {i.name!r} comes from no "
                        "partition and is not a model input"
                    )
                continue
            if i.from_partition not in produced or i.name not in produced[i.from_partition]:
                raise PlanError(
                    f"{source}: partition {p.index} input {i.name!r} claims to come from "
                    f"partition {i.from_partition}, which does not produce it"
                )
            deps[p.index].add(i.from_partition)
    cycle = _find_cycle(deps)
    if cycle:
        raise PlanError(f"{source}: cycle between partitions {' -> '.join(str(c) for c in cycle)}")
    outputs = {o.name for p in plan.partitions for o in p.outputs if o.graph_output}
    lost = sorted({t.name for t in plan.model.outputs} - outputs - graph_inputs)
    if lost:
        raise PlanError(f"{source}: model output(s) {lost} are produced by no partition")


def _find_cycle(deps: dict[int, set[int]]) -> list[int]:
    """A cycle in the partition dependency graph (as a path), or [] when acyclic."""
    state: dict[int, int] = {}
    stack: list[int] = []

    def visit(node: int) -> list[int]:
        state[node] = 1
        stack.append(node)
        for dep in sorted(deps.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(deps):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_model_hash(plan: Plan, model_path: str | Path) -> None:
    """Refuse ``model_path`` when its SHA-256 differs from the plan's model."""
    path = Path(model_path)
    if not path.is_file():
        raise PlanError(f"model {path} (recorded in the plan) does not exist")
    actual = file_sha256(path)
    if actual != plan.model.sha256:
        raise PlanError(
            f"model {path} does not match the plan: sha256 {actual[:12]}... but the plan was "
            f"compiled for {plan.model.sha256[:12]}... ({plan.model.name})"
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a plan is parsed and built.

    The millions of dicts, lists and dataclasses of a large plan hold no cycles, but each
    batch of allocations starts a collection that walks all of them again: at 100k nodes that
    was 15-30% of ``load_plan``'s time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_plan(plan_dir: str | Path, model: str | Path | None = None) -> Plan:
    """Load and verify ``PLAN_DIR/plan.json``.

    Args:
        plan_dir: The plan directory.
        model: When given, the model file must hash to the plan's model SHA-256.

    Raises:
        PlanError: missing directory or plan.json, unparsable JSON, unknown format version,
            schema violation, broken invariant, missing partition file, hash mismatch.
    """
    root = Path(plan_dir)
    if not root.is_dir():
        raise PlanError(f"plan directory {root} does not exist")
    path = root / PLAN_FILE
    if not path.is_file():
        raise PlanError(f"{root} is not a plan directory: {PLAN_FILE} is missing")
    with _gc_paused():
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PlanError(f"{path}: cannot read plan: {exc}") from None
        validate_plan_document(data, str(path))
        plan = _plan_json.plan_from_dict(data)
        del data
    check_plan(plan, str(path))
    missing = [p.file for p in plan.partitions if not (root / p.file).is_file()]
    if missing:
        raise PlanError(f"{root}: missing partition file(s) {missing}")
    if model is not None:
        check_model_hash(plan, model)
    return plan


def _plan_owned(root: Path) -> list[Path]:
    """Files a previous plan wrote in ``root`` (the only ones an overwrite may remove)."""
    names = (PLAN_FILE, RUN_FILE, ANNOTATED_FILE, ANNOTATED_FILE + ".data")
    owned = [root / n for n in names if (root / n).exists()]
    parts = root / PARTITIONS_DIR
    if parts.is_dir():
        owned += sorted(
            f
            for f in parts.iterdir()
            if f.name.startswith("p") and f.name.endswith((".onnx", ".onnx.data"))
        )
    return owned


def check_plan_target(root: Path, overwrite: bool) -> None:
    """Refuse a plan directory that would lose user files; called before compiling too.

    Raises:
        PlanError: ``root`` is a file, a non-empty directory that is not a plan, or a plan
            and ``overwrite`` is False.
    """
    if root.is_symlink() and not root.exists():
        raise PlanError(f"{root} is a broken symbolic link")
    if root.exists() and not root.is_dir():
        raise PlanError(f"{root} exists and is not a directory")
    if not root.exists():
        above = next((p for p in root.absolute().parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise PlanError(f"cannot create {root}: {above} is not a directory")
    if root.is_dir() and any(not _STAGING.match(p.name) for p in root.iterdir()):
        if not (root / PLAN_FILE).is_file():
            raise PlanError(
                f"{root} is a non-empty directory that is not a plan; refusing to write into it"
            )
        if not overwrite:
            raise PlanError(f"{root} already holds a plan; pass --force to replace it")


def write_plan(
    plan: Plan,
    analysed: AnalysedModel,
    plan_dir: str | Path,
    overwrite: bool = False,
    annotate: bool = False,
) -> Path:
    """Write ``plan.json`` and one ONNX file per partition into ``plan_dir``.

    The plan is written to a hidden staging directory next to ``plan_dir`` and moved in
    only when complete, so a failure (a partition that cannot be cut or saved, a full disk)
    leaves an earlier plan there loadable and untouched.

    Args:
        plan: The plan (from ``build_plan``).
        analysed: The analysed model the plan was built from (partitions are cut from it).
        plan_dir: Target directory; created when absent.
        overwrite: Replace an existing plan there (only its plan files are removed).
        annotate: Also write ``annotated.onnx``: the whole (analysed) model with each node's
            device and partition in its ``metadata_props``.

    Returns:
        The path of ``plan.json``.

    Raises:
        PlanError: ``plan_dir`` is a file, a non-empty directory that is not a plan, or a
            plan and ``overwrite`` is False; the plan is invalid; or a file cannot be
            written (named as in ``plan_dir``; an earlier plan there is left as it was).
        OSError: moving the finished plan into place failed (the earlier plan is restored).
    """
    from partitioner.plan.extract import (
        PartitionExtractor,
        annotate_model,
        save_annotated,
        save_partition,
    )

    root = Path(plan_dir)
    check_plan_target(root, overwrite)
    text = _plan_json.plan_json(plan)
    # No schema check of the text: ``plan_json`` writes what the schema describes (tested in
    # tests/test_plan.py), and the check took 46 s of a 100k-node compile.
    check_plan(plan, f"plan for {plan.model.name}")
    staging = _sibling(root, "new")
    try:
        extractor = PartitionExtractor(analysed.model)
        for partition in plan.partitions:
            with _naming(root / partition.file):
                data = save_partition(extractor.extract(partition), staging / partition.file)
            logger.info("wrote %s%s", partition.file, f" (+ {data.name})" if data else "")
        if annotate:
            with _naming(root / ANNOTATED_FILE):
                save_annotated(annotate_model(analysed.model, plan), staging / ANNOTATED_FILE)
        with _naming(root / PLAN_FILE):
            (staging / PLAN_FILE).write_text(text)
        _replace_plan(staging, root, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / PLAN_FILE


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """Report a failed write under the path the user asked for, not the staging copy."""
    try:
        yield
    except OSError as exc:
        raise PlanError(
            f"cannot write {target}: {exc.strerror or exc}; any earlier plan there is unchanged"
        ) from exc


#: Names of the staging directories ``_sibling`` makes (inside a plan only on a mount point).
_STAGING = re.compile(r"^\..*\.hetpart-(new|old)-[0-9a-f]{8}$")


def _sibling(root: Path, kind: str) -> Path:
    """A new, empty hidden directory on ``root``'s file system (so renames are atomic): next
    to ``root``, or inside it when ``root`` is a mount point."""
    real = root.resolve()
    real.parent.mkdir(parents=True, exist_ok=True)
    base = real.parent
    if real.is_dir() and real.stat().st_dev != base.stat().st_dev:
        base = real
    while True:
        path = base / f".{real.name or 'plan'}.hetpart-{kind}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def _replace_plan(staging: Path, root: Path, overwrite: bool) -> None:
    """Move the complete plan in ``staging`` to ``root``, replacing the files an earlier plan
    owned there; on any failure the earlier plan's files are put back.

    Raises:
        PlanError: ``root`` changed since it was checked and may no longer be written.
        OSError: a rename failed (the earlier plan is restored first).
    """
    check_plan_target(root, overwrite)  # compiling takes minutes; look again
    if not root.exists():
        try:
            staging.rename(root)  # atomic: root appears complete or not at all
            return
        except OSError:
            if not root.exists():
                raise
            check_plan_target(root, overwrite)  # appeared meanwhile; merge as below
    new = sorted(
        (f.relative_to(staging) for f in staging.rglob("*") if f.is_file()),
        key=lambda rel: rel == Path(PLAN_FILE),  # plan.json last: it makes the plan whole
    )
    backup = _sibling(root, "old")
    moved_out: list[tuple[Path, Path]] = []
    moved_in: list[Path] = []
    made_dirs: list[Path] = []
    try:
        for old in _plan_owned(root):
            kept = backup / old.relative_to(root)
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.rename(old, kept)
            moved_out.append((old, kept))
        for rel in new:
            target = root / rel
            if not target.parent.is_dir():
                target.parent.mkdir(parents=True)
                made_dirs.append(target.parent)
            os.rename(staging / rel, target)
            moved_in.append(target)
    except BaseException:
        try:
            for target in moved_in:
                target.unlink(missing_ok=True)
            for directory in reversed(made_dirs):
                if not any(directory.iterdir()):
                    directory.rmdir()
            for old, kept in reversed(moved_out):
                os.rename(kept, old)
        except OSError:
            logger.error(
                "could not restore the previous plan in %s; its files are in %s", root, backup
            )
            raise
        shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)


# Last, and modules rather than names: ``partitioner.plan.types`` imports load_plan/write_plan from
# here at its end, so whichever of plan, plan_json and plan_io is imported first, the others
# must find what they use already defined.
import partitioner.plan.codec as _plan_json  # noqa: E402
import partitioner.plan.types as _plan  # noqa: E402
