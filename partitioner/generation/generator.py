"""Greedy generation over a generation plan: prefill on the prefill plan, decode steps on the
decode plan, the KV cache fed back step to step.

:func:`greedy_generate` is the one generate loop: it builds each step's feeds as the layout
wants them and is given the two step functions, so :class:`Generator` (a plan's partitions
on their runners, through ``runtime.executor.Executor``) and the unpartitioned reference
(``generation.reference``: plain ONNX Runtime) run exactly the same steps.

Feeds, as Hugging Face's generate builds them for a with-past model: prefill gets the prompt
``[B, P]``, an all-ones ``attention_mask [B, P]``, ``position_ids`` ``0..P-1`` and an empty past
``[B, kv_heads, 0, head_size]``; decode step t gets the last token ``[B, 1]``, the mask
``[B, P+t]``, position ``P+t-1`` and the previous step's ``present.N.*`` as
``past_key_values.N.*``. genai graphs take no ``position_ids`` (their GroupQueryAttention
derives positions from the mask). Prompts in one batch have equal length (no padding).

Where the KV cache lives: each ``present.*`` array the decode plan returns is handed back as
the next step's ``past_key_values.*`` by reference, never copied by hetpart. On host runners
(ONNX Runtime CPU, OpenVINO CPU: every device here) the runner's output array *is* the cache
in the device's memory, and ONNX Runtime wraps a NumPy input without a copy. On an
accelerator (``device_resident`` partitions: ONNX Runtime on a GPU provider, or any ONNX
Runtime device with the option ``io_binding = true``) the executors return the ``present.*``
outputs as the OrtValues the runner produced (``Executor(device_outputs=...)``) and the next
step binds them in place (IOBinding): the cache never visits the host; only the logits do.
On Ray (``Generator(plan, ray=...)``, ``generation.ray_phases``) each phase runs on its own
``RayExecutor``, which returns ``present.*`` as ObjectRefs the driver never fetches: the cache
stays in the object store of the node that made it (``ray_phases``).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from partitioner.errors import RunError
from partitioner.generation.layout import DecoderLayout
from partitioner.generation.plan_dir import GenerationPlan, load_generation_plan
from partitioner.plan.types import Plan

if TYPE_CHECKING:
    from partitioner.generation.ray_phases import RayPhases
    from partitioner.runtime.executor import RunResult

#: One model call: feeds by name -> outputs by name (NumPy arrays or runner values).
StepFn = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass
class GenerationResult:
    """What one ``generate`` produced and how long it took.

    Attributes:
        prompt: The prompt ids ``[B, P]``.
        tokens: Generated ids ``[B, n]`` (a sequence that emitted EOS is padded with the
            layout's pad id after it, as Hugging Face does).
        ttft_s: Time to first token: the prefill call and its argmax.
        step_s: Wall time of each decode step (call, argmax, feeds), in order.
        logits: Per generated token, the last position's logits ``[B, vocab]`` (when kept).
        prefill_partition_s: Prefill time per partition index (plan runs only).
        decode_partition_s: Decode time per partition index, summed over the steps.
    """

    prompt: np.ndarray
    tokens: np.ndarray
    ttft_s: float
    step_s: list[float]
    logits: list[np.ndarray] = field(default_factory=list)
    prefill_partition_s: dict[int, float] = field(default_factory=dict)
    decode_partition_s: dict[int, float] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.prompt.shape[0])

    @property
    def sequences(self) -> np.ndarray:
        return np.concatenate([self.prompt, self.tokens], axis=1)

    @property
    def total_s(self) -> float:
        return self.ttft_s + sum(self.step_s)

    def tpot_percentile(self, q: float) -> float | None:
        """Time per output token after the first (decode steps), percentile ``q`` in 0..100."""
        if not self.step_s:
            return None
        return float(np.percentile(np.asarray(self.step_s), q))

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens (all sequences) per second of the whole generate."""
        return self.tokens.size / self.total_s if self.total_s > 0 else float("inf")

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Decode throughput: tokens produced by decode steps per second of decoding."""
        if not self.step_s:
            return None
        return self.batch * len(self.step_s) / sum(self.step_s)

    def summary(self) -> dict[str, Any]:
        """JSON-ready timings (``hetpart generate --json``)."""
        return {
            "batch": self.batch,
            "prompt_tokens": int(self.prompt.shape[1]),
            "new_tokens": int(self.tokens.shape[1]),
            "ttft_s": self.ttft_s,
            "tpot_p50_s": self.tpot_percentile(50),
            "tpot_p90_s": self.tpot_percentile(90),
            "tpot_median_s": statistics.median(self.step_s) if self.step_s else None,
            "tokens_per_s": self.tokens_per_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "total_s": self.total_s,
            "tokens": self.tokens.tolist(),
        }


def prompt_array(ids: Any) -> np.ndarray:
    """``ids`` (a list of ints, a list of equal-length lists, an array) as int64 ``[B, P]``."""
    try:
        array = np.asarray(ids, dtype=np.int64)
    except (TypeError, ValueError):
        raise RunError("prompt ids must be integers, one list per sequence of equal "
                       "length") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0 or array.shape[0] == 0:
        raise RunError(f"prompt ids must be [batch, tokens] with at least one token, got shape "
                       f"{list(array.shape)}")
    return array


def _check_ids(layout: DecoderLayout, prompt: np.ndarray, max_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise RunError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    low, high = int(prompt.min()), int(prompt.max())
    if low < 0 or high >= layout.spec.vocab_size:
        bad = high if high >= layout.spec.vocab_size else low
        raise RunError(f"prompt token id {bad} is outside the vocabulary 0..."
                       f"{layout.spec.vocab_size - 1}")
    layout.check_context(prompt.shape[1] + max_new_tokens, "prompt + new tokens:")


def step_feeds(layout: DecoderLayout, ids: np.ndarray, past_len: int,
               past: Mapping[str, Any]) -> dict[str, Any]:
    """The feeds of one call: ``ids [B, n]`` after ``past_len`` cached tokens."""
    batch, new = ids.shape
    feeds: dict[str, Any] = {layout.input_ids: ids}
    if layout.attention_mask:
        feeds[layout.attention_mask] = np.ones((batch, past_len + new), dtype=np.int64)
    if layout.position_ids:
        feeds[layout.position_ids] = np.broadcast_to(
            np.arange(past_len, past_len + new, dtype=np.int64), (batch, new)).copy()
    feeds.update(past)
    return feeds


def empty_past(layout: DecoderLayout, batch: int) -> dict[str, np.ndarray]:
    dtype = np.dtype(layout.kv_dtype)
    return {name: np.zeros(layout.kv_shape(batch, 0), dtype=dtype) for name in layout.past_names}


def greedy_generate(layout: DecoderLayout, prefill: StepFn, decode: StepFn, ids: Any,
                    max_new_tokens: int, *, stop_at_eos: bool = True, keep_logits: bool = False
                    ) -> GenerationResult:
    """The generate loop (see the module docstring); ``prefill`` and ``decode`` run a call."""
    prompt = prompt_array(ids)
    _check_ids(layout, prompt, max_new_tokens)
    batch, length = prompt.shape
    eos = np.asarray(layout.eos_token_ids or (-1,), dtype=np.int64)
    pad = np.int64(layout.pad_token_id)
    clock = time.perf_counter
    tokens: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    step_s: list[float] = []
    done = np.zeros(batch, dtype=bool)

    def advance(outputs: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        logits = np.asarray(outputs[layout.logits])[:, -1, :]
        if keep_logits:
            kept.append(np.array(logits, copy=True))
        token = np.argmax(logits, axis=-1).astype(np.int64)
        token = np.where(done, pad, token)
        past = {p: outputs[o] for o, p in layout.present_to_past.items()}
        return token, past

    start = clock()
    token, past = advance(prefill(step_feeds(layout, prompt, 0, empty_past(layout, batch))))
    ttft = clock() - start
    tokens.append(token)
    if stop_at_eos:
        done |= np.isin(token, eos)
    for step in range(1, max_new_tokens):
        if stop_at_eos and done.all():
            break
        t0 = clock()
        outputs = decode(step_feeds(layout, token[:, None], length + step - 1, past))
        token, past = advance(outputs)
        step_s.append(clock() - t0)
        tokens.append(token)
        if stop_at_eos:
            done |= np.isin(token, eos)
    return GenerationResult(prompt=prompt, tokens=np.stack(tokens, axis=1), ttft_s=ttft,
                            step_s=step_s, logits=kept)


def openvino_gqa_hint(layout: DecoderLayout, batch: int, exc: BaseException) -> str:
    """Why OpenVINO failed a genai decoder's step at batch > 1 (empty when that is not it)."""
    if layout.kind == "genai" and batch > 1 and "openvino failed" in str(exc):
        return ("OpenVINO runs com.microsoft GroupQueryAttention only at batch 1 "
                "(docs/pitfalls.md)")
    return ""


def free_dims(plan: Plan) -> Plan:
    """``plan`` with every input dimension left free: a phase plan is compiled at one prompt
    and past length, but its partitions keep the model's symbolic dimensions and run at any
    (the executor then checks only dtypes and ranks, the runtimes the rest)."""
    inputs = tuple(dataclasses.replace(t, shape=tuple(None for _ in t.shape))  # type: ignore[misc]
                   for t in plan.model.inputs)
    return dataclasses.replace(plan, model=dataclasses.replace(plan.model, inputs=inputs))


class PhaseExecutor(Protocol):
    """What :class:`Generator` needs of a phase's executor: the in-process ``Executor`` and
    ``distributed.executor.RayExecutor`` both are one."""

    def run(self, feeds: Mapping[str, Any]) -> RunResult: ...

    def close(self) -> None: ...


class Generator:
    """Greedy generation on a generation plan's runners.

    Args:
        plan: A generation plan directory or a loaded :class:`GenerationPlan`.
        emulate: Map devices absent here onto ONNX Runtime CPU (as ``hetpart run --emulate``).
        ray: None (in process), or ``"local"`` / a Ray address: each phase on a Ray executor,
            its actors on the nodes advertising its devices (``generation.ray_phases``).

    Example:
        >>> gen = partitioner.Generator("plan_dir")                      # doctest: +SKIP
        >>> out = gen.generate([[5, 17, 42]], max_new_tokens=16)          # doctest: +SKIP
        >>> out.tokens, out.ttft_s, out.tpot_percentile(50)               # doctest: +SKIP
    """

    def __init__(self, plan: str | Path | GenerationPlan, *, emulate: bool = False,
                 ray: str | None = None) -> None:
        self.plan = plan if isinstance(plan, GenerationPlan) else load_generation_plan(plan)
        self.layout = self.plan.layout
        #: The Ray connection and executors when ``ray`` is given, else None.
        self.ray: RayPhases | None = None
        self._executors: dict[str, PhaseExecutor] = {}
        #: True when the KV cache leaves its device between steps: never now, in process or
        #: on Ray it stays where its runner put it (see the module docstring).
        self.kv_on_host = False
        if ray is None:
            from partitioner.runtime.executor import Executor

            local: dict[str, Executor] = {}
            try:
                for phase in ("prefill", "decode"):
                    local[phase] = Executor(free_dims(self.plan.phase_plan(phase)),
                                            self.plan.phase_dir(phase), emulate=emulate,
                                            device_outputs=self.layout.present_names)
            except BaseException:
                for executor in local.values():
                    executor.close()
                raise
            self._executors = dict(local)
        else:
            from partitioner.generation.ray_phases import RayPhases

            self.ray = RayPhases(self.plan, ray, emulate=emulate)
            self._executors = dict(self.ray.executors)
        self._partition_s: dict[str, dict[int, float]] = {}

    def _step(self, phase: str) -> StepFn:
        executor = self._executors[phase]
        totals = self._partition_s.setdefault(phase, {})

        def run(feeds: Mapping[str, Any]) -> Mapping[str, Any]:
            result = executor.run(feeds)
            for index, seconds in result.partition_s.items():
                totals[index] = totals.get(index, 0.0) + seconds
            return result.outputs

        return run

    def generate(self, ids: Any, max_new_tokens: int, *, stop_at_eos: bool = True,
                 keep_logits: bool = False) -> GenerationResult:
        """Greedy-generate up to ``max_new_tokens`` after the prompt ``ids`` ([B, P] or [P]).

        Raises:
            RunError: bad ids, a context beyond the model's maximum (``LayoutError``), or a
                partition that failed (naming it and its device).
        """
        self._partition_s = {}
        try:
            result = greedy_generate(self.layout, self._step("prefill"), self._step("decode"),
                                     ids, max_new_tokens, stop_at_eos=stop_at_eos,
                                     keep_logits=keep_logits)
        except RunError as exc:
            hint = openvino_gqa_hint(self.layout, prompt_array(ids).shape[0], exc)
            if hint:
                raise RunError(f"{exc}; {hint}: generate at batch 1 or place the attention "
                               "layers on ONNX Runtime") from exc
            raise
        result.prefill_partition_s = dict(self._partition_s.get("prefill", {}))
        result.decode_partition_s = dict(self._partition_s.get("decode", {}))
        return result

    def devices(self, phase: str) -> list[str]:
        """The devices of ``phase``'s partitions, in partition order."""
        return [p.device for p in self.plan.phase_plan(phase).partitions]

    def close(self) -> None:
        executors, self._executors = self._executors, {}
        if self.ray is not None:
            self.ray.close()
            return
        for executor in executors.values():
            executor.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

