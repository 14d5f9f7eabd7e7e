"""The plan-accuracy benchmark's Markdown: errors, goals, and the measurement's own drift."""

from __future__ import annotations

from partitioner.benchmarks.plan_accuracy import Row, render


def test_render_reports_errors_goals_and_the_measurements_own_repeatability() -> None:
    rows = [
        Row("mlp", "ort-cpu", 1, predicted_s=1.0e-3, measured_s=1.05e-3, noise_s=1e-4,
            again_s=1.3e-3),
        Row("mlp", "ov-cpu", 1, predicted_s=2.6e-3, measured_s=2.0e-3, noise_s=1e-4,
            again_s=2.1e-3),
        Row("mlp", "local", 1, predicted_s=1.0e-3, measured_s=1.0e-3, noise_s=1e-4),
        # A local plan that is one device's whole-model plan is judged by that plan's figure.
        Row("cnn", "ort-cpu", 1, predicted_s=3e-3, measured_s=3e-3, noise_s=1e-4),
        Row("cnn", "ov-cpu", 1, predicted_s=2e-3, measured_s=2e-3, noise_s=1e-4),
        Row("cnn", "local", 1, predicted_s=2e-3, measured_s=2.4e-3, noise_s=1e-4,
            whole_on="ov-cpu"),
    ]
    text = render(rows, quick=True)
    assert "| mlp | ort-cpu | 1 | 1.000 | 1.050 | 10% | -5% | yes | 1.300 | +24% |" in text
    assert "| mlp | ov-cpu | 1 | 2.600 | 2.000 | 5% | +30% | no | 2.100 | +5% |" in text
    assert "| mlp | local | 1 | 1.000 | 1.000 | 10% | +0% | yes | - | - |" in text
    assert "Predictions within ±10%: **4/6**" in text
    assert "agree within ±10% on **1/2**" in text
    assert "| mlp | yes | 0.95x |" in text  # local against the best single device, measured
    assert "| cnn | yes | 1.00x (= ov-cpu's plan) |" in text
    assert "`local` plan ≤ 1.05x the best single device: **2/2**" in text
