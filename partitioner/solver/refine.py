"""Local refinement: move single nodes at device boundaries while the evaluator improves.

Nodes with a neighbour on another device are tried on that neighbour's device (on small
problems, every node on every allowed device); a move is kept when the evaluated objective
drops (or stays and the latency drops) and the result stays acceptable (memory, target,
max_partitions). Each try is one full evaluation, and the tries are counted, not timed, so
the result is reproducible; a deadline only stops a machine too slow for the count.

On small problems ``kick_and_refine`` then leaves the greedy optimum: a few nodes moved at
random, the greedy moves again, the result kept when better (iterated local search).
"""

from __future__ import annotations

import random
import time

from partitioner.solver.evaluate import (
    evaluate,
    improves,
    is_acceptable,
    memory_violations,
    objective_value,
)
from partitioner.solver.index import ProblemIndex, index_of
from partitioner.solver.problem import Evaluation, Problem

#: Up to this many nodes every allowed device is tried for every node, not only neighbours'.
SMALL = 300

#: Nodes a kick of ``kick_and_refine`` moves (least, most).
KICK_NODES = (2, 4)

#: Node evaluations a second on a 2-core machine (one evaluation of 36 nodes takes 1.8 ms):
#: turns refinement's time budget into a count of evaluations.
NODE_EVALUATIONS_PER_S = 20_000


def refine(problem: Problem, assignment: dict[str, str], evaluation: Evaluation,
           max_tries: int = 200, deadline: float = float("inf")
           ) -> tuple[dict[str, str], Evaluation, int, int]:
    """Greedy boundary moves until no move improves, ``max_tries`` evaluations are spent or
    the clock reaches ``deadline`` (``time.perf_counter()``; only on a machine too slow for
    the count).

    Returns:
        (assignment, evaluation, number of accepted moves, number of evaluations).
    """
    idx = index_of(problem)
    current = dict(assignment)
    accepted = tries = 0
    small = len(idx.names) <= SMALL
    improved = True
    while improved and time.perf_counter() < deadline and tries < max_tries:
        improved = False
        for i, name in enumerate(idx.names):
            here = current[name]
            if small:
                options = {idx.devices[k] for k in idx.allowed[i]}
            else:
                options = {current[idx.names[t]] for t, _, _ in idx.succs[i]}
                options |= {current[idx.names[s]] for s, _, _ in idx.preds[i]}
            options.discard(here)
            for dev in sorted(options):
                if idx.dev_pos[dev] not in idx.allowed[i]:
                    continue
                if time.perf_counter() >= deadline or tries >= max_tries:
                    return current, evaluation, accepted, tries
                tries += 1
                current[name] = dev
                ev = evaluate(problem, current)
                if improves(problem, ev, evaluation) and is_acceptable(problem, ev):
                    evaluation, here = ev, dev
                    accepted += 1
                    improved = True
                else:
                    current[name] = here
    return current, evaluation, accepted, tries


def kick_and_refine(problem: Problem, assignment: dict[str, str], evaluation: Evaluation,
                    tries: int, seed: int = 0, target: float = 0.0,
                    deadline: float = float("inf")
                    ) -> tuple[dict[str, str], Evaluation, int]:
    """Iterated local search on a small problem, within ``tries`` evaluations.

    The greedy moves stop where no single node pays alone. Two relus of two branches sent to
    the CPU in one call may (inception on smallgpu+cpu: 2476.5 against 2453.7 us), and so
    may a stem with one branch (inception on cpu+npu: 5756.6 against 5704.3 us). So from
    the best so far a kick moves a few nodes (``KICK_NODES``), alternately scattered ones
    to random devices and a connected group to one device; the greedy moves descend from
    there, and the result is kept when it is better and acceptable. The random generator is
    seeded and the budget is a count, so the same input gives the same plan. The search
    stops early once the objective is at most ``target`` (a proven bound), and at
    ``deadline`` (``time.perf_counter()``) on a machine too slow for the count.

    Returns:
        (assignment, evaluation, number of improving kicks).
    """
    idx = index_of(problem)
    rng = random.Random(seed)
    movable = [i for i in range(len(idx.names)) if len(idx.allowed[i]) > 1]
    best, best_ev = dict(assignment), evaluation
    kept = rounds = 0
    while (tries > 0 and movable and objective_value(problem, best_ev) > target
           and time.perf_counter() < deadline):
        kicked = dict(best)
        size = rng.randint(*KICK_NODES)
        if rounds % 2:  # a connected group to one device: a stem and a branch
            device = rng.randrange(len(idx.devices))
            for i in _connected_sample(idx, rng, movable, size):
                if device in idx.allowed[i]:
                    kicked[idx.names[i]] = idx.devices[device]
        else:  # scattered nodes, each anywhere: two relus from two branches in one call
            for i in rng.sample(movable, min(len(movable), size)):
                kicked[idx.names[i]] = idx.devices[rng.choice(idx.allowed[i])]
        rounds += 1
        ev = evaluate(problem, kicked)
        kicked, ev, _, used = refine(problem, kicked, ev, tries - 1, deadline)
        tries -= used + 1
        if improves(problem, ev, best_ev) and is_acceptable(problem, ev):
            best, best_ev = kicked, ev
            kept += 1
    return best, best_ev, kept


def _connected_sample(idx: ProblemIndex, rng: random.Random, movable: list[int],
                      size: int) -> list[int]:
    """Up to ``size`` movable nodes grown from a random one along edges (a branch, a stem)."""
    chosen = [rng.choice(movable)]
    while len(chosen) < size:
        frontier = sorted({j for i in chosen for j, _, _ in idx.preds[i] + idx.succs[i]
                           if j not in chosen and len(idx.allowed[j]) > 1})
        if not frontier:
            break
        chosen.append(rng.choice(frontier))
    return chosen


def repair(problem: Problem, assignment: dict[str, str], evaluation: Evaluation,
           max_tries: int, seed: int = 0, deadline: float = float("inf")
           ) -> tuple[dict[str, str], Evaluation]:
    """Move nodes until the plan is acceptable, or ``max_tries`` evaluations are spent.

    The CP-SAT models approximate the evaluator: memory from above (``safe``: may leave no
    solution) or from below (``weights``: its solutions may overflow), calls per entry, and
    so a tight memory, latency target or partition limit can leave only unacceptable
    candidates although an acceptable plan exists. Each step takes the move that most
    reduces the violation (bytes over capacity, then partitions over the limit, then time
    over the latency target, then the objective); a step with no such move kicks a few
    nodes at random, as ``kick_and_refine`` does. Moves are tried for every node on small
    problems, else for the nodes on an overflowing device and their neighbours (every node
    when no device overflows).

    Returns:
        The assignment and evaluation with the least violation found (acceptable when
        repaired).
    """
    idx = index_of(problem)
    rng = random.Random(seed)

    def key(ev: Evaluation) -> tuple[float, float, float, float]:
        return (*violation(problem, ev), objective_value(problem, ev))

    best, best_ev, best_key = dict(assignment), evaluation, key(evaluation)
    current, current_key = dict(best), best_key
    tries = 0
    while any(best_key[:3]) and tries < max_tries and time.perf_counter() < deadline:
        over = {idx.dev_pos[d] for d in memory_violations(problem, evaluate(problem, current))}
        nodes: list[int] | range = range(len(idx.names))
        if len(idx.names) > SMALL and over:
            on_over = {i for i in nodes if idx.dev_pos[current[idx.names[i]]] in over}
            nodes = sorted(on_over | {j for i in on_over
                                      for j, _, _ in idx.preds[i] + idx.succs[i]})
        step: tuple[tuple[float, float, float, float], str, str, Evaluation] | None = None
        for i in nodes:
            name, here = idx.names[i], current[idx.names[i]]
            for k in idx.allowed[i]:
                if idx.devices[k] == here or tries >= max_tries:
                    continue
                tries += 1
                current[name] = idx.devices[k]
                ev = evaluate(problem, current)
                ranked = key(ev)
                if step is None or ranked < step[0]:
                    step = (ranked, name, idx.devices[k], ev)
                current[name] = here
        if step is not None and step[0] < current_key:
            current_key, (_, name, dev, ev) = step[0], step
            current[name] = dev
            if current_key < best_key:
                best, best_ev, best_key = dict(current), ev, current_key
            continue
        movable = [i for i in range(len(idx.names)) if len(idx.allowed[i]) > 1]
        if not movable:
            break
        current = dict(best)
        for i in rng.sample(movable, min(len(movable), rng.randint(*KICK_NODES))):
            current[idx.names[i]] = idx.devices[rng.choice(idx.allowed[i])]
        tries += 1
        current_key = key(evaluate(problem, current))
    return best, best_ev


def violation(problem: Problem, evaluation: Evaluation) -> tuple[float, float, float]:
    """How far a plan is from acceptable (``is_acceptable``): bytes over memory capacity,
    partitions over the limit, seconds over the latency target (cost); all 0 when it is."""
    over = sum(need - cap for need, cap in memory_violations(problem, evaluation).values())
    limit = problem.max_partitions
    parts = max(0, evaluation.num_partitions - limit) if limit is not None else 0
    target = problem.latency_target_s
    late = (max(0.0, evaluation.latency_s - target * (1 + 1e-9))
            if problem.objective == "cost" and target is not None else 0.0)
    return float(over), float(parts), late


def consolidated(problem: Problem, device: int) -> dict[str, str]:
    """Every node on ``device`` where it may run there, else on the first device in cluster
    order it may use: a plan with few devices and so few partitions, which fits a tight
    ``max_partitions`` when the solver's candidates, cut finer, do not."""
    idx = index_of(problem)
    return {name: idx.devices[device if device in idx.allowed[i] else min(idx.allowed[i])]
            for i, name in enumerate(idx.names)}
