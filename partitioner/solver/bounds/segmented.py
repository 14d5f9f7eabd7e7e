"""Segmented latency bound: each segment's relaxation, joined over its cut nodes' devices.

The makespan is the sum of the spans between consecutive cut nodes (``segments``), so
bounds of the spans, each given the devices of the cut nodes around it, add up to a bound:
the cheapest path over those devices (``budget_path``). Each segment is a small problem
CP-SAT closes quickly, where the whole graph is one it may not.

Memory couples the segments. Where one device cannot hold every weight that may go there
(``memory_budget``), each segment is solved once per subset of its heavy nodes (a budget
unit of weights or more) on that device, and the path also counts the units placed so far;
it is found once per footprint level and the least is the bound. Without this every
segment could keep its layers on a small GPU at once: gpt-large on smallgpu+cpu was bounded
at 64.1 ms, 65.3 ms with the budget.

The paths' assignments (each segment's relaxed optimum) are plan candidates; one that
overflows the budget's device is looked for again with that much less capacity.

Identical segments (a transformer's repeated layers) are solved once: solves are cached by a
signature of the segment's costs, sizes, allowed devices and edges.

A stronger model (``relaxation``'s call slots) then bounds the segments of the cheapest path
again, as long as time is left; the path is found again after each round (``_sharpened``).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from partitioner.solver.bounds.budget_path import Option, cheapest_path
from partitioner.solver.bounds.memory_budget import (
    BUDGET_UNITS,
    MAX_LEVELS,
    Level,
    MemoryBudget,
    binding_budget,
    levels,
)
from partitioner.solver.bounds.segments import Segment, segment_problem
from partitioner.solver.evaluate import evaluate, memory_violations
from partitioner.solver.index import ProblemIndex
from partitioner.solver.models.cpsat import ModelResult
from partitioner.solver.problem import Problem

#: Solves a segment problem: ``(problem, has a source, hint, time limit) -> result``; the
#: hint and the solutions list the source's device first when there is one.
SpanSolver = Callable[[Problem, bool, list[int] | None, float], ModelResult]

#: Bounds a segment problem again with a stronger, slower model:
#: ``(problem, has a source, its best result so far, time limit) -> result``.
SpanSharpener = Callable[[Problem, bool, ModelResult, float], ModelResult]

#: Heavy nodes per segment whose placement on the budget's device is enumerated, heaviest
#: first (2**this solves per pair of cut-node devices). The others are left out of the
#: budget, which keeps the bound valid; fewer are tried when the solves would not fit.
MAX_HEAVY = 4

#: Least time limit of one segment solve.
MIN_SOLVE_S = 0.02

#: Times an overflowing path is looked for again with less capacity.
REPAIR_ROUNDS = 3


@dataclass(frozen=True)
class _Choice:
    """One solve of a segment: cut-node devices and which heavy nodes sit on the budget's
    device (``placed``) or not (``kept_off``, with the level's banned nodes)."""

    segment: int
    src: int | None
    dst: int | None
    placed: tuple[int, ...]
    kept_off: tuple[int, ...]
    units: int
    key: tuple


def segmented_bound(problem: Problem, idx: ProblemIndex, parts: list[Segment],
                    solve_span: SpanSolver, budget_s: float, hint: list[int] | None,
                    sharpeners: list[SpanSharpener] | None = None, sharpen_s: float = 0.0,
                    sharpen_until: float | None = None) -> tuple[float, list[list[int]]]:
    """The least path bound over the footprint levels, and the paths' assignments.

    With ``sharpeners``, the time until ``sharpen_until`` (a ``time.perf_counter()`` value;
    without one, ``sharpen_s`` and the time the first solves leave) goes to bounding again,
    with stronger models, the segments on the cheapest path, until that path is sharpened
    throughout or the time is spent (``_sharpened``). The assignments stay the first
    solves', so the plans do not depend on how far sharpening got.

    Returns:
        (bound in seconds, device index per node of each path found).
    """
    budget = binding_budget(problem, idx)
    signatures = [_signature(idx, seg) for seg in parts]
    # The richest enumeration whose solves fit in the time budget: fewer footprint levels
    # first (they cost the least bound), then fewer heavy nodes.
    most, heavy = MAX_LEVELS, MAX_HEAVY
    while True:
        tiers = levels(budget, idx, most) if budget is not None else [Level(frozenset(), 0)]
        choices = [[_choices(idx, j, seg, signatures[j], budget, tier, heavy)
                    for j, seg in enumerate(parts)] for tier in tiers]
        keys = {c.key for per_tier in choices for per_seg in per_tier for c in per_seg}
        if len(keys) * MIN_SOLVE_S <= budget_s or budget is None or (most, heavy) == (1, 0):
            break
        if most > 1:
            most //= 2
        else:
            heavy //= 2
    share = max(MIN_SOLVE_S, budget_s / len(keys))
    spans: dict[tuple, ModelResult] = {}
    subs: dict[tuple, Problem] = {}

    def span(choice: _Choice) -> ModelResult:
        if choice.key not in spans:
            seg = parts[choice.segment]
            sub = subs[choice.key] = _restricted(
                segment_problem(problem, idx, seg, choice.src, choice.dst), idx, choice, budget)
            local: list[int] | None = None
            # Under a budget the incumbent's hint, even where it agrees with a choice, cost
            # gpt-large on smallgpu+cpu two segment proofs (64.9 ms against 65.3 without);
            # with none it is what closes inception's blocks (2.29 ms against 2.10).
            # A hint the sink's pin contradicts still helps: without it gpt-large on
            # cpu+h100 left a segment unsolved (bound 4.51 ms against 4.62).
            if hint is not None and budget is None:
                local = [choice.src] if choice.src is not None else []
                local += [hint[i] for i in seg.nodes]
            spans[choice.key] = solve_span(sub, seg.source is not None, local, share)
        return spans[choice.key]

    bound = float("inf")
    found: list[list[int]] = []
    for tier, per_tier in zip(tiers, choices, strict=True):
        path = _path(idx, parts, per_tier, span, tier.capacity)
        if path is None:
            continue  # no plan has its largest footprint in this level
        bound = min(bound, path.bound_s)
        for _ in range(REPAIR_ROUNDS + 1):
            if path is None or path.assignment is None:
                break
            if path.assignment not in found:
                found.append(path.assignment)
            excess = _excess(problem, idx, path.assignment, budget) if budget is not None else 0
            if not excess:
                break
            path = _path(idx, parts, per_tier, span, path.units - excess)
    if sharpeners and bound < float("inf"):
        # Up to ``sharpen_until`` when given (whatever the stages before it left: the bound
        # then depends on the machine's speed), else its budget, spent in deterministic time.
        left = (sharpen_until - time.perf_counter() if sharpen_until is not None
                else budget_s + sharpen_s - sum(result.used_s for result in spans.values()))
        bound = _sharpened(idx, parts, list(zip(tiers, choices, strict=True)), span, subs,
                           sharpeners, left)
    return (bound if bound < float("inf") else 0.0), found


def _sharpened(idx: ProblemIndex, parts: list[Segment],
               tiers: list[tuple[Level, list[list[_Choice]]]],
               span: Callable[[_Choice], ModelResult], subs: dict[tuple, Problem],
               sharpeners: list[SpanSharpener], left_s: float) -> float:
    """The least path bound once the cheapest paths' segments are sharpened within
    ``left_s`` of wall time, by each sharpener in turn (stronger and slower ones last): the
    path with the least bound is found again after each round, and its segments not yet
    sharpened at this level share the time left (each what the ones before it left). Each
    solve starts from the segment's best result so far (its hint and floor). Each solve
    is charged its ``used_s`` (deterministic time over the model's rate), so the same
    input gets the same bound; it used to be charged its wall time, which made the bound,
    and with it the status and gap, differ between runs with ``clock_stopped`` false."""
    sharp: dict[tuple, ModelResult] = {}

    def value(choice: _Choice) -> ModelResult:
        return sharp.get(choice.key) or span(choice)

    bound = float("inf")
    for sharpen in sharpeners:
        done: set[tuple] = set()
        while True:
            paths = [p for tier, per_tier in tiers
                     if (p := _path(idx, parts, per_tier, value, tier.capacity)) is not None]
            if not paths:
                return float("inf")
            least = min(paths, key=lambda p: p.bound_s)
            bound = least.bound_s
            pending = list({c.key: c for c in least.taken if c.key not in done}.values())
            if left_s < MIN_SOLVE_S:
                return bound
            if not pending:
                break
            for remaining, choice in zip(range(len(pending), 0, -1), pending, strict=True):
                limit = max(MIN_SOLVE_S, left_s / remaining)
                done.add(choice.key)
                result = sharpen(subs[choice.key], parts[choice.segment].source is not None,
                                 value(choice), limit)
                left_s -= result.used_s
                if (result.bound_s or 0.0) > (value(choice).bound_s or 0.0):
                    sharp[choice.key] = result
    return bound


@dataclass(frozen=True)
class _Path:
    """A cheapest path: its bound, the budget units it uses, its assignment (None when
    a segment's solve found no solution) and the solves it takes."""

    bound_s: float
    units: int
    assignment: list[int] | None
    taken: tuple[_Choice, ...]


def _path(idx: ProblemIndex, parts: list[Segment], choices: list[list[_Choice]],
          span: Callable[[_Choice], ModelResult], capacity: int) -> _Path | None:
    """The cheapest path within ``capacity`` units, or None when none fits."""
    stages = []
    kept: list[list[tuple[_Choice, ModelResult]]] = []
    for per_seg in choices:
        feasible = [(c, r) for c in per_seg if (r := span(c)).status != "INFEASIBLE"]
        kept.append(feasible)
        stages.append([Option(c.src, c.dst, c.units, r.bound_s or 0.0) for c, r in feasible])
    result = cheapest_path(stages, max(0, capacity))
    if result is None:
        return None
    total, picks = result
    taken = [options[j] for options, j in zip(kept, picks, strict=True)]
    units = sum(choice.units for choice, _ in taken)
    chosen = tuple(choice for choice, _ in taken)
    if any(not solved.solutions for _, solved in taken):
        return _Path(total, units, None, chosen)
    assignment = [0] * len(idx.names)
    for seg, (_, solved) in zip(parts, taken, strict=True):
        own = solved.solutions[-1][len(solved.solutions[-1]) - len(seg.nodes):]
        for i, k in zip(seg.nodes, own, strict=True):
            assignment[i] = k
    return _Path(total, units, assignment, chosen)


def _excess(problem: Problem, idx: ProblemIndex, dev: list[int], budget: MemoryBudget) -> int:
    """Units by which ``dev`` overflows the budget's device under the evaluator (rounded up)."""
    ev = evaluate(problem, {n: idx.devices[dev[i]] for i, n in enumerate(idx.names)})
    over = memory_violations(problem, ev).get(idx.devices[budget.device])
    if over is None:
        return 0
    need, memory = over
    return -(-(need - memory) * BUDGET_UNITS // memory)


def _choices(idx: ProblemIndex, j: int, seg: Segment, signature: tuple,
             budget: MemoryBudget | None, tier: Level, heavy: int) -> list[_Choice]:
    """The solves segment ``j`` needs in footprint level ``tier``."""
    pairs = [(a, b) for a in _devices(idx, seg.source) for b in _devices(idx, seg.sink)]
    if budget is None:
        return [_Choice(j, a, b, (), (), 0, (signature, a, b, (), ())) for a, b in pairs]
    d, banned = budget.device, tier.banned
    rel = {v: r for r, v in enumerate(seg.nodes)}
    off = tuple(i for i in seg.nodes if i in banned)
    enumerated = sorted((i for i in seg.nodes if budget.weights[i] and i not in banned),
                        key=lambda i: -budget.weights[i])[:heavy]
    out = []
    for a, b in pairs:
        if (a == d and seg.source in banned) or (b == d and seg.sink in banned):
            continue
        # The sink's weights follow its device when it is not enumerated.
        sink_units = 0
        if b == d and seg.sink is not None and seg.sink not in enumerated:
            sink_units = budget.weights[seg.sink]
        for r in range(len(enumerated) + 1):
            for placed in itertools.combinations(enumerated, r):
                if seg.sink in enumerated and (seg.sink in placed) != (b == d):
                    continue
                if any(idx.allowed[i] == [d] for i in enumerated if i not in placed):
                    continue  # a node that runs only there cannot be kept off
                kept_off = tuple(sorted(set(enumerated) - set(placed) | set(off)))
                key = (signature, a, b, tuple(rel[i] for i in placed),
                       tuple(rel[i] for i in kept_off))
                units = sink_units + sum(budget.weights[i] for i in placed)
                out.append(_Choice(j, a, b, placed, kept_off, units, key))
    return out


def _restricted(sub: Problem, idx: ProblemIndex, choice: _Choice,
                budget: MemoryBudget | None) -> Problem:
    """``sub`` with the choice's nodes pinned to, or kept off, the budget's device."""
    if budget is None or not (choice.placed or choice.kept_off):
        return sub
    device = idx.devices[budget.device]
    pins = {**sub.pins, **{idx.names[i]: device for i in choice.placed}}
    forbidden = dict(sub.forbidden)
    for i in choice.kept_off:
        forbidden[idx.names[i]] = (*forbidden.get(idx.names[i], ()), device)
    return dataclasses.replace(sub, pins=pins, forbidden=forbidden)


def _signature(idx: ProblemIndex, seg: Segment) -> tuple:
    """What ``segment_problem`` builds from, up to node names: equal signatures, equal
    problems (tensors are numbered in order of appearance)."""
    inside = {v: r for r, v in enumerate(((seg.source,) if seg.source is not None else ())
                                          + seg.nodes)}
    tensors: dict[str, int] = {}
    rows = []
    for v in seg.nodes:
        inputs = tuple((inside[s], nbytes, tensors.setdefault(key, len(tensors)))
                       for s, nbytes, key in idx.preds[v] if s in inside)
        rows.append((tuple(idx.cost[v]), tuple(idx.workspace[v]), tuple(idx.allowed[v]),
                     idx.weights[v], idx.out_bytes[v], inputs))
    return seg.source is not None, tuple(rows)


def _devices(idx: ProblemIndex, node: int | None) -> list[int | None]:
    """Devices a cut node may take (one placeholder for a missing source or sink)."""
    return list(idx.allowed[node]) if node is not None else [None]
