"""The generation placement problem (plain data, one batch size) and its evaluator.

A placement gives every layer group a prefill device and a decode device. Semantics
(sequential: one batch of sequences at a time, each phase runs its groups in layer order):

* TTFT = the first prefill device's call overhead + every group's prefill time + each hidden-state
  hand-over between consecutive groups on different devices (transfer + the receiving device's
  call overhead) + each group's KV hand-off from its prefill to its decode device.
* TPOT (one decode step) = the same over decode times with one token's hidden state, plus the
  sampled token's trip from the last group's device back to the first's. ``tpot_s`` is the mean
  step over the generation (``past`` from ``prompt`` to ``prompt + new - 1``), ``tpot_worst_s``
  the last, longest step; the TPOT SLO bounds the worst step.
* A request batch takes ``TTFT + (new - 1) x TPOT``; tokens/s is ``batch x new`` over that;
  $/Mtok is the price per hour of every device that holds weights over the tokens per hour.
* Memory: a device holds the weights of every group it serves in either phase, the KV cache
  reserved for ``context`` tokens of every sequence for the groups it decodes, the prompt's KV
  of groups it prefills for another device, and the largest prefill workspace of its groups.

The evaluator is the source of truth: the CP-SAT model (``placement.py``) mirrors it with
coefficients rounded down (so its bound is a relaxation), and every candidate placement,
the solver's and the baselines', is scored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from partitioner.cluster.types import Cluster
from partitioner.generation.costs import DeviceRates
from partitioner.generation.phases import LayerGroup, group_work, hidden_state_bytes
from partitioner.generation.spec import DecoderSpec
from partitioner.generation.workload import Targets, Workload

#: Bytes of one sampled token id per sequence (int64) on its way back to the embedding.
TOKEN_ID_BYTES = 8

Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class GenerationProblem:
    """Everything the placement needs for one batch size, in seconds and bytes.

    Per-group vectors are indexed ``[g]``, per group and device ``[g][d]``, transfers between
    devices ``[a][b]`` (0 on the diagonal; hand-overs include the receiver's call overhead).
    """

    model: str
    batch: int
    workload: Workload
    targets: Targets
    groups: tuple[LayerGroup, ...]
    devices: tuple[str, ...]
    memory: tuple[int, ...]
    price_per_hour: tuple[float, ...]
    overhead_s: tuple[float, ...]
    weight_bytes: tuple[float, ...]
    kv_decode_bytes: tuple[float, ...]
    kv_prefill_bytes: tuple[float, ...]
    workspace_bytes: tuple[float, ...]
    prefill_s: Matrix
    decode_mean_s: Matrix
    decode_worst_s: Matrix
    prefill_cut_s: Matrix
    decode_cut_s: Matrix
    token_cut_s: Matrix
    handoff_s: tuple[Matrix, ...]
    cost_sources: tuple[str, ...] = ()

    @property
    def tokens_per_request(self) -> int:
        return self.batch * self.workload.new


@dataclass(frozen=True)
class GenerationEval:
    """A placement scored by :func:`evaluate` (device indices per group)."""

    prefill: tuple[int, ...]
    decode: tuple[int, ...]
    batch: int
    ttft_s: float
    tpot_s: float
    tpot_worst_s: float
    request_s: float
    tokens_per_s: float
    price_per_hour: float
    cost_per_mtok: float
    memory_bytes: tuple[float, ...]
    over_memory: tuple[int, ...]
    slo_misses: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return not self.over_memory

    @property
    def feasible(self) -> bool:
        return self.fits and not self.slo_misses

    @property
    def colocated(self) -> bool:
        return self.prefill == self.decode

    def value(self, objective: str) -> float:
        """The objective in its own unit (ms are seconds here; tokens/s is maximised)."""
        return {"ttft": self.ttft_s, "tpot": self.tpot_s, "tokens-per-s": self.tokens_per_s,
                "cost-per-mtok": self.cost_per_mtok}[objective]

    def key(self, objective: str) -> float:
        """Smaller is better, comparable across batch sizes (tokens/s: seconds per token)."""
        if objective == "tokens-per-s":
            return 1.0 / self.tokens_per_s
        return self.value(objective)


def _transfer_matrix(cluster: Cluster, devices: Sequence[str], nbytes: float,
                     overhead: Sequence[float], with_overhead: bool = True) -> Matrix:
    return tuple(
        tuple(0.0 if a == b else cluster.transfer_time(a, b, int(nbytes))
              + (overhead[j] if with_overhead else 0.0)
              for j, b in enumerate(devices))
        for a in devices)


def build_problem(spec: DecoderSpec, workload: Workload, targets: Targets, cluster: Cluster,
                  rates: Sequence[DeviceRates], groups: Sequence[LayerGroup],
                  batch: int) -> GenerationProblem:
    """The placement problem of ``spec`` for ``batch`` sequences on ``cluster``'s devices
    (``rates`` in the cluster's device order)."""
    devices = tuple(d.id for d in cluster.devices)
    overhead = tuple(d.call_overhead_s for d in cluster.devices)
    works = [group_work(spec, g, workload.prompt, batch) for g in groups]
    steps = workload.new - 1  # the first token comes from prefill
    last_past = workload.prompt + max(steps, 1) - 1
    ab = spec.kv_bytes_per_element
    # Largest activations of one layer in prefill: hidden states, q/k/v, SwiGLU's two
    # intermediates and one head's attention scores; the head group adds its logits.
    layer_ws = batch * workload.prompt * ab * (
        4 * spec.hidden_size + 2 * spec.intermediate_size + workload.prompt)
    logits = batch * workload.prompt * spec.vocab_size * ab
    return GenerationProblem(
        model=spec.name,
        batch=batch,
        workload=workload,
        targets=targets,
        groups=tuple(groups),
        devices=devices,
        memory=tuple(d.memory_bytes for d in cluster.devices),
        price_per_hour=tuple(d.price_per_hour for d in cluster.devices),
        overhead_s=overhead,
        weight_bytes=tuple(w.weight_bytes for w in works),
        kv_decode_bytes=tuple(batch * workload.context * w.kv_bytes_per_token for w in works),
        kv_prefill_bytes=tuple(batch * workload.prompt * w.kv_bytes_per_token for w in works),
        workspace_bytes=tuple(layer_ws + (logits if g.head else 0.0) for g in groups),
        prefill_s=tuple(tuple(r.prefill_s(w) for r in rates) for w in works),
        decode_mean_s=tuple(tuple(r.decode_mean_s(w, workload.prompt, steps) for r in rates)
                            for w in works),
        decode_worst_s=tuple(tuple(float(r.decode_s(w, last_past)) for r in rates)
                             for w in works),
        prefill_cut_s=_transfer_matrix(cluster, devices,
                                       hidden_state_bytes(spec, batch, workload.prompt),
                                       overhead),
        decode_cut_s=_transfer_matrix(cluster, devices, hidden_state_bytes(spec, batch, 1),
                                      overhead),
        token_cut_s=_transfer_matrix(cluster, devices, batch * TOKEN_ID_BYTES, overhead,
                                     with_overhead=False),
        handoff_s=tuple(_transfer_matrix(cluster, devices,
                                         batch * workload.prompt * w.kv_bytes_per_token,
                                         overhead, with_overhead=False) for w in works),
        cost_sources=tuple(f"{r.device.id}: {r.source}" for r in rates),
    )


def memory_use(problem: GenerationProblem, prefill: Sequence[int],
               decode: Sequence[int]) -> list[float]:
    """Bytes each device holds under the placement (see the module docstring)."""
    used = [0.0] * len(problem.devices)
    workspace = [0.0] * len(problem.devices)
    for g, (p, q) in enumerate(zip(prefill, decode, strict=True)):
        for d in {p, q}:
            used[d] += problem.weight_bytes[g]
        used[q] += problem.kv_decode_bytes[g]
        if p != q:
            used[p] += problem.kv_prefill_bytes[g]
        for d in {p, q}:
            workspace[d] = max(workspace[d], problem.workspace_bytes[g])
    return [u + w for u, w in zip(used, workspace, strict=True)]


def evaluate(problem: GenerationProblem, prefill: Sequence[int],
             decode: Sequence[int]) -> GenerationEval:
    """Score a placement: times, throughput, price, memory per device, SLO misses."""
    G = len(problem.groups)
    p, q = tuple(prefill), tuple(decode)
    ttft = problem.overhead_s[p[0]] + sum(problem.prefill_s[g][p[g]] for g in range(G))
    ttft += sum(problem.prefill_cut_s[p[g]][p[g + 1]] for g in range(G - 1))
    ttft += sum(problem.handoff_s[g][p[g]][q[g]] for g in range(G))

    def step(times: Matrix) -> float:
        total = problem.overhead_s[q[0]] + sum(times[g][q[g]] for g in range(G))
        total += sum(problem.decode_cut_s[q[g]][q[g + 1]] for g in range(G - 1))
        return total + problem.token_cut_s[q[-1]][q[0]]

    tpot, worst = step(problem.decode_mean_s), step(problem.decode_worst_s)
    request = ttft + (problem.workload.new - 1) * tpot
    tokens_per_s = problem.tokens_per_request / request
    used = sorted(set(p) | set(q))
    price = sum(problem.price_per_hour[d] for d in used)
    memory = memory_use(problem, p, q)
    over = tuple(d for d, m in enumerate(memory) if m > problem.memory[d])
    misses = []
    t = problem.targets
    if t.ttft_slo_s is not None and ttft > t.ttft_slo_s:
        misses.append(f"TTFT {ttft * 1e3:.4g} ms > --ttft-slo {t.ttft_slo_s * 1e3:g} ms")
    if t.tpot_slo_s is not None and worst > t.tpot_slo_s:
        misses.append(f"TPOT {worst * 1e3:.4g} ms > --tpot-slo {t.tpot_slo_s * 1e3:g} ms")
    return GenerationEval(
        prefill=p, decode=q, batch=problem.batch, ttft_s=ttft, tpot_s=tpot, tpot_worst_s=worst,
        request_s=request, tokens_per_s=tokens_per_s, price_per_hour=price,
        cost_per_mtok=price / 3600 / tokens_per_s * 1e6, memory_bytes=tuple(memory),
        over_memory=over, slo_misses=tuple(misses))
