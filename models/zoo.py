"""The model zoo: the registry of named model families, parameter validation, build and copy-out."""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import onnx

from models.cache import CACHE_ENV, cache_dir, cache_key, clean_cache
from partitioner.errors import ModelError

__all__ = [
    "CACHE_ENV",
    "Param",
    "ZooEntry",
    "build",
    "cache_dir",
    "cache_key",
    "clean_cache",
    "get_entry",
    "list_models",
    "resolve_params",
]

logger = logging.getLogger(__name__)

#: Where the zoo extra comes from.
ZOO_EXTRA_HINT = "pip install 'hetpart[zoo]'"

ParamValue = int | str


@dataclass(frozen=True)
class Param:
    """One parameter of a zoo model: an integer with a lower bound, or a string with choices."""

    name: str
    default: ParamValue
    help: str
    minimum: int = 1
    choices: tuple[str, ...] = ()

    def parse(self, model: str, raw: ParamValue) -> ParamValue:
        """Convert ``raw`` (a CLI string or a value) to this parameter's type, or raise."""
        if self.choices:
            if str(raw) not in self.choices:
                raise ModelError(
                    f"zoo model {model!r}: param {self.name!r} must be one of "
                    f"{', '.join(self.choices)}, got {raw!r}"
                )
            return str(raw)
        value: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
            value = int(raw)
        if value is None:
            raise ModelError(
                f"zoo model {model!r}: param {self.name!r} must be an integer, got {raw!r}"
            )
        if value < self.minimum:
            raise ModelError(
                f"zoo model {model!r}: param {self.name!r} must be >= {self.minimum}, got {value}"
            )
        return value


def _heads_divide_width(params: Mapping[str, ParamValue]) -> str | None:
    d, h = int(params["d_model"]), int(params["heads"])
    return None if d % h == 0 else f"d_model={d} must be divisible by heads={h}"


@dataclass(frozen=True)
class ZooEntry:
    """A named zoo model: what it is, its parameters with defaults, and where its builder lives.

    ``builder`` is a module under ``models``: torch families expose ``make_module``,
    ``example_inputs``, ``INPUT_NAMES`` and ``OUTPUT_NAMES``; the others expose
    ``build(params, path, metadata)``; ``folder`` families (a model folder: ``model.onnx``
    with its configs and tokenizer, as decoders with a KV cache ship) expose
    ``build_folder(params, folder)``.
    """

    name: str
    description: str
    builder: str
    params: tuple[Param, ...]
    needs_torch: bool = True
    external_data: bool = False
    folder: bool = False
    check: Callable[[Mapping[str, ParamValue]], str | None] | None = field(default=None)

    @property
    def defaults(self) -> dict[str, ParamValue]:
        """Default value of every parameter, by name."""
        return {p.name: p.default for p in self.params}


def _seed_batch() -> tuple[Param, ...]:
    return (Param("batch", 1, "batch size"), Param("seed", 0, "weight seed", minimum=0))


def _cnn(blocks: int, channels: int, image: int) -> tuple[Param, ...]:
    return (
        Param("blocks", blocks, "number of blocks"),
        Param("channels", channels, "base channels"),
        Param("image", image, "image height and width"),
        Param("classes", 10, "output classes"),
        *_seed_batch(),
    )


def _transformer(
    layers: int, d_model: int, heads: int, seq_len: int, vocab: int
) -> tuple[Param, ...]:
    return (
        Param("layers", layers, "transformer layers"),
        Param("d_model", d_model, "model width"),
        Param("heads", heads, "attention heads (divide d_model)"),
        Param("seq_len", seq_len, "sequence length"),
        Param("vocab", vocab, "vocabulary size"),
        *_seed_batch(),
    )


_ENTRIES = (
    ZooEntry(
        "mlp",
        "stack of Linear+ReLU layers",
        "models.mlp",
        (
            Param("layers", 4, "hidden layers"),
            Param("width", 256, "hidden width"),
            Param("inputs", 64, "input features"),
            Param("classes", 10, "output classes"),
            *_seed_batch(),
        ),
    ),
    ZooEntry("resnet", "residual CNN of basic blocks", "models.resnet", _cnn(4, 16, 32)),
    ZooEntry(
        "inception",
        "CNN whose blocks run 4 parallel branches (1x1, 3x3, 5x5, pool)",
        "models.inception",
        _cnn(2, 16, 56),
    ),
    ZooEntry(
        "gpt",
        "decoder-only transformer, causal attention in plain ops",
        "models.gpt",
        _transformer(2, 128, 4, 64, 1000),
        check=_heads_divide_width,
    ),
    ZooEntry(
        "bert",
        "transformer encoder with pooler",
        "models.bert",
        _transformer(2, 128, 4, 64, 1000),
        check=_heads_divide_width,
    ),
    ZooEntry(
        "hf-gpt2",
        "transformers GPT-2 from a config, random weights (needs transformers)",
        "models.hf_gpt2",
        _transformer(2, 128, 4, 64, 1000),
        check=_heads_divide_width,
    ),
    ZooEntry(
        "hf-bert",
        "transformers BertModel from a config, random weights (needs transformers)",
        "models.hf_bert",
        _transformer(2, 128, 4, 64, 1000),
        check=_heads_divide_width,
    ),
    ZooEntry(
        "llama",
        "transformers Llama (RMSNorm, RoPE, GQA, SwiGLU) with its KV cache, as an Optimum "
        "or onnxruntime-genai folder (needs transformers; genai: onnxruntime-genai)",
        "models.llama",
        (
            Param("size", "llama-tiny", "decoder size (generation.spec.NAMED_SPECS)",
                  choices=("llama-tiny", "llama-small")),
            Param("layout", "optimum", "folder layout", choices=("optimum", "genai")),
            Param("seed", 0, "weight seed", minimum=0),
            *(Param(key, 0, f"{meaning} (0: the size's)", minimum=0) for key, meaning in (
                ("layers", "decoder layers"), ("hidden", "model width"),
                ("heads", "attention heads"), ("kv_heads", "key/value heads (divide heads)"),
                ("intermediate", "SwiGLU width"), ("vocab", "vocabulary size"),
                ("context", "maximum context"))),
        ),
        folder=True,
    ),
    ZooEntry(
        "gpt-large",
        "gpt with >2 GiB of random weights in external data (no torch)",
        "models.gpt_large",
        _transformer(20, 1536, 16, 128, 32000),
        needs_torch=False,
        external_data=True,
        check=_heads_divide_width,
    ),
    ZooEntry(
        "synthetic",
        "chain/layered/random DAG of small ops for solver scale tests (no torch)",
        "models.synthetic",
        (
            Param("n_nodes", 1000, "number of nodes", minimum=2),
            Param("shape", "chain", "graph shape", choices=("chain", "layered", "random")),
            Param("seed", 0, "structure and weight seed", minimum=0),
            Param("width", 32, "activation width"),
            Param("branches", 8, "parallel width of 'layered'"),
        ),
        needs_torch=False,
    ),
)
_BY_NAME = {entry.name: entry for entry in _ENTRIES}


def list_models() -> list[ZooEntry]:
    """Return every zoo entry, in listing order."""
    return list(_ENTRIES)


def get_entry(name: str) -> ZooEntry:
    """Return the entry called ``name``.

    Raises:
        ModelError: No such model; the message lists the valid names.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ModelError(f"unknown zoo model {name!r} (valid: {', '.join(_BY_NAME)})") from None


def resolve_params(
    entry: ZooEntry, params: Mapping[str, ParamValue] | None = None
) -> dict[str, ParamValue]:
    """Merge ``params`` over the entry's defaults, converting and validating every value.

    Raises:
        ModelError: Unknown keys (all named at once, with the valid ones), a value of the
            wrong type or out of range, or an inconsistent combination.
    """
    given = dict(params or {})
    unknown = sorted(set(given) - set(entry.defaults))
    if unknown:
        raise ModelError(
            f"zoo model {entry.name!r}: unknown param{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} (valid: {', '.join(entry.defaults)})"
        )
    resolved = {p.name: p.parse(entry.name, given.get(p.name, p.default)) for p in entry.params}
    problem = entry.check(resolved) if entry.check else None
    if problem:
        raise ModelError(f"zoo model {entry.name!r}: {problem}")
    return resolved


def _import_builder(entry: ZooEntry) -> ModuleType:
    try:
        return importlib.import_module(entry.builder)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing in ("torch", "onnxscript", "transformers"):
            raise ModelError(
                f"zoo model {entry.name!r} needs {exc.name!r}, which is not installed: "
                f"{ZOO_EXTRA_HINT}"
            ) from None
        raise


def _run_builder(entry: ZooEntry, params: dict[str, ParamValue], path: Path) -> None:
    module = _import_builder(entry)
    metadata = {
        "hetpart.zoo.name": entry.name,
        "hetpart.zoo.params": json.dumps(params, sort_keys=True),
    }
    if entry.folder:
        module.build_folder(params, path)
    elif entry.needs_torch:
        from models.export import export_module

        export_module(
            module.make_module(params),
            module.example_inputs(params),
            path,
            module.INPUT_NAMES,
            module.OUTPUT_NAMES,
            metadata,
        )
    else:
        module.build(params, path, metadata)


def _build_cached(entry: ZooEntry, params: dict[str, ParamValue]) -> Path:
    """Return the cached file for ``params``, building it (atomically) on a miss."""
    root = cache_dir()
    stem = f"{entry.name}-{cache_key(entry.name, params)}"
    target = root / (stem if entry.folder else f"{stem}.onnx")
    if target.exists():
        logger.info("zoo cache hit: %s", target)
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=root))
    except OSError as exc:
        raise ModelError(f"cannot create zoo cache folder {root}: {exc.strerror}") from None
    try:
        started = time.perf_counter()
        _run_builder(entry, params, staging / target.name)
        data = staging / f"{stem}.data"
        if entry.folder:
            pass  # one rename below makes the whole folder appear
        elif data.exists():  # data first: a present .onnx means a complete entry
            os.replace(data, root / data.name)
        os.replace(staging / target.name, target)
        logger.info("built %s in %.1f s: %s", entry.name, time.perf_counter() - started, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _copy_out(source: Path, out: Path, external_data: bool) -> None:
    """Copy a cached model to ``out``; external data goes to ``<out stem>.data`` beside it;
    a model folder becomes the folder ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(source, out)
        return
    if not external_data:
        shutil.copyfile(source, out)
        return
    model = onnx.load(str(source), load_external_data=False)
    location = out.with_suffix(".data").name
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    shutil.copyfile(source.with_suffix(".data"), out.with_suffix(".data"))
    onnx.save_model(model, str(out))


def build(
    name: str,
    params: Mapping[str, ParamValue] | None = None,
    out: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Build zoo model ``name`` (or take it from the cache) and return its path.

    Args:
        name: A name from ``list_models()``.
        params: Overrides of the default parameters; values may be strings (from the CLI).
        out: Where to copy the model; ``None`` returns the cached file itself (do not modify
            it). Models with external data also get ``<out stem>.data`` beside ``out``;
            folder models (``llama``) write the folder ``out``.
        overwrite: Replace an existing ``out`` instead of refusing.

    Returns:
        ``out`` when given, else the path of the cached file.

    Raises:
        ModelError: Unknown model or parameter, invalid value, an existing ``out`` without
            ``overwrite``, the zoo extra missing for a torch model, or an export failure.
    """
    entry = get_entry(name)
    resolved = resolve_params(entry, params)
    if out is not None and entry.external_data and out.suffix != ".onnx":
        raise ModelError(f"{out}: output of {name!r} must end in .onnx (its data goes beside it)")
    if out is not None and entry.folder:
        if out.exists() and not out.is_dir():
            raise ModelError(f"{out} exists and is not a folder; {name!r} writes a model folder")
        if out.is_dir() and any(out.iterdir()):
            if not (out / "model.onnx").is_file():
                raise ModelError(f"{out} is a non-empty folder that is not a model folder; "
                                 f"refusing to replace it")
            if not overwrite:
                raise ModelError(f"{out} already holds a model; pass overwrite=True "
                                 f"(CLI: --force)")
    elif out is not None and out.is_dir():
        raise ModelError(f"{out} is a folder; give the path of the .onnx file to write")
    if out is not None and not overwrite and not entry.folder:
        clashes = [out] + ([out.with_suffix(".data")] if entry.external_data else [])
        existing = [str(p) for p in clashes if p.exists()]
        if existing:
            raise ModelError(
                f"{', '.join(existing)} already exists; pass overwrite=True (CLI: --force)"
            )
    cached = _build_cached(entry, resolved)
    if out is None:
        return cached
    try:
        _copy_out(cached, out, entry.external_data)
    except OSError as exc:
        raise ModelError(f"cannot write {out}: {exc.strerror}") from None
    return out
