"""Writing and loading plan directories: ``plan.json`` (schema-checked) and partition files.

A plan directory holds ``plan.json``, ``partitions/p<index>_<device>.onnx`` (plus
``.onnx.data`` for partitions with large weights) and, after ``hetpart run --save``,
``run.json``. Writing never deletes files it did not write, and builds the new plan in a
sibling staging directory first, so a failure while writing leaves the previous plan as it
was; loading refuses plans that break an invariant, each with a message saying which.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from partitioner.errors import PlanError
from partitioner.plan.check import check_plan, validate_plan_document
from partitioner.plan.codec import plan_from_dict, plan_json
from partitioner.plan.extract import (
    PartitionExtractor,
    annotate_model,
    save_annotated,
    save_partition,
)
from partitioner.plan.types import Plan

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
RUN_FILE = "run.json"
PARTITIONS_DIR = "partitions"
ANNOTATED_FILE = "annotated.onnx"


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
        plan = plan_from_dict(data)
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
    source: onnx.ModelProto | None = None,
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
        source: Cut the partitions from this graph instead of ``analysed.model``: the
            model as loaded (same node names), before input shapes were applied and shape
            arithmetic folded, so partitions keep its symbolic dimensions (generation plans:
            ``partitioner.generation.plan_dir``).

    Returns:
        The path of ``plan.json``.

    Raises:
        PlanError: ``plan_dir`` is a file, a non-empty directory that is not a plan, or a
            plan and ``overwrite`` is False; the plan is invalid; or a file cannot be
            written (named as in ``plan_dir``; an earlier plan there is left as it was).
        OSError: moving the finished plan into place failed (the earlier plan is restored).
    """
    root = Path(plan_dir)
    check_plan_target(root, overwrite)
    text = plan_json(plan)
    # No schema check of the text: ``plan_json`` writes what the schema describes (tested in
    # tests/test_plan.py), and the check took 46 s of a 100k-node compile.
    check_plan(plan, f"plan for {plan.model.name}")
    staging = _sibling(root, "new")
    try:
        extractor = (PartitionExtractor(analysed.model) if source is None
                     else PartitionExtractor(source, placed=plan.placement))
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
