import numpy as np

from alphapulse_assets.monitoring.drift import ks_statistic, measure_drift, psi, render_html


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(5000)
    assert psi(reference, rng.standard_normal(2000)) < 0.02
    assert psi(reference, rng.standard_normal(2000) + 1.0) > 0.25


def test_psi_counts_missing_values_as_drift():
    rng = np.random.default_rng(2)
    reference = rng.standard_normal(2000)
    current = rng.standard_normal(500)
    current[:200] = np.nan
    assert psi(reference, current) > 0.25


def test_ks_statistic():
    assert ks_statistic(np.arange(100.0), np.arange(100.0)) == 0.0
    assert ks_statistic(np.zeros(10), np.ones(10)) == 1.0


def test_summary_levels_and_insufficient_data():
    rng = np.random.default_rng(3)
    reference = {f"f{i}": rng.standard_normal(1000) for i in range(5)}
    same = {k: rng.standard_normal(1000) for k in reference}
    assert measure_drift(reference, same).status == "ok"
    shifted = {k: v + (2.0 if k in ("f0", "f1") else 0.0) for k, v in same.items()}
    summary = measure_drift(reference, shifted)
    assert summary.status == "critical" and summary.drifted_share == 0.4
    assert {f.feature for f in summary.features[:2]} == {"f0", "f1"}
    thin = measure_drift(reference, {k: v[:10] for k, v in same.items()})
    assert thin.status == "insufficient_data" and "10 current rows" in thin.reason
    assert "critical" in render_html(summary, "t", ["line"])
