"""The mergeable latency sketch: quantiles within 1 % of exact on 1e6 samples, merge, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelfleet.core.latency import LatencySketch, slo_status


@pytest.mark.parametrize("dist", ["lognormal", "exponential", "bimodal"])
def test_quantiles_within_one_percent_on_a_million_samples(dist: str) -> None:
    rng = np.random.default_rng(7)
    n = 1_000_000
    if dist == "lognormal":
        x = rng.lognormal(np.log(0.004), 0.6, n)
    elif dist == "exponential":
        x = rng.exponential(0.01, n) + 0.0005
    else:
        x = np.concatenate([rng.normal(0.002, 0.0002, n // 2).clip(1e-5), rng.normal(0.05, 0.01, n // 2).clip(1e-5)])
    sketch = LatencySketch()
    sketch.add_many(x)
    xs = np.sort(x)
    for q in (0.5, 0.95, 0.99):
        exact = xs[int(q * (n - 1))]
        got = sketch.quantile(q)
        assert got is not None
        assert abs(got - exact) / exact < 0.01, (q, got, exact)
    assert sketch.count == n
    assert len(sketch.to_dict()["counts"]) < 4096


def test_add_and_add_many_agree_and_merge_is_exact() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(-5, 1, 20_000)
    one = LatencySketch()
    for v in x:
        one.add(float(v))
    many = LatencySketch()
    many.add_many(x)
    assert one.to_dict()["counts"] == many.to_dict()["counts"]
    a, b = LatencySketch(), LatencySketch()
    a.add_many(x[:7000])
    b.add_many(x[7000:])
    a.merge(b)
    assert a.to_dict()["counts"] == many.to_dict()["counts"] and a.count == many.count
    with pytest.raises(ValueError, match="different relative accuracy"):
        a.merge(LatencySketch(relative_accuracy=0.01))


def test_json_round_trip_and_empty() -> None:
    s = LatencySketch()
    assert s.quantile(0.5) is None and s.quantiles()["p99"] is None
    s.add_many([0.001, 0.002, 0.003, 0.0, float("nan")])
    d = json.loads(json.dumps(s.to_dict()))
    t = LatencySketch.from_dict(d)
    assert t.to_dict() == s.to_dict() and t.count == 4 and t.zero_count == 1
    assert t.quantile(0.0) == 0.0
    assert slo_status(t, 0.01).ok is True and slo_status(LatencySketch(), 0.01).ok is None


def test_bucket_count_is_bounded() -> None:
    s = LatencySketch(max_buckets=64)
    s.add_many(np.logspace(-8, 3, 100_000))
    assert len(s.to_dict()["counts"]) <= 64
    assert abs(s.quantile(0.99) / np.quantile(np.logspace(-8, 3, 100_000), 0.99) - 1) < 0.01


def test_share_over_budget_from_the_histogram() -> None:
    from modelfleet.core.latency import LATENCY_BOUNDS, share_over

    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    counts[LATENCY_BOUNDS.index(0.01)] = 90  # (0.0075, 0.01]
    counts[LATENCY_BOUNDS.index(0.075)] = 10  # (0.05, 0.075]
    assert share_over(counts, 0.05) == pytest.approx(0.10)  # a bound: exact
    assert share_over(counts, 0.0625) == pytest.approx(0.05)  # half of the (0.05, 0.075] bucket
    counts[-1] = 100  # +Inf
    assert share_over(counts, 10.0) == pytest.approx(0.5)
    assert share_over([0] * len(counts), 0.05) is None


def test_latency_verdict_needs_enough_requests() -> None:
    from modelfleet.core.latency import LATENCY_BOUNDS, latency_verdict

    budgets = {"p50": 20.0, "p95": 50.0, "p99": 100.0}
    one = [0] * (len(LATENCY_BOUNDS) + 1)
    one[LATENCY_BOUNDS.index(0.025)] = 1  # a single 24 ms probe: no verdict, not a breach
    sketch = LatencySketch()
    sketch.add(0.024)
    v = latency_verdict(one, sketch, budgets, min_requests=50)
    assert v.verdict == "INSUFFICIENT_DATA" and v.breaches == () and v.p95_ms == pytest.approx(24, rel=0.01)
    many = [0] * (len(LATENCY_BOUNDS) + 1)
    many[LATENCY_BOUNDS.index(0.01)] = 93
    many[LATENCY_BOUNDS.index(0.075)] = 7  # 7 % slower than 50 ms: p95 over budget, p99 not (none over 100)
    v = latency_verdict(many, None, budgets, min_requests=50)
    assert v.verdict == "SLO_BREACH" and v.breaches == ("p95",) and v.over["p99"] == 0.0
    many[LATENCY_BOUNDS.index(0.075)] = 5  # exactly 5 %: within budget
    many[LATENCY_BOUNDS.index(0.01)] = 95
    assert latency_verdict(many, None, budgets, min_requests=50).verdict == "OK"


def test_minus_is_the_window_between_two_states() -> None:
    a = LatencySketch()
    a.add_many([0.01] * 10)
    b = a.copy()
    b.add_many([0.05] * 5)
    d = b.minus(a)
    assert d is not None and d.count == 5 and d.quantile(0.5) == pytest.approx(0.05, rel=0.01)
    assert a.minus(b) is None  # not a prefix: counters reset
