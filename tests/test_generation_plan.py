"""Generation planner: workload parsing, phase figures by hand, CP-SAT per phase against brute
force on small cases (2 devices, 4 layers), never worse than any baseline on random fleets, a
proven bound on every plan, and the bad-input errors (one line each)."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pytest

from partitioner.cluster.file import cluster_from_dict
from partitioner.cluster.types import Cluster, DeviceSpec, Link
from partitioner.errors import InfeasibleError
from partitioner.generation.costs import DecodeFit, measured_rates, spec_rates
from partitioner.generation.phases import group_layers, group_work
from partitioner.generation.planner import device_rates, plan_generation
from partitioner.generation.problem import build_problem, evaluate
from partitioner.generation.spec import DecoderSpec, named_spec
from partitioner.generation.workload import Targets, Workload, WorkloadError

GB = 1e9

#: A 4-layer decoder, f16 weights: 4 x 6.3 MB layers, a 2.1 MB embedding and head.
SPEC = DecoderSpec("toy", num_layers=4, hidden_size=256, num_heads=4, num_kv_heads=2,
                   intermediate_size=2048, vocab_size=4096, max_context=4096,
                   weight_bytes_per_param=2, kv_bytes_per_element=2)


def _device(name: str, cls: str, memory: float, tflops: float, bandwidth: float,
            price: float, overhead_us: float = 20) -> DeviceSpec:
    return DeviceSpec(id=name, device_class=cls, runner="null", memory_bytes=int(memory),
                      peak_flops={"float32": tflops * 1e12 / 4, "float16": tflops * 1e12},
                      memory_bandwidth=bandwidth, call_overhead_s=overhead_us * 1e-6,
                      price_per_hour=price)


def _pair(gpu_memory: float = 20e6) -> Cluster:
    """A compute-strong GPU with little memory and a bandwidth-strong CPU with plenty."""
    gpu = _device("gpu", "gpu", gpu_memory, 100, 300e9, 1.0)
    cpu = _device("cpu", "cpu", 64 * GB, 2, 400e9, 0.5)
    return Cluster("pair", (gpu, cpu), (Link("gpu", "cpu", 16e9, 10e-6),
                                        Link("cpu", "gpu", 16e9, 10e-6)), 16e9, "cpu")


def _brute_force(spec: DecoderSpec, workload: Workload, targets: Targets, cluster: Cluster,
                 groups: int) -> tuple[float, object] | None:
    """The best feasible value over every placement and every batch the objective tries."""
    rates = device_rates(spec, cluster, workload)
    layer_groups = group_layers(spec.num_layers, groups)
    best = None
    for batch in workload.batch_candidates(targets.objective):
        pr = build_problem(spec, workload, targets, cluster, rates, layer_groups, batch)
        D, G = len(cluster.devices), len(layer_groups)
        for p in itertools.product(range(D), repeat=G):
            for q in itertools.product(range(D), repeat=G):
                ev = evaluate(pr, p, q)
                if ev.feasible and (best is None or ev.key(targets.objective) < best[0]):
                    best = (ev.key(targets.objective), ev)
    return best


def test_workload_parses_and_refuses_in_one_line() -> None:
    w = Workload.parse("prompt=512,new=128,batch=8,context=2048")
    assert (w.prompt, w.new, w.batch, w.context) == (512, 128, 8, 2048)
    assert Workload.parse("prompt=10, new=5").context == 15
    assert Workload.parse("prompt=1,new=1,batch=12").batch_candidates("tokens-per-s") == (
        1, 2, 4, 8, 12)
    assert Workload.parse("prompt=1,new=1,batch=12").batch_candidates("ttft") == (12,)
    for text, fragment in [
        ("prompt=512", "missing new=N"),
        ("prompt=5,new=x", "new='x' is not an integer"),
        ("prompt=5,new=2,tokens=3", "'tokens=3' is not KEY=N"),
        ("prompt=5,new=2,prompt=3", "prompt is given twice"),
        ("prompt=0,new=2", "prompt must be a positive integer"),
        ("prompt=100,new=50,context=120", "context=120 is shorter than prompt + new"),
    ]:
        with pytest.raises(WorkloadError, match=re.escape(fragment)) as err:
            Workload.parse(text)
        assert "\n" not in str(err.value)
    with pytest.raises(WorkloadError, match="--objective 'latency'"):
        Targets("latency")
    with pytest.raises(WorkloadError,
                       match=r"beyond the maximum context of model 'llama-7b' \(4096 tokens\)"):
        Workload.parse("prompt=4000,new=100,context=5000").check_model(named_spec("llama-7b"))


def test_phase_figures_by_hand() -> None:
    g0, g1 = group_layers(4, 2)
    assert (g0.first, g0.count, g0.embedding, g0.head) == (0, 2, True, False)
    assert (g1.first, g1.count, g1.embedding, g1.head) == (2, 2, False, True)
    w = group_work(SPEC, g0, prompt=8, batch=2)
    layer = SPEC.layer_params * 2
    assert w.weight_bytes == 2 * layer + SPEC.vocab_size * SPEC.hidden_size * 2
    # The embedding is a gather: decode reads one row per sequence, not the table.
    assert w.decode_weight_bytes == 2 * layer + 2 * SPEC.hidden_size * 2
    kv_token = 2 * 2 * SPEC.num_kv_heads * SPEC.head_size * 2  # 2 layers x (K + V)
    assert w.kv_bytes_per_token == kv_token
    assert w.decode_kv_bytes1 == 2 * kv_token
    assert w.prefill_flops == 2 * 2 * SPEC.layer_flops(8, 0)
    assert w.decode_flops(10) == pytest.approx(2 * 2 * SPEC.layer_flops(1, 10))
    h = group_work(SPEC, g1, prompt=8, batch=2)
    assert h.prefill_flops == pytest.approx(2 * 2 * SPEC.layer_flops(8, 0)
                                            + 2 * 8 * 2 * SPEC.hidden_size * SPEC.vocab_size)


def test_decode_costs_are_memory_bound_and_measured_lines_calibrate() -> None:
    gpu = _pair().device("gpu")
    g = group_layers(4, 1)[0]
    w = group_work(SPEC, g, prompt=8, batch=1)
    rates = spec_rates(gpu, "float16")
    expected = (w.decode_weight_bytes + w.decode_other_bytes + w.decode_kv_bytes1 * 100) / (
        300e9 * 0.8)
    assert rates.decode_s(w, 100) == pytest.approx(expected)
    # A measured line a + b x past: the fitted rates reproduce it for the whole model.
    fit = DecodeFit.from_points([(100, 2e-3 + 100 * 1e-6), (300, 2e-3 + 300 * 1e-6),
                                 (500, 2e-3 + 500 * 1e-6)])
    assert fit.intercept_s == pytest.approx(2e-3) and fit.slope_s == pytest.approx(1e-6)
    weights = w.decode_weight_bytes + w.decode_other_bytes
    measured = measured_rates(gpu, "float16", fit, weights, SPEC.kv_bytes_per_token())
    assert float(measured.decode_s(w, 300)) == pytest.approx(
        fit.predict(300) - gpu.call_overhead_s, rel=1e-6)


@pytest.mark.parametrize("objective", ["ttft", "tpot", "tokens-per-s", "cost-per-mtok"])
@pytest.mark.parametrize("gpu_memory", [20e6, 60e6])
def test_plan_matches_brute_force(objective: str, gpu_memory: float) -> None:
    workload = Workload.parse("prompt=64,new=16,batch=4,context=256")
    targets = Targets(objective)
    cluster = _pair(gpu_memory)
    plan = plan_generation(SPEC, workload, targets, cluster, groups=4, time_limit_s=5)
    best = _brute_force(SPEC, workload, targets, cluster, 4)
    assert best is not None
    assert plan.plan.eval.key(objective) == pytest.approx(best[0], rel=1e-6)
    assert plan.bound is not None
    value = plan.value
    if objective == "tokens-per-s":
        assert value <= plan.bound * (1 + 1e-9)
    else:
        assert plan.bound <= value * (1 + 1e-9)
    assert plan.gap is not None and plan.gap < 1e-3


def test_small_gpu_memory_makes_prefill_and_decode_part() -> None:
    """20 MB of GPU memory holds three layers' weights but not their KV cache at 8 x 4096
    tokens: disaggregated, the GPU prefills them and the CPU decodes."""
    workload = Workload.parse("prompt=512,new=64,batch=8,context=4096")
    plan = plan_generation(SPEC, workload, Targets("tokens-per-s"), _pair(20e6), groups=4)
    ev = plan.plan.eval
    assert not ev.colocated
    assert "gpu" in [plan.problem.devices[d] for d in ev.prefill]
    assert plan.colocated is not None
    assert plan.colocated.eval.tokens_per_s < ev.tokens_per_s
    assert "disaggregated" in plan.choice()
    why = plan.explain()
    assert any(g["decode"]["faster_devices"] or g["prefill"]["faster_devices"] for g in why)


def _random_cluster(rng: random.Random) -> Cluster:
    devices = []
    for i in range(rng.randint(2, 4)):
        cls = rng.choice(["gpu", "cpu"])
        devices.append(_device(f"d{i}", cls, rng.choice([15e6, 30e6, 80e6, 1e9]),
                               rng.choice([2, 30, 120]), rng.choice([50e9, 300e9, 2e12]),
                               rng.choice([0.0, 0.35, 0.71, 1.79, 5.0])))
    devices.append(_device("host", "cpu", 64 * GB, 2, 400e9, rng.choice([0.0, 2.0])))
    return Cluster("random", tuple(devices), (), rng.choice([12.5e9, 64e9]), "host")


@pytest.mark.parametrize("seed", range(6))
def test_never_worse_than_any_baseline_on_random_fleets(seed: int) -> None:
    rng = random.Random(seed)
    cluster = _random_cluster(rng)
    objective = rng.choice(["ttft", "tpot", "tokens-per-s", "cost-per-mtok"])
    workload = Workload(prompt=rng.choice([32, 128]), new=rng.choice([8, 32]),
                        batch=rng.choice([1, 4, 8]), context=1024)
    plan = plan_generation(SPEC, workload, Targets(objective), cluster, time_limit_s=3)
    assert plan.plan.eval.feasible
    for name, baseline in plan.baselines.items():
        if baseline is None:
            continue
        assert baseline.eval.feasible, name
        if name == "cheapest homogeneous fleet":
            continue  # chosen by price per hour, not by the objective
        assert plan.plan.eval.key(objective) <= baseline.eval.key(objective) * (1 + 1e-9), name
    assert plan.bound is not None
    data = plan.to_dict()
    assert set(data["baselines"]) >= {"best single device", "best co-located plan",
                                      "cheapest homogeneous fleet"}


def test_kv_cache_that_fits_nowhere_names_bytes_per_token_and_largest_context() -> None:
    spec = named_spec("llama-7b")
    cluster = cluster_from_dict({"device": [{"use": "l4"}, {"use": "t4"}]}, "t", "t")
    with pytest.raises(InfeasibleError) as err:
        plan_generation(spec, Workload.parse("prompt=1024,new=1024,batch=64,context=4096"),
                        Targets("tpot"), cluster, time_limit_s=2)
    message = str(err.value)
    assert "\n" not in message
    assert "524288 bytes per token" in message  # 32 layers x 2 x 32 heads x 128 x 2 bytes
    assert "the largest context that fits at batch 64 is 335 tokens" in message


def test_slos_no_placement_meets_name_the_best_achievable() -> None:
    workload = Workload.parse("prompt=64,new=16,batch=1,context=256")
    with pytest.raises(InfeasibleError) as err:
        plan_generation(SPEC, workload, Targets("tokens-per-s", ttft_slo_s=1e-9), _pair(),
                        groups=4, time_limit_s=2)
    message = str(err.value)
    assert "\n" not in message
    assert "--ttft-slo 1e-06 ms (best achievable TTFT" in message


def test_cluster_file_count_expands_devices_and_links() -> None:
    cluster = cluster_from_dict({
        "device": [{"use": "l4", "count": 3}, {"use": "epyc-9654"}],
        "link": [{"src": "l4", "dst": "cpu", "bandwidth": "16GB/s", "bidirectional": True}],
    }, "c.toml", "c")
    assert cluster.device_ids == ("l4-0", "l4-1", "l4-2", "cpu")
    assert len({d.processor for d in cluster.devices}) == 4
    assert cluster.link("l4-2", "cpu").bandwidth == 16e9
    assert cluster.link("cpu", "l4-0").bandwidth == 16e9
    from partitioner.errors import ClusterError
    with pytest.raises(ClusterError, match="key 'count' must be a positive integer"):
        cluster_from_dict({"device": [{"use": "l4", "count": 0}]}, "c.toml", "c")


@pytest.mark.parametrize("gpu_memory", [12e6, 20e6, 60e6])
@pytest.mark.parametrize("batch", [1, 4])
def test_memory_relaxation_is_below_every_feasible_placement(gpu_memory: float,
                                                             batch: int) -> None:
    from partitioner.generation.relaxation import phase_lower_bounds

    workload = Workload.parse(f"prompt=64,new=16,batch={batch},context=256")
    cluster = _pair(gpu_memory)
    pr = build_problem(SPEC, workload, Targets("ttft"), cluster,
                       device_rates(SPEC, cluster, workload), group_layers(4, 4), batch)
    bounds = phase_lower_bounds(pr)
    assert bounds is not None
    evals = [evaluate(pr, p, q) for p in itertools.product(range(2), repeat=4)
             for q in itertools.product(range(2), repeat=4)]
    feasible = [e for e in evals if e.fits]
    assert feasible
    assert bounds[0] <= min(e.ttft_s for e in feasible)
    assert bounds[1] <= min(e.tpot_s for e in feasible)
    # It counts memory: with a small GPU it is above the no-memory bound.
    no_memory = sum(min(row) for row in pr.prefill_s)
    assert bounds[0] >= no_memory * (1 - 1e-6)


def test_measured_decode_curve_goes_through_convex_points_and_splits_kv_by_bytes() -> None:
    # OpenVINO's step grows faster than linearly once the cache outgrows the CPU caches.
    points = [(127, 14.5e-3), (255, 16.4e-3), (511, 21.1e-3), (1023, 31.3e-3),
              (2047, 55.8e-3)]
    fit = DecodeFit.from_points(points)
    for past, secs in points:
        assert fit.predict(past) == pytest.approx(secs)
    assert fit.predict(767) == pytest.approx((21.1e-3 + 31.3e-3) / 2)
    last_slope = (55.8e-3 - 31.3e-3) / 1024
    assert fit.predict(3071) == pytest.approx(55.8e-3 + 1024 * last_slope)
    assert fit.intercept_s == pytest.approx(14.5e-3 - 127 * (16.4e-3 - 14.5e-3) / 128)
    # A noisy dip is not a faster step: the curve never decreases.
    dip = DecodeFit.from_points([(100, 2e-3), (200, 1.9e-3), (400, 2.4e-3)])
    assert dip.predict(200) == pytest.approx(2e-3)
    # Each group pays the KV part in proportion to its KV bytes; the groups sum to the curve.
    gpu = _pair().device("gpu")
    groups = group_layers(4, 2)
    works = [group_work(SPEC, g, prompt=8, batch=1) for g in groups]
    weights = sum(w.decode_weight_bytes + w.decode_other_bytes for w in works)
    rates = measured_rates(gpu, "float16", fit, weights, SPEC.kv_bytes_per_token())
    pasts = np.array([127.0, 767.0, 2047.0])
    total = sum(np.asarray(rates.decode_s(w, pasts)) for w in works)
    assert total == pytest.approx(np.asarray(fit.predict(pasts)) - gpu.call_overhead_s)
