"""The unpartitioned reference for ``hetpart generate --check``: the layout's model in one
plain ONNX Runtime CPU session, through the same generate loop as the plan
(``generator.greedy_generate``), and, for genai folders, onnxruntime-genai's own Generator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from partitioner.errors import RunError
from partitioner.generation.generator import GenerationResult, greedy_generate, prompt_array
from partitioner.generation.layout import DecoderLayout

#: ONNX Runtime input type -> NumPy dtype, for the integer inputs the loop builds as int64.
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class ReferenceSession:
    """``layout``'s whole model in one ONNX Runtime CPU session (all graph optimisations on,
    default threads): the run a user would make without hetpart."""

    def __init__(self, layout: DecoderLayout, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(layout.model_path)
        if not path.is_file():
            raise RunError(f"the unpartitioned model {path} (recorded in the plan) does not "
                           f"exist; --check needs it")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            raise RunError(f"onnxruntime cannot load {path}: {exc}") from exc
        self.layout = layout
        self._casts = {i.name: _INT_TYPES[i.type] for i in self.session.get_inputs()
                       if i.type in _INT_TYPES}
        self._outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        feeds = {k: (v.astype(self._casts[k]) if k in self._casts else v)
                 for k, v in feeds.items()}
        try:
            values = self.session.run(self._outputs, feeds)
        except Exception as exc:
            raise RunError(f"onnxruntime failed on {self.layout.model_path}: {exc}") from exc
        return dict(zip(self._outputs, values, strict=True))

    def generate(self, ids: Any, max_new_tokens: int, *, stop_at_eos: bool = True,
                 keep_logits: bool = False) -> GenerationResult:
        return greedy_generate(self.layout, self.run, self.run, ids, max_new_tokens,
                               stop_at_eos=stop_at_eos, keep_logits=keep_logits)


def genai_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


def genai_generate(folder: Path, ids: Any, max_new_tokens: int) -> np.ndarray:
    """Greedy tokens from onnxruntime-genai's own ``Generator`` on the genai ``folder``:
    ``[B, n]`` new ids (it stops every sequence at EOS or after ``max_new_tokens``)."""
    import onnxruntime_genai as og

    prompt = prompt_array(ids)
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=prompt.shape[1] + max_new_tokens,
                              batch_size=prompt.shape[0])
    generator = og.Generator(model, params)
    generator.append_tokens(prompt.astype(np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    rows = [np.asarray(generator.get_sequence(b))[prompt.shape[1]:]
            for b in range(prompt.shape[0])]
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=np.int64)
    for b, row in enumerate(rows):
        out[b, :len(row)] = row
    return out


@dataclass(frozen=True)
class CheckResult:
    """``--check``: the plan's tokens against the unpartitioned model's (and genai's)."""

    tokens_equal: bool
    max_logit_diff: float
    atol: float
    genai_tokens_equal: bool | None  # None: not a genai folder, or onnxruntime-genai absent
    detail: str

    @property
    def ok(self) -> bool:
        return (self.tokens_equal and self.max_logit_diff <= self.atol
                and self.genai_tokens_equal is not False)


def compare(plan_run: GenerationResult, reference: GenerationResult, atol: float,
            genai_tokens: np.ndarray | None = None) -> CheckResult:
    """Token ids must be identical; logits (both runs kept them) within ``atol``."""
    equal = plan_run.tokens.shape == reference.tokens.shape and bool(
        np.array_equal(plan_run.tokens, reference.tokens))
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(plan_run.logits, reference.logits,
                                                           strict=False)]
    worst = max(diffs, default=0.0)
    notes = []
    if not equal:
        first = _first_difference(plan_run.tokens, reference.tokens)
        notes.append(f"tokens differ from the unpartitioned model at {first}")
    if worst > atol:
        notes.append(f"logits differ by {worst:.3g} > atol {atol:g}")
    genai_equal = None
    if genai_tokens is not None:
        n = min(genai_tokens.shape[1], plan_run.tokens.shape[1])
        genai_equal = bool(np.array_equal(plan_run.tokens[:, :n], genai_tokens[:, :n]))
        if not genai_equal:
            notes.append("tokens differ from onnxruntime-genai's Generator at "
                         + _first_difference(plan_run.tokens[:, :n], genai_tokens[:, :n]))
    return CheckResult(equal, worst, atol, genai_equal, "; ".join(notes) or "identical")


def _first_difference(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"length ({a.shape[1]} against {b.shape[1]} tokens)"
    rows, cols = np.nonzero(a != b)
    return f"sequence {rows[0]}, token {cols[0]} ({a[rows[0], cols[0]]} against " \
           f"{b[rows[0], cols[0]]})"
