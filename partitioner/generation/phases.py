"""Phase analysis: FLOPs and bytes of prefill and of one decode step, per layer group.

Both phases use the same weights. Prefill runs ``prompt`` tokens per sequence through every
layer (compute-bound); a decode step runs one token per sequence attending to ``past`` cached
tokens (memory-bound: every weight and every cached key and value is read once per step).

Layers are grouped into contiguous :class:`LayerGroup`s, the unit of placement; the first group
carries the embedding, the last the final norm and LM head. The embedding is a gather: a phase
reads the rows of the tokens it embeds (``tokens x hidden``), not the table, though the device
that serves the group holds the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass

from partitioner.generation.spec import DecoderSpec


@dataclass(frozen=True)
class LayerGroup:
    """Decoder layers ``first .. first + count - 1``, with the embedding and/or the head."""

    index: int
    first: int
    count: int
    embedding: bool
    head: bool

    @property
    def label(self) -> str:
        last = self.first + self.count - 1
        layers = f"layer {self.first}" if self.count == 1 else f"layers {self.first}-{last}"
        extras = [name for name, has in (("embedding", self.embedding), ("head", self.head))
                  if has]
        return layers + (f" + {' + '.join(extras)}" if extras else "")


def group_layers(num_layers: int, groups: int) -> list[LayerGroup]:
    """``groups`` contiguous groups of (as near as possible) equal size, in layer order."""
    groups = max(1, min(groups, num_layers))
    base, extra = divmod(num_layers, groups)
    out, first = [], 0
    for i in range(groups):
        count = base + (1 if i < extra else 0)
        out.append(LayerGroup(i, first, count, embedding=i == 0, head=i == groups - 1))
        first += count
    return out


@dataclass(frozen=True)
class GroupWork:
    """What one layer group does in each phase, for ``batch`` sequences.

    Decode quantities are linear in the number of cached tokens: ``x(past) = x0 + x1 * past``.

    Attributes:
        weight_bytes: Bytes a device serving the group holds (layers, embedding table, head).
        kv_bytes_per_token: KV cache bytes per token per sequence for the group's layers.
        prefill_flops / prefill_bytes: The prompt through the group (bytes: weights read,
            embedding rows gathered, KV written, activations in and out).
        decode_flops0 / decode_flops1: One decode step's FLOPs at ``past = 0`` and per
            cached token.
        decode_weight_bytes: Weights read by one decode step (embedding: one row per sequence).
        decode_kv_bytes1: KV bytes read per cached token (all sequences).
        decode_other_bytes: Activations and the new token's KV written, per step.
    """

    group: LayerGroup
    batch: int
    weight_bytes: float
    kv_bytes_per_token: float
    prefill_flops: float
    prefill_bytes: float
    decode_flops0: float
    decode_flops1: float
    decode_weight_bytes: float
    decode_kv_bytes1: float
    decode_other_bytes: float

    def decode_flops(self, past: float) -> float:
        return self.decode_flops0 + self.decode_flops1 * past

    def decode_bytes(self, past: float) -> float:
        return self.decode_weight_bytes + self.decode_other_bytes + self.decode_kv_bytes1 * past


def group_work(spec: DecoderSpec, group: LayerGroup, prompt: int, batch: int) -> GroupWork:
    """Per-phase FLOPs and bytes of ``group`` for ``batch`` sequences of ``prompt`` tokens."""
    h, wb, ab = spec.hidden_size, spec.weight_bytes_per_param, spec.kv_bytes_per_element
    kv_token = group.count * spec.kv_bytes_per_token_per_layer()
    layer_weights = group.count * spec.layer_weight_bytes()
    # Causal attention of `new` tokens over `past` ones: layer_flops is linear in past.
    layer0 = spec.layer_flops(1, 0)
    layer1 = spec.layer_flops(1, 1) - layer0
    weight_bytes = layer_weights
    prefill_flops = batch * group.count * spec.layer_flops(prompt, 0)
    prefill_read = layer_weights
    decode_flops0 = batch * group.count * layer0
    decode_read = layer_weights
    if group.embedding:
        weight_bytes += spec.embedding_params * wb
        prefill_read += batch * prompt * h * wb  # rows gathered, not the table
        decode_read += batch * h * wb
    if group.head:
        weight_bytes += spec.head_params * wb
        head_matmul = 2 * spec.hidden_size * spec.vocab_size
        # The exported models compute logits for every prompt position.
        prefill_flops += batch * prompt * head_matmul
        decode_flops0 += batch * head_matmul
        head_read = spec.head_params * wb if not spec.tied_embeddings else (
            spec.embedding_params * wb + h * wb)
        prefill_read += head_read
        decode_read += head_read
    # Each layer reads and writes its hidden state once per token.
    activations_per_token = 2 * batch * h * ab * group.count
    return GroupWork(
        group=group,
        batch=batch,
        weight_bytes=weight_bytes,
        kv_bytes_per_token=kv_token,
        prefill_flops=prefill_flops,
        prefill_bytes=prefill_read + prompt * (batch * kv_token + activations_per_token),
        decode_flops0=decode_flops0,
        decode_flops1=batch * group.count * layer1,
        decode_weight_bytes=decode_read,
        decode_kv_bytes1=batch * kv_token,
        decode_other_bytes=batch * kv_token + activations_per_token,
    )


def hidden_state_bytes(spec: DecoderSpec, batch: int, tokens: int) -> float:
    """The hidden state handed from one group to the next: ``batch x tokens x hidden``."""
    return batch * tokens * spec.hidden_size * spec.kv_bytes_per_element
