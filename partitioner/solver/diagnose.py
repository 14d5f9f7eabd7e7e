"""Infeasibility diagnosis: facts that prove no placement exists, as one line per fact.

Checked before solving (cheap, definite; ``find_facts``):

* nodes no device may run, with each device's reason (unsupported op, forbidden, pinned
  elsewhere);
* nodes that fit on no device that may run them (weights, workspace and the activations live
  while they run, ``index.live_while_running``);
* memory needed at least by a set of devices against their capacity: the nodes that may run
  only on those devices carry their weights there, and one of them also its workspace and
  live activations (every device alone, every small set, and all devices together);
* ``max_partitions`` below the number of devices some node can run only on (each needs a
  runner call of its own).

Each bound is a floor of the evaluator's peak memory (``evaluate._peak_memory``), so a fact is a
proof. When no fact is found but the solver and every baseline fail, ``explain_no_plan`` says
which limit every plan tried broke, and for memory what the best plan tried needed on each
device: what that plan needed, labelled as such, not a proven minimum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from partitioner.costing.types import Unsupported
from partitioner.errors import InfeasibleError, SolverError
from partitioner.solver.evaluate import evaluate, memory_violations
from partitioner.solver.index import ProblemIndex, index_of
from partitioner.solver.problem import BaselineResult, Evaluation, Problem

#: Nodes listed individually per kind of fact before summarising the rest.
MAX_LISTED = 10

#: Clusters with at most this many usable devices have every set of devices checked for
#: memory; larger ones only each device alone and all devices together.
MAX_SUBSET_DEVICES = 10


@dataclass(frozen=True)
class Fact:
    """One reason why no placement exists.

    Attributes:
        kind: ``stranded`` (no device may run a node), ``too_big`` (a node fits on no device
            that may run it), ``memory`` (devices short of memory) or ``partitions``.
        text: The line shown to the user, naming the node, device and values at fault.
    """

    kind: str
    text: str


#: How the summary line counts each kind of fact.
_KIND_LABELS = {
    "stranded": "node(s) no device can run",
    "too_big": "node(s) that fit on no device that may run them",
    "memory": "device memory shortfall(s)",
    "partitions": "max_partitions conflict(s)",
}

#: Kinds of fact listed node by node, up to ``MAX_LISTED`` each, the rest summarised.
_LISTED_BY_NODE = ("stranded", "too_big")


def check_feasible(problem: Problem) -> None:
    """Raise InfeasibleError if a cheap check proves the problem infeasible.

    Raises:
        InfeasibleError: First line a summary counting every problem found, then one line
            per fact (nodes beyond ``MAX_LISTED`` of a kind summarised on one line).
    """
    facts = diagnose(problem)
    if facts:
        raise InfeasibleError("\n".join([_summary(facts), *_lines(facts)]))


def find_facts(problem: Problem) -> list[str]:
    """Every definite reason why ``problem`` has no placement (empty when none found), one
    line per fact; nodes beyond ``MAX_LISTED`` of a kind are summarised on one line."""
    return _lines(diagnose(problem))


def diagnose(problem: Problem) -> list[Fact]:
    """Every definite reason why ``problem`` has no placement, none summarised."""
    idx = index_of(problem)
    facts = [Fact("stranded", _stranded(problem, idx, i))
             for i in range(len(idx.names)) if not idx.allowed[i]]
    facts += _too_big(problem, idx)
    facts += _memory(problem, idx)
    facts += _partitions(problem, idx)
    return facts


def _summary(facts: list[Fact]) -> str:
    counts: dict[str, int] = {}
    for f in facts:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    detail = ", ".join(f"{n} {_KIND_LABELS[kind]}" for kind, n in counts.items())
    return f"no placement exists: {len(facts)} problem(s) found ({detail})"


def _lines(facts: list[Fact]) -> list[str]:
    lines = []
    shown: dict[str, int] = {}
    for f in facts:
        shown[f.kind] = shown.get(f.kind, 0) + 1
        if f.kind not in _LISTED_BY_NODE or shown[f.kind] <= MAX_LISTED:
            lines.append(f.text)
    for kind in _LISTED_BY_NODE:
        if shown.get(kind, 0) > MAX_LISTED:
            lines.append(f"... and {shown[kind] - MAX_LISTED} more {_KIND_LABELS[kind]}")
    return lines


def _stranded(problem: Problem, idx: ProblemIndex, i: int) -> str:
    name = idx.names[i]
    pinned = problem.pins.get(name)
    reasons = []
    for dev in idx.devices:
        cost = problem.costs.get(name, dev)
        if isinstance(cost, Unsupported):
            why = cost.reason
            if why.startswith(f"{dev}:"):  # cost models often name the device already
                why = why[len(dev) + 1:].lstrip()
            if pinned == dev:
                why = f"pinned here but unsupported: {why}"
        elif dev in problem.forbidden.get(name, ()):
            why = "forbidden by the user"
        else:
            why = f"node is pinned to {pinned}"
        reasons.append(f"{dev}: {why}")
    op = problem.nodes[i].op_type
    return f"node {name} ({op}) cannot run on any device — " + "; ".join(reasons)


def _footprint(idx: ProblemIndex, i: int, k: int) -> int:
    """Bytes node ``i`` holds on device ``k`` besides weights while it runs: its workspace,
    and the activations live then when it runs for a positive time."""
    return idx.workspace[i][k] + (idx.live[i] if idx.cost[i][k] else 0)


def _too_big(problem: Problem, idx: ProblemIndex) -> list[Fact]:
    facts = []
    caps = [d.memory_bytes for d in problem.cluster.devices]
    for i, allowed in enumerate(idx.allowed):
        needs = [(k, idx.weights[i] + _footprint(idx, i, k)) for k in allowed]
        if needs and all(need > caps[k] for k, need in needs):
            where = "; ".join(f"{idx.devices[k]} needs at least {need} bytes, has {caps[k]}"
                              for k, need in needs)
            facts.append(Fact("too_big", f"node {idx.names[i]} ({problem.nodes[i].op_type}, "
                                         f"{idx.weights[i]} bytes of weights) fits on no "
                                         f"device that may run it — {where}"))
    return facts


@dataclass
class _Group:
    """Nodes sharing one set of allowed devices (a bit mask)."""

    weights: int = 0
    weighted: int = 0  # nodes with weights
    footprint: int = 0  # the largest, over its nodes, of the smallest footprint anywhere
    workspace: int = 0  # the largest workspace on the first allowed device
    live: int = 0  # the largest live activations of a node running a positive time there
    heaviest: int = -1


def _memory(problem: Problem, idx: ProblemIndex) -> list[Fact]:
    """Sets of devices the nodes that may run only on them cannot fit in.

    Every node whose allowed devices lie in a set S sits on some device of S, with its
    weights; the device holding node i also holds i's footprint there. So the devices of S
    hold at least those weights plus, for any one such node, its smallest footprint over its
    allowed devices; for one device, its largest workspace plus the largest live activations
    (each a floor of the evaluator's peak). Only minimal sets are reported.
    """
    caps = [d.memory_bytes for d in problem.cluster.devices]
    groups: dict[int, _Group] = {}
    for i, allowed in enumerate(idx.allowed):
        if not allowed:
            continue
        mask = sum(1 << k for k in allowed)
        g = groups.setdefault(mask, _Group())
        g.weights += idx.weights[i]
        g.weighted += 1 if idx.weights[i] else 0
        g.footprint = max(g.footprint, min(_footprint(idx, i, k) for k in allowed))
        g.workspace = max(g.workspace, idx.workspace[i][allowed[0]])
        g.live = max(g.live, idx.live[i] if idx.cost[i][allowed[0]] else 0)
        if g.heaviest < 0 or idx.weights[i] > idx.weights[g.heaviest]:
            g.heaviest = i
    usable = 0
    for mask in groups:
        usable |= mask
    devs = [k for k in range(len(idx.devices)) if usable >> k & 1]
    if len(devs) <= MAX_SUBSET_DEVICES:
        sets = []
        sub = usable
        while sub:  # every non-empty subset of the usable devices
            sets.append(sub)
            sub = (sub - 1) & usable
        sets.sort(key=lambda m: (bin(m).count("1"), m))
    else:
        sets = [1 << k for k in devs] + [usable]
    facts: list[Fact] = []
    over: list[int] = []
    for s in sets:
        if any(o & ~s == 0 for o in over):
            continue  # a smaller set already shows the shortfall
        inside = [g for m, g in groups.items() if m & ~s == 0]
        if not inside:
            continue
        weights = sum(g.weights for g in inside)
        count = sum(g.weighted for g in inside)
        members = [k for k in range(len(idx.devices)) if s >> k & 1]
        heaviest = max((g.heaviest for g in inside), key=lambda i: idx.weights[i])
        if len(members) == 1:  # one group: the nodes only this device may run
            extra = inside[0].workspace + inside[0].live
        else:
            extra = max(g.footprint for g in inside)
        need, cap = weights + extra, sum(caps[k] for k in members)
        if need <= cap:
            continue
        over.append(s)
        example = f"e.g. {idx.names[heaviest]} with {idx.weights[heaviest]}"
        if len(members) == 1:
            text = (f"device {idx.devices[members[0]]} needs at least {need} bytes ({weights} "
                    f"of weights of {count} node(s) only it may run, {example}, plus {extra} "
                    f"of workspace and live activations) but has {cap}")
        elif s == usable:
            text = (f"the model needs at least {need} bytes on all devices together ({weights} "
                    f"of weights of its {count} node(s), {example}, plus {extra} of one node's "
                    f"workspace and live activations) but the devices that may run it ("
                    f"{', '.join(idx.devices[k] for k in members)}) have {cap} together")
        else:
            names = ", ".join(idx.devices[k] for k in members)
            text = (f"devices {names} need at least {need} bytes together ({weights} of "
                    f"weights of {count} node(s) only they may run, {example}, plus {extra} "
                    f"of one node's workspace and live activations) but have {cap} together")
        facts.append(Fact("memory", text))
    return facts


def _partitions(problem: Problem, idx: ProblemIndex) -> list[Fact]:
    """Every device some node can run only on holds at least one runner call."""
    limit = problem.max_partitions
    if limit is None:
        return []
    forced: dict[int, list[int]] = {}
    for i, allowed in enumerate(idx.allowed):
        if len(allowed) == 1:
            forced.setdefault(allowed[0], []).append(i)
    if len(forced) <= limit:
        return []
    parts = []
    for k in sorted(forced):
        nodes = forced[k]
        i = nodes[0]
        why = "pinned there" if problem.pins.get(idx.names[i]) == idx.devices[k] \
            else "the only device that may run it"
        more = f" and {len(nodes) - 1} more node(s)" if len(nodes) > 1 else ""
        parts.append(f"{idx.devices[k]} must run {idx.names[i]} ({why}){more}")
    return [Fact("partitions", f"max_partitions {limit} is less than the {len(forced)} devices "
                               f"that must each run a partition: " + "; ".join(parts))]


def explain_no_plan(problem: Problem, baselines: dict[str, BaselineResult],
                    fastest_latency_s: float | None,
                    attempts: Iterable[tuple[str, Evaluation]] = ()) -> InfeasibleError:
    """Build the InfeasibleError raised when neither the solver nor a baseline is acceptable.

    Args:
        problem: The problem.
        baselines: Baseline results (their notes say why each is infeasible; their
            assignments are evaluated to find the best plan tried).
        fastest_latency_s: Lowest latency of any placement tried, acceptable or not.
        attempts: Further rejected plans (source name, evaluation), e.g. the solver's.

    Returns:
        The error: a summary line naming the limit every plan tried broke, then one line per
        fact (what the best plan tried needed on each device over capacity, or its latency or
        partitions), then each baseline's note.
    """
    tried = _tried(problem, baselines, attempts)
    fits = [(name, ev) for name, ev in tried if not memory_violations(problem, ev)]
    target = problem.latency_target_s if problem.objective == "cost" else None
    limit = problem.max_partitions
    summary = "no feasible placement found"
    lines = []
    if tried and not fits:
        name, ev = min(tried, key=lambda t: (_overflow(problem, t[1]), t[1].num_partitions))
        summary += ": every plan tried exceeds some device's memory"
        lines += [f"the best plan found ({name}) needs {need} bytes on {dev} (capacity {cap}): "
                  f"what this plan needs, not a proven minimum"
                  for dev, (need, cap) in memory_violations(problem, ev).items()]
    elif fits and target is not None:
        name, ev = min(fits, key=lambda t: t[1].latency_s)
        if ev.latency_s > target * (1 + 1e-9):
            summary += (f": every plan tried that fits in memory misses the latency target "
                        f"{_ms(target)}")
            if fastest_latency_s is None or ev.latency_s > fastest_latency_s * (1 + 1e-9):
                lines.append(f"the fastest plan found that fits in memory ({name}) takes "
                             f"{_ms(ev.latency_s)}")
    elif fits and limit is not None:
        name, ev = min(fits, key=lambda t: t[1].num_partitions)
        if ev.num_partitions > limit:
            summary += (f": every plan tried that fits in memory has more than max_partitions "
                        f"{limit} partition(s)")
            lines.append(f"the plan found with the fewest partitions that fits in memory "
                         f"({name}) uses {ev.num_partitions}")
    if target is not None and fastest_latency_s is not None and fastest_latency_s > target:
        summary = (f"latency target {_ms(target)} cannot be met: the fastest placement found "
                   f"takes {_ms(fastest_latency_s)}")
    lines += [f"{name}: {res.note}" for name, res in baselines.items()
              if res.evaluation is None and res.note]
    return InfeasibleError("\n".join([summary, *lines]))


def _ms(seconds: float) -> str:
    """Seconds as milliseconds, the unit of ``--latency-target``."""
    return f"{seconds * 1e3:.6g} ms"


def _tried(problem: Problem, baselines: dict[str, BaselineResult],
           attempts: Iterable[tuple[str, Evaluation]]) -> list[tuple[str, Evaluation]]:
    """Every plan tried, evaluated: the given attempts, then the baselines' assignments."""
    tried = list(attempts)
    for name, res in baselines.items():
        if name == "best_single":  # a copy of one single:<device>
            continue
        ev = res.evaluation
        if ev is None and res.assignment:
            try:
                ev = evaluate(problem, res.assignment)
            except SolverError:
                continue
        if ev is not None:
            tried.append((name, ev))
    return tried


def _overflow(problem: Problem, ev: Evaluation) -> int:
    """Bytes over capacity, summed over devices."""
    return sum(need - cap for need, cap in memory_violations(problem, ev).values())
