"""Measured decode step time across context lengths, for the planner's "KV growth measured
locally": one decode step (one new token over ``past`` cached ones) of the whole decoder on a
real runner, at each context, interleaved, warmed, median with spread. A step is what the
generate loop does per token: build the feeds, run, pick the greedy token.

Method: the model is prepared once on the runner; every context gets its own feeds (random
KV cache of that length, so no runtime can shortcut zeros); each context is run ``warmup``
times first; then ``rounds`` rounds each time a block of ``repeat`` back-to-back steps per
context, contexts in a rotated order per round (``profiling.timing.time_interleaved``: blocks,
not single calls, so each block runs with its own weights and cache warm in the caches,
docs/pitfalls.md; a short settle and one untimed step before each block). The figure per context
is the median of its blocks' mean step times; ``low_s``/``high_s`` are the fastest and slowest
block (the spread on this shared machine).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from partitioner.errors import RunError
from partitioner.generation.generator import step_feeds
from partitioner.generation.layout import DecoderLayout
from partitioner.profiling.timing import time_interleaved

if TYPE_CHECKING:
    from partitioner.cluster.types import DeviceSpec
    from partitioner.protocols import PreparedPartition

DEFAULT_CONTEXTS = (128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class DecodeStepTime:
    """One context's measured decode step (seconds)."""

    context: int
    batch: int
    median_s: float
    low_s: float
    high_s: float
    blocks: int
    calls_per_block: int

    @property
    def spread(self) -> float:
        """(slowest - fastest block) / median."""
        return (self.high_s - self.low_s) / self.median_s if self.median_s else 0.0


def _prepare(layout: DecoderLayout, runner: str | DeviceSpec,
             options: Mapping[str, Any] | None) -> PreparedPartition:
    from partitioner.registry import get_runner

    if isinstance(runner, str):
        name, opts = runner, dict(options or {})
    else:  # a DeviceSpec of a cluster
        name, opts = runner.runner, {**runner.runner_options, **(options or {})}
    backend = get_runner(name)
    reason = backend.absent_reason(opts)
    if reason:
        raise RunError(f"cannot measure decode steps on runner {name!r}: {reason}")
    return backend.prepare(str(layout.model_path),
                           {**opts, "label": f"{layout.model_path.name} decode on {name}"})


def _decode_state(layout: DecoderLayout, context: int, batch: int, seed: int
                  ) -> tuple[np.ndarray, int, dict[str, np.ndarray]]:
    """(new ids, cached tokens, random KV cache) of a decode step at ``context``."""
    layout.check_context(context, "measured context")
    rng = np.random.default_rng(seed)
    past = context - 1
    kv = {name: rng.standard_normal(layout.kv_shape(batch, past)).astype(layout.kv_dtype)
          for name in layout.past_names}
    ids = rng.integers(3, layout.spec.vocab_size, (batch, 1), dtype=np.int64)
    return ids, past, kv


def _step(prepared: PreparedPartition, layout: DecoderLayout,
          state: tuple[np.ndarray, int, dict[str, np.ndarray]]) -> None:
    """One decode step as the generate loop makes it: its feeds built, the call, the greedy
    pick from the last logits (the host work per token counts in the time per token)."""
    outputs = prepared.run(step_feeds(layout, *state))
    np.argmax(np.asarray(outputs[layout.logits])[:, -1, :], axis=-1)


def measure_decode_step(layout: DecoderLayout, runner: str | DeviceSpec = "onnxruntime",
                        contexts: Sequence[int] = DEFAULT_CONTEXTS, batch: int = 1, *,
                        options: Mapping[str, Any] | None = None, warmup: int = 3,
                        repeat: int = 5, rounds: int = 5) -> list[DecodeStepTime]:
    """Time one decode step of ``layout``'s whole model at each context (see the module
    docstring).

    Args:
        layout: The decoder folder.
        runner: A runner name (``onnxruntime``, ``openvino``) with ``options``, or a cluster
            ``DeviceSpec`` (its runner and options; ``options`` override).
        contexts: Total tokens (cache + the new one) per measured step.
        batch: Concurrent sequences.

    Raises:
        RunError: the runner is absent, or a step fails (naming the context).
        LayoutError: a context beyond the model's maximum.
    """
    if not contexts:
        raise RunError("measure_decode_step needs at least one context")
    prepared = _prepare(layout, runner, options)
    states = {c: _decode_state(layout, c, batch, seed=i) for i, c in enumerate(contexts)}

    def step_at(context: int) -> Callable[[], None]:
        def step() -> None:
            try:
                _step(prepared, layout, states[context])
            except Exception as exc:
                raise RunError(f"decode step at context {context} failed: {exc}") from exc
        return step

    timed = time_interleaved({str(c): step_at(c) for c in contexts}, rounds=rounds, warmup=warmup,
                             block_s=0.0, max_block=repeat, min_block=repeat)
    blocks = {c: [statistics.fmean(block) for block in timed[str(c)][1]] for c in contexts}
    return [DecodeStepTime(context=c, batch=batch, median_s=statistics.median(blocks[c]),
                           low_s=min(blocks[c]), high_s=max(blocks[c]), blocks=rounds,
                           calls_per_block=repeat)
            for c in contexts]
