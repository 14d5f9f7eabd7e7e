"""The common evaluator: hand-computed schedules, memory, price and energy."""

from __future__ import annotations

import pytest

from partitioner.errors import SolverError
from partitioner.solver.evaluate import evaluate, memory_violations
from partitioner.solver.problem import Evaluation
from partitioner.testing.random_problem import toy_device, toy_problem

MS = 1e-3


def test_chain_on_one_device_pays_overhead_once() -> None:
    devs = (toy_device("d0", overhead_s=0.5 * MS),)
    p = toy_problem({"a": {"d0": 1 * MS}, "b": {"d0": 2 * MS}, "c": {"d0": 3 * MS}},
                    [("a", "b", 10), ("b", "c", 10)], devs)
    ev = evaluate(p, {"a": "d0", "b": "d0", "c": "d0"})
    assert ev.latency_s == pytest.approx(6.5 * MS)
    assert ev.num_partitions == 1
    assert ev.busy_s["d0"] == pytest.approx(6.5 * MS)
    assert ev.schedule["b"] == ("d0", pytest.approx(1.5 * MS), pytest.approx(3.5 * MS))


def test_transfer_delays_consumer_and_counts_in_stage() -> None:
    devs = (toy_device("d0"), toy_device("d1"))
    p = toy_problem({"a": {"d0": 1 * MS, "d1": 1 * MS}, "b": {"d0": 2 * MS, "d1": 2 * MS}},
                    [("a", "b", 1_000_000)], devs, bandwidth=1e9)
    ev = evaluate(p, {"a": "d0", "b": "d1"})
    assert ev.latency_s == pytest.approx(4 * MS)
    assert ev.stage_s == pytest.approx(2 * MS)
    assert ev.num_partitions == 2


def test_independent_calls_overlap_unless_processor_is_shared() -> None:
    costs = {"a": {"d0": 3 * MS, "d1": 3 * MS}, "b": {"d0": 3 * MS, "d1": 3 * MS},
             "j": {"d0": 1 * MS, "d1": 1 * MS}}
    edges = [("a", "j", 0), ("b", "j", 0)]
    split = {"a": "d0", "b": "d1", "j": "d0"}
    separate = toy_problem(costs, edges, (toy_device("d0"), toy_device("d1")))
    assert evaluate(separate, split).latency_s == pytest.approx(4 * MS)
    shared = toy_problem(costs, edges, (toy_device("d0", processor="host"),
                                        toy_device("d1", processor="host")))
    ev = evaluate(shared, split)
    assert ev.latency_s == pytest.approx(7 * MS)
    assert ev.stage_s == pytest.approx(7 * MS)  # one processor does all the work


#: ``s`` forks to ``b1`` and ``b2`` (10 ms each), joined by ``j``: the first two on d0, the
#: other two on d1.
_FORK_EDGES = [("s", "b1", 0), ("s", "b2", 0), ("b1", "j", 0), ("b2", "j", 0)]
_FORK_SPLIT = {"s": "d0", "b1": "d0", "b2": "d1", "j": "d1"}


def _evaluated_fork() -> Evaluation:
    costs = {n: {"d0": c * MS, "d1": c * MS} for n, c in
             {"s": 1, "b1": 10, "b2": 10, "j": 1}.items()}
    p = toy_problem(costs, _FORK_EDGES, (toy_device("d0"), toy_device("d1")))
    return evaluate(p, _FORK_SPLIT)


def test_a_call_waits_for_every_partition_it_reads() -> None:
    # j on d1 reads b1 and b2: whatever the cut, a call starts only once every call it reads
    # from has returned (executor semantics)
    ev = _evaluated_fork()
    call = {n: q for q in ev.partitions for n in q.nodes}
    for src, dst, _ in _FORK_EDGES:
        if call[src] != call[dst]:
            returned = ev.schedule[call[src].nodes[-1]][2]
            assert ev.schedule[call[dst].nodes[0]][1] >= returned - 1e-12
    assert ev.schedule["j"][1] >= ev.schedule["b1"][2] - 1e-12


def test_a_call_leaves_out_a_node_whose_input_comes_later() -> None:
    # One call [b2, j] would wait for b1 (22 ms); a call [b2] as soon as s returns, then [j],
    # ends at 12 ms.
    ev = _evaluated_fork()
    assert [(q.device, q.nodes) for q in ev.partitions] == [
        ("d0", ("s",)), ("d0", ("b1",)), ("d1", ("b2",)), ("d1", ("j",))]
    assert ev.schedule["b2"][1] == pytest.approx(1 * MS)
    assert ev.latency_s == pytest.approx(12 * MS)


def test_one_call_returns_the_inputs_of_every_branch_the_other_device_takes() -> None:
    # a forks into b1 -> c1, b2 -> c2 and e; the c branches sit on d1, the rest on d0 whose
    # calls cost 1 ms. Cutting after b1 and again after b2 pays d0 one call more than
    # returning both in one call [a, b1, b2] while e runs in the next: 18 against 17 ms.
    costs = {n: {"d0": (10 if n == "e" else 1) * MS, "d1": 1 * MS}
             for n in ("a", "b1", "c1", "b2", "c2", "e", "d")}
    edges = [("a", "b1", 0), ("b1", "c1", 0), ("a", "b2", 0), ("b2", "c2", 0), ("a", "e", 0),
             ("c1", "d", 0), ("c2", "d", 0), ("e", "d", 0)]
    p = toy_problem(costs, edges, (toy_device("d0", overhead_s=1 * MS), toy_device("d1")))
    ev = evaluate(p, {"a": "d0", "b1": "d0", "c1": "d1", "b2": "d0", "c2": "d1", "e": "d0",
                      "d": "d0"})
    assert [(q.device, q.nodes) for q in ev.partitions] == [
        ("d0", ("a", "b1", "b2")), ("d0", ("e",)), ("d1", ("c1", "c2")), ("d0", ("d",))]
    assert ev.latency_s == pytest.approx(17 * MS)


def test_peak_memory_counts_weights_and_live_activations() -> None:
    devs = (toy_device("d0", memory_bytes=1500),)
    p = toy_problem({"a": {"d0": MS}, "b": {"d0": MS}, "c": {"d0": MS}},
                    [("a", "b", 100), ("b", "c", 200)], devs,
                    weights={"a": 1000}, outputs={"a": 100, "b": 200, "c": 300})
    ev = evaluate(p, dict.fromkeys("abc", "d0"))
    assert ev.peak_memory["d0"] == 1000 + 200 + 300
    assert memory_violations(p, ev) == {}
    tight = toy_problem({"a": {"d0": MS}}, [], (toy_device("d0", memory_bytes=10),),
                        weights={"a": 11})
    assert memory_violations(tight, evaluate(tight, {"a": "d0"})) == {"d0": (11, 10)}


def test_price_and_energy_follow_busy_time() -> None:
    devs = (toy_device("d0", price_per_hour=3.6, power_w=100.0),)
    p = toy_problem({"a": {"d0": 2 * MS}}, [], devs)
    ev = evaluate(p, {"a": "d0"})
    assert ev.cost_per_1k == pytest.approx(2e-3)
    assert ev.energy_j == pytest.approx(0.2)


def test_bad_assignments_name_the_node() -> None:
    p = toy_problem({"a": {"d0": MS, "d1": None}, "b": {"d0": MS, "d1": MS}}, [],
                    (toy_device("d0"), toy_device("d1")))
    with pytest.raises(SolverError, match="unplaced: b"):
        evaluate(p, {"a": "d0"})
    with pytest.raises(SolverError, match="a=d1"):
        evaluate(p, {"a": "d1", "b": "d0"})


def test_the_node_feeding_another_device_runs_first_in_its_call() -> None:
    # After a, both b1 and c1 are ready on d0. Taking them in model order would run the d0
    # chain b1, b2 before c1 and keep d1 idle until then; the critical-path cut runs c1 first
    # and ends the call there, so d1's branch overlaps the b chain.
    costs = {"a": {"d0": 1 * MS}, "b1": {"d0": 10 * MS}, "b2": {"d0": 10 * MS},
             "c1": {"d0": 1 * MS}, "c2": {"d1": 30 * MS}, "d": {"d0": 1 * MS}}
    edges = [("a", "b1", 0), ("b1", "b2", 0), ("a", "c1", 0), ("c1", "c2", 0),
             ("b2", "d", 0), ("c2", "d", 0)]
    p = toy_problem(costs, edges, (toy_device("d0"), toy_device("d1")))
    ev = evaluate(p, {"a": "d0", "b1": "d0", "b2": "d0", "c1": "d0", "c2": "d1", "d": "d0"})
    assert [(part.device, part.nodes) for part in ev.partitions] == [
        ("d0", ("a", "c1")), ("d0", ("b1", "b2")), ("d1", ("c2",)), ("d0", ("d",))]
    assert ev.latency_s == pytest.approx(33 * MS)  # in model order: 22 + 30 + 1 = 53 ms
