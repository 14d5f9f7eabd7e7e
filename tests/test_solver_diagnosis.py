"""Infeasibility diagnoses on hand-written problems: counts, devices, bytes and capacities."""

from __future__ import annotations

import random

import pytest

from partitioner.costing.types import Supported, Unsupported
from partitioner.errors import InfeasibleError
from partitioner.solver import solve
from partitioner.solver.baselines import run_baselines
from partitioner.solver.diagnose import check_feasible, diagnose, explain_no_plan, find_facts
from partitioner.solver.evaluate import evaluate
from partitioner.solver.models import cpsat
from partitioner.solver.problem import Problem
from partitioner.testing.random_problem import brute_force_optimum, toy_device, toy_problem

MS = 1e-3
TWO = (toy_device("d0"), toy_device("d1"))

Costs = dict[str, dict[str, float | None]]


def _infeasible(problem: Problem, time_limit_s: float = 2) -> str:
    with pytest.raises(InfeasibleError) as info:
        solve(problem, time_limit_s=time_limit_s)
    return str(info.value)


def test_summary_counts_every_node_not_the_listed_lines() -> None:
    costs: Costs = {f"n{i}": {"d0": None, "d1": None} for i in range(17)}
    costs["big"] = {"d0": MS, "d1": None}
    devs = (toy_device("d0", memory_bytes=100), toy_device("d1"))
    text = _infeasible(toy_problem(costs, [], devs, weights={"big": 500}))
    lines = text.splitlines()
    assert lines[0] == ("no placement exists: 19 problem(s) found (17 node(s) no device can "
                        "run, 1 node(s) that fit on no device that may run them, 1 device "
                        "memory shortfall(s))")
    assert sum(x.startswith("node n") for x in lines) == 10
    assert "... and 7 more node(s) no device can run" in lines
    assert len(find_facts(toy_problem(costs, [], devs, weights={"big": 500}))) == 13


def test_device_name_in_the_reason_is_not_repeated() -> None:
    devs = (toy_device("npu"), toy_device("cpu"))
    p = toy_problem({"ln": {"npu": MS, "cpu": MS}}, [], devs, pins={"ln": "npu"})
    p.costs.set("ln", "npu", Unsupported("npu: LayerNormalization is listed in unsupported_ops"))
    text = _infeasible(p)
    assert "npu: npu:" not in text
    assert ("node ln (ln) cannot run on any device — npu: pinned here but unsupported: "
            "LayerNormalization is listed in unsupported_ops; cpu: node is pinned to npu") in text


def test_device_needs_weights_workspace_and_live_activations_of_its_only_nodes() -> None:
    devs = (toy_device("gpu", memory_bytes=1000), toy_device("cpu"))
    costs: Costs = {"a": {"gpu": MS, "cpu": None}, "b": {"gpu": MS, "cpu": None},
             "c": {"gpu": MS, "cpu": MS}}
    p = toy_problem(costs, [("a", "b", 200), ("b", "c", 100)], devs,
                    weights={"a": 300, "b": 400, "c": 5000}, outputs={"a": 200, "b": 100})
    p.costs.set("a", "gpu", Supported(MS, 150))
    # 700 of weights + 150 of workspace (a) + 300 live while b runs (its input and output).
    text = _infeasible(p)
    assert ("device gpu needs at least 1150 bytes (700 of weights of 2 node(s) only it may run, "
            "e.g. b with 400, plus 450 of workspace and live activations) but has 1000") in text
    assert "cpu needs" not in text


def test_a_set_of_devices_short_of_memory_is_named_once() -> None:
    devs = (toy_device("a0", memory_bytes=500), toy_device("a1", memory_bytes=500),
            toy_device("host"))
    costs: Costs = {f"m{i}": {"a0": MS, "a1": MS, "host": None} for i in range(3)}
    costs["x"] = {"a0": MS, "a1": MS, "host": MS}
    p = toy_problem(costs, [], devs, weights={"m0": 400, "m1": 400, "m2": 300})
    facts = diagnose(p)
    assert [f.kind for f in facts] == ["memory"]
    assert facts[0].text == (
        "devices a0, a1 need at least 1100 bytes together (1100 of weights of 3 node(s) only "
        "they may run, e.g. m0 with 400, plus 0 of one node's workspace and live activations) "
        "but have 1000 together")


def test_the_whole_model_against_every_device_together() -> None:
    devs = (toy_device("d0", memory_bytes=600), toy_device("d1", memory_bytes=600))
    costs: Costs = {"a": {"d0": MS, "d1": MS}, "b": {"d0": MS, "d1": MS}, "c": {"d0": MS, "d1": MS}}
    p = toy_problem(costs, [("a", "b", 50)], devs, weights={"a": 400, "b": 400, "c": 360},
                    outputs={"a": 50})
    with pytest.raises(InfeasibleError) as info:
        check_feasible(p)
    assert str(info.value).splitlines() == [
        "no placement exists: 1 problem(s) found (1 device memory shortfall(s))",
        "the model needs at least 1210 bytes on all devices together (1160 of weights of its 3 "
        "node(s), e.g. a with 400, plus 50 of one node's workspace and live activations) but "
        "the devices that may run it (d0, d1) have 1200 together"]


def test_node_that_fits_nowhere_names_each_device_and_capacity() -> None:
    devs = (toy_device("d0", memory_bytes=1000), toy_device("d1", memory_bytes=1200))
    costs: Costs = {"a": {"d0": MS, "d1": MS}, "b": {"d0": MS, "d1": MS}}
    p = toy_problem(costs, [("a", "b", 900)], devs, weights={"a": 400, "b": 400},
                    outputs={"a": 900})
    p.costs.set("b", "d1", Supported(MS, 100))
    text = _infeasible(p)
    assert ("node b (b, 400 bytes of weights) fits on no device that may run it — d0 needs at "
            "least 1300 bytes, has 1000; d1 needs at least 1400 bytes, has 1200") in text
    assert "node a (a, 400 bytes of weights) fits on no device" in text


def _never_solve(*args: object, **kwargs: object) -> None:
    raise AssertionError("CP-SAT ran although the conflict is known before solving")


def test_max_partitions_below_the_forced_devices_fails_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    costs: Costs = {"a": {"d0": MS, "d1": MS}}
    costs.update({f"c{i}": {"d0": MS * (1 + i % 3), "d1": MS * (1 + i % 5)} for i in range(300)})
    costs["b"] = {"d0": None, "d1": MS}
    names = list(costs)
    edges = [(names[i], names[i + 1], 100) for i in range(len(names) - 1)]
    p = toy_problem(costs, edges, TWO, pins={"a": "d0"}, max_partitions=1)
    monkeypatch.setattr(cpsat.cp_model.CpSolver, "solve", _never_solve)
    text = _infeasible(p, time_limit_s=30)
    assert text.splitlines() == [
        "no placement exists: 1 problem(s) found (1 max_partitions conflict(s))",
        "max_partitions 1 is less than the 2 devices that must each run a partition: d0 must "
        "run a (pinned there); d1 must run b (the only device that may run it)"]


def test_max_partitions_check_counts_forced_nodes_per_device() -> None:
    devs = (toy_device("d0"), toy_device("d1"), toy_device("d2"))
    costs: Costs = {"a": {"d0": MS}, "a2": {"d0": MS}, "b": {"d1": MS}, "c": {"d2": MS},
             "free": {"d0": MS, "d1": MS, "d2": MS}}
    assert find_facts(toy_problem(costs, [], devs, max_partitions=3)) == []
    assert find_facts(toy_problem(costs, [], devs)) == []
    assert find_facts(toy_problem(costs, [], devs, max_partitions=2)) == [
        "max_partitions 2 is less than the 3 devices that must each run a partition: d0 must "
        "run a (the only device that may run it) and 1 more node(s); d1 must run b (the only "
        "device that may run it); d2 must run c (the only device that may run it)"]


def test_memory_no_bound_proves_quotes_the_best_plan_found_per_device() -> None:
    # Three graph outputs (600, 300, 300) live to the end: 1500 bytes fit 500 + 1000 in
    # total, but no split does. No floor proves it; the best plan tried is quoted.
    devs = (toy_device("d0", memory_bytes=500), toy_device("d1", memory_bytes=1000))
    costs: Costs = {f"x{i}": {"d0": MS, "d1": 2 * MS} for i in range(3)}
    p = toy_problem(costs, [], devs, weights={"x2": 300},
                    outputs={"x0": 600, "x1": 300, "x2": 300})
    assert find_facts(p) == []
    assert brute_force_optimum(p) == float("inf")
    lines = _infeasible(p).splitlines()
    assert lines[0] == "no feasible placement found: every plan tried exceeds some device's memory"
    best = [x for x in lines if x.startswith("the best plan found")]
    assert len(best) == 1 and " needs " in best[0] and "(capacity " in best[0]
    assert best[0].endswith("what this plan needs, not a proven minimum")
    assert "max_partitions" not in "\n".join(lines)


def test_explain_quotes_the_attempts_it_is_given() -> None:
    devs = (toy_device("d0", memory_bytes=500), toy_device("d1", memory_bytes=1000))
    p = toy_problem({"a": {"d0": MS, "d1": MS}, "b": {"d0": MS, "d1": MS}}, [], devs,
                    weights={"a": 700, "b": 900})
    ev = evaluate(p, {"a": "d0", "b": "d1"})
    text = str(explain_no_plan(p, {}, None, attempts=[("cpsat0", ev)]))
    assert text.splitlines() == [
        "no feasible placement found: every plan tried exceeds some device's memory",
        "the best plan found (cpsat0) needs 700 bytes on d0 (capacity 500): what this plan "
        "needs, not a proven minimum"]


def test_max_partitions_named_only_when_it_binds() -> None:
    devs = (toy_device("d0", memory_bytes=1000), toy_device("d1", memory_bytes=1000))
    costs: Costs = {"a": {"d0": MS, "d1": MS}, "b": {"d0": MS, "d1": MS}}
    p = toy_problem(costs, [("a", "b", 0)], devs, weights={"a": 600, "b": 600},
                    max_partitions=1)
    assert find_facts(p) == []
    lines = _infeasible(p).splitlines()
    assert lines[0] == ("no feasible placement found: every plan tried that fits in memory has "
                        "more than max_partitions 1 partition(s)")
    assert any(x.startswith("the plan found with the fewest partitions that fits in memory")
               and x.endswith("uses 2") for x in lines)


def test_latency_target_is_quoted_in_ms() -> None:
    costs: Costs = {"a": {"d0": 2 * MS, "d1": 3 * MS}}
    p = toy_problem(costs, [], TWO, objective="cost", latency_target_s=1 * MS)
    text = str(explain_no_plan(p, run_baselines(p), 2 * MS))
    assert text.splitlines()[0] == ("latency target 1 ms cannot be met: the fastest placement "
                                    "found takes 2 ms")
    # The fast plan does not fit; the one that fits misses the target.
    devs = (toy_device("d0", memory_bytes=100), toy_device("d1"))
    p = toy_problem(costs, [], devs, weights={"a": 200}, objective="cost",
                    latency_target_s=2.5 * MS)
    text = str(explain_no_plan(p, run_baselines(p), 2 * MS))
    assert text.splitlines()[:2] == [
        "no feasible placement found: every plan tried that fits in memory misses the latency "
        "target 2.5 ms",
        "the fastest plan found that fits in memory (single:d1) takes 3 ms"]


def test_every_fact_is_a_proof_on_small_random_problems() -> None:
    proved = 0
    for seed in range(250):
        rng = random.Random(seed)
        devs = tuple(toy_device(f"d{k}", memory_bytes=rng.choice([500, 1000, 1500, 2500]))
                     for k in range(rng.choice([2, 3])))
        n = rng.randint(2, 5)
        costs: Costs = {}
        for i in range(n):
            costs[f"x{i}"] = {d.id: None if rng.random() < 0.15 else rng.choice([0, 1, 2]) * MS
                              for d in devs}
            costs[f"x{i}"]["d0"] = costs[f"x{i}"]["d0"] if any(
                v is not None for v in costs[f"x{i}"].values()) else MS
        edges = [(f"x{j}", f"x{i}", rng.choice([100, 300, 600]))
                 for i in range(1, n) for j in range(i) if rng.random() < 0.4]
        pins = {}
        if rng.random() < 0.3:
            x = f"x{rng.randrange(n)}"
            pins[x] = rng.choice([d for d, v in costs[x].items() if v is not None])
        p = toy_problem(costs, edges, devs, pins=pins, max_partitions=rng.choice([None, 1, 2]),
                        weights={x: rng.choice([0, 100, 300, 600]) for x in costs},
                        outputs={x: rng.choice([0, 100, 300, 600]) for x in costs})
        for x, row in costs.items():
            for d, v in row.items():
                if v is not None and rng.random() < 0.3:
                    p.costs.set(x, d, Supported(v, rng.choice([100, 400])))
        if diagnose(p):
            proved += 1
            assert brute_force_optimum(p) == float("inf"), seed
    assert proved > 30
