"""The cost-accuracy benchmark's Markdown: table, verdict and an honest reason for misses."""

from __future__ import annotations

from pathlib import Path

from cost_models.profiled import ProfiledCostModel
from partitioner.benchmarks.cost_accuracy import Row, render
from partitioner.cluster.file import load_cluster
from partitioner.profiling.cache import ProfileCache


def test_render_reports_errors_verdict_and_misses(tmp_path: Path) -> None:
    cluster = load_cluster("cpu+l4")
    profiled = ProfiledCostModel(ProfileCache(tmp_path / "p.sqlite"))
    rows = [
        Row("mlp", "cpu", median_s=1.1e-3, best_s=1.0e-3, noise=0.05, raw_s=1.5e-3,
            calibrated_s=1.2e-3, model_calibrated_s=1.05e-3),
        Row("gpt", "l4", median_s=4e-3, best_s=2e-3, noise=0.5, raw_s=3e-3, calibrated_s=2.5e-3,
            model_calibrated_s=3e-3),
    ]
    text = render(rows, cluster, profiled, quick=True)
    assert "| mlp | cpu | 1.100 | 1.000 | 5% | +50% | +20% | 1.050 | +5% | yes | -5% |" in text
    assert "| gpt | l4 |" in text and "+50% | no |" in text
    assert "NOT met" in text and "1/2 pairs (50%)" in text
    assert "gpt on l4 (+50%)" in text and "Timing noise" in text
    assert "python -m partitioner.benchmarks --only cost_accuracy --quick" in text
