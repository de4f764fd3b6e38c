"""The sequential latency-regression detector (one-sided CUSUM on log latency), by simulation with fixed seeds:
a +20 % step in p95 is flagged within 2,000 requests, stationary traffic raises at most one false alarm per
100,000 requests, and the online and vectorised paths agree exactly."""

from __future__ import annotations

import numpy as np
import pytest

from modelfleet.core.latency_regression import LatencyRegressionDetector, siegmund_arl0, threshold_for

STREAMS = 12


@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.0])
def test_at_most_one_false_alarm_per_100k_stationary_requests(sigma: float) -> None:
    rng = np.random.default_rng(int(sigma * 100))
    alarms = 0
    for _ in range(STREAMS):
        detector = LatencyRegressionDetector()
        found = detector.update_many(np.exp(rng.normal(np.log(0.012), sigma, 101_000)))
        alarms += sum(a.kind == "regression" for a in found)
    assert alarms <= STREAMS  # streams x 100,000 requests after the warm-up


@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.0])
def test_a_20_percent_step_in_p95_is_flagged_within_2000_requests(sigma: float) -> None:
    rng = np.random.default_rng(1000 + int(sigma * 100))
    for _ in range(STREAMS):
        detector = LatencyRegressionDetector()
        before = np.exp(rng.normal(np.log(0.012), sigma, 3_000))
        after = 1.2 * np.exp(rng.normal(np.log(0.012), sigma, 2_000))  # every quantile, p95 too, +20 %
        assert np.quantile(after, 0.95) / np.quantile(before, 0.95) == pytest.approx(1.2, rel=0.15)
        assert detector.update_many(before) == [] and detector.state == "watching"
        found = [a for a in detector.update_many(after) if a.kind == "regression"]
        assert found and found[0].at - 3_000 <= 2_000


def test_recovery_and_state_report() -> None:
    rng = np.random.default_rng(5)
    detector = LatencyRegressionDetector(warmup=500)
    steps = [np.exp(rng.normal(-4, 0.4, 1000)), 1.5 * np.exp(rng.normal(-4, 0.4, 1000)),
             np.exp(rng.normal(-4, 0.4, 3000))]
    kinds = [a.kind for part in steps for a in detector.update_many(part)]
    assert kinds[:2] == ["regression", "recovery"]
    report = detector.to_dict()
    assert report["state"] == "watching" and report["alarms"] >= 1 and report["threshold"] > 0
    assert report["baseline_p50_s"] == pytest.approx(np.exp(-4), rel=0.05)


def test_online_and_vectorised_paths_agree() -> None:
    rng = np.random.default_rng(9)
    values = np.exp(np.r_[rng.normal(-4, 0.5, 2500), rng.normal(-3.8, 0.5, 2500), rng.normal(-4, 0.5, 4000)])
    one, many = LatencyRegressionDetector(), LatencyRegressionDetector()
    online = [a for a in (one.update(float(v)) for v in values) if a is not None]
    assert online == many.update_many(values) and online
    assert one.n == many.n and one.state == many.state
    assert one.s == pytest.approx(many.s, rel=1e-9, abs=1e-9) and one.mu == pytest.approx(many.mu, rel=1e-12)


def test_threshold_meets_the_designed_mean_time_to_a_false_alarm() -> None:
    h = threshold_for(0.2, 1e7)
    assert siegmund_arl0(0.2, h) >= 1e7 > siegmund_arl0(0.2, h * 0.99)
    with pytest.raises(ValueError):
        LatencyRegressionDetector(step=0)
