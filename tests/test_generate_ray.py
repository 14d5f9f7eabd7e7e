"""``hetpart generate --ray``: a zoo llama compiled for two hosts (both phases split across
both, so each device serves prefill and decode) generates on a throwaway loopback Ray cluster
(one local cluster for this module, started by the command) the same tokens as the
unpartitioned model and as the in-process Generator, leaving no process, /dev/shm file or Ray
state behind; devices advertised with too few units for both phases are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'hetpart[ray]'")
pytest.importorskip("torch", reason="the llama zoo model needs torch: pip install 'hetpart[zoo]'")
pytest.importorskip("transformers", reason="llama needs transformers")

from test_ray_local import (  # noqa: E402  (its leftover checks and private TMPDIR)
    _assert_nothing_left,
    _hetpart,
    _shm,
    private_tmp,  # noqa: F401  (a fixture)
)

from models import zoo  # noqa: E402
from partitioner import Generator  # noqa: E402
from partitioner.errors import RayClusterError  # noqa: E402
from partitioner.generation.layout import load_layout  # noqa: E402
from partitioner.generation.phase_plans import compile_split_plan  # noqa: E402
from partitioner.generation.plan_dir import load_generation_plan  # noqa: E402
from partitioner.generation.ray_phases import check_units, phase_units  # noqa: E402
from partitioner.testing.host_clusters import TWO_HOSTS, hosts_cluster_toml  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.zoo]

HOSTS = TWO_HOSTS
CLUSTER_TOML = hosts_cluster_toml(HOSTS) + """
[[link]]
src = "cpu-a"
dst = "cpu-b"
bandwidth = "1GB/s"
latency_us = 200
bidirectional = true
"""
PROMPT, NEW, BATCH = 7, 12, 2


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generate-ray")
    cluster = root / "two-hosts.toml"
    cluster.write_text(CLUSTER_TOML)
    folder = zoo.build("llama", {"size": "llama-tiny", "layout": "optimum"})
    compile_split_plan(load_layout(folder), root / "plan", str(cluster),
                       prefill_split=("cpu-a", "cpu-b"), decode_split=("cpu-b", "cpu-a"),
                       prompt=16, context=64, options={"measure_rounds": 0, "time_limit_s": 5})
    return root / "plan"


def test_generate_on_ray_local_matches_the_unpartitioned_model(plan_dir: Path,
                                                               private_tmp: Path) -> None:  # noqa: F811
    shm = _shm()
    done = _hetpart(private_tmp, "generate", str(plan_dir), "--ray", "local", "--check",
                    "--json", "--prompt-tokens", str(PROMPT), "--max-new-tokens", str(NEW),
                    "--batch", str(BATCH), "--ignore-eos", "--warmup", "0", "--seed", "3")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    _assert_nothing_left(private_tmp, shm, done.stderr)
    assert record["check"]["tokens_identical"] and record["check"]["passed"]
    assert record["ray"]["hosts"] == {"prefill": HOSTS, "decode": HOSTS}
    assert record["ray"]["units"] == {"cpu-a": 2, "cpu-b": 2}
    assert record["devices"] == {"prefill": ["cpu-a", "cpu-b"], "decode": ["cpu-b", "cpu-a"]}
    assert record["kv"]["bytes_at_end"] > 0 and "ObjectRefs" in record["kv"]["transport"]
    tokens = np.asarray(record["measured"]["tokens"])
    assert tokens.shape == (BATCH, NEW)
    # The in-process Generator on the same plan and prompt: the same tokens.
    ids = np.random.default_rng(3).integers(3, load_generation_plan(plan_dir).layout.spec
                                            .vocab_size, (BATCH, PROMPT))
    with Generator(plan_dir, emulate=True) as generator:  # local = false: a spec sheet
        assert not generator.kv_on_host and generator.ray is None
        local = generator.generate(ids, NEW, stop_at_eos=False)
    assert np.array_equal(local.tokens, tokens)


def test_phase_units_and_devices_short_of_units_are_named(plan_dir: Path) -> None:
    plan = load_generation_plan(plan_dir)
    units = phase_units({"prefill": plan.prefill, "decode": plan.decode})
    assert units == {"cpu-a": 2, "cpu-b": 2}
    advertised = {"hetpart_device:cpu-a": 2.0, "hetpart_device:cpu-b": 1.0, "CPU": 2.0}
    with pytest.raises(RayClusterError, match=r"'cpu-b' serve both prefill and decode.*cpu-b 1"):
        check_units(units, advertised, "127.0.0.1:6379")
    check_units(units, {"hetpart_device:cpu-a": 2.0, "hetpart_device:cpu-b": 2.0}, "x")
    check_units({"cpu-a": 1}, {"hetpart_device:cpu-a": 1.0}, "x")
