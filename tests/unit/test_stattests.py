"""Drift statistics on binned counts: against scipy on raw samples, against hand-computed small cases, and the
false-alarm and power budgets by simulation (vectorised: thousands of windows per call, fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss
from scipy.spatial.distance import jensenshannon

from modelfleet.core.drift import CategoricalBins, FeatureProfile, NumericBins
from modelfleet.core.drift_verdict import DRIFT, INSUFFICIENT_DATA, NO_DRIFT, feature_result
from modelfleet.core.monitor_policy import DriftPolicy, FeaturePolicy
from modelfleet.core.stattests import (
    DEFAULT_ALPHA,
    REGISTRY,
    Binned,
    ChiSquare,
    KolmogorovSmirnov,
    WassersteinNormed,
    default_test,
    get_test,
    ks_pvalue,
    newcombe_difference,
    wilson_interval,
)


def _numeric(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> tuple[Binned, NumericBins]:
    b = NumericBins.fit(ref, bins)
    return Binned("numeric", b.count(ref), b.count(cur), np.asarray(b.edges), float(np.std(ref))), b


# -- against scipy on raw samples -------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5])
def test_binned_ks_is_within_the_documented_binning_error_of_scipy(shift: float) -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(0, 1, 4000), rng.normal(shift, 1, 1500)
    data, _ = _numeric(ref, cur)
    raw = ss.ks_2samp(ref, cur, method="asymp")
    binned = float(KolmogorovSmirnov.distance(data))
    largest_bin = max(np.max(data.reference / ref.size), np.max(data.current / cur.size))
    assert binned <= raw.statistic + 1e-12
    assert raw.statistic - binned <= largest_bin
    # same statistic, same p-value: ks_pvalue is scipy's at en = n*m/(n+m) within 3 % (relative)
    en = round(ref.size * cur.size / (ref.size + cur.size))
    ours = float(ks_pvalue(np.array([raw.statistic]), np.array([en]))[0])
    assert ours == pytest.approx(ss.kstwo.sf(raw.statistic, en), rel=0.03, abs=1e-12)


def test_ks_pvalue_is_scipys_exact_kstwo_on_small_windows() -> None:
    d = np.array([0.05, 0.2, 0.4])
    assert np.allclose(ks_pvalue(d, np.array([30, 30, 30])), ss.kstwo.sf(d, 30), rtol=1e-12)
    assert np.isnan(ks_pvalue(np.array([0.1]), np.array([0]))[0])


def test_chisquare_equals_scipy_contingency_on_raw_categories() -> None:
    rng = np.random.default_rng(5)
    cats = ["a", "b", "c", "d"]
    ref = rng.choice(cats, 3000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(cats, 800, p=[0.35, 0.3, 0.2, 0.15])
    b = CategoricalBins.fit(list(ref), 32)
    data = Binned("categorical", b.count(list(ref)), b.count(list(cur)), new_bin=len(b.categories) + 1)
    table = pd.crosstab(np.r_[np.zeros(ref.size), np.ones(cur.size)], np.r_[ref, cur]).to_numpy()
    expected = ss.chi2_contingency(table, correction=False).pvalue
    assert float(get_test("chisquare").compute(data).statistic) == pytest.approx(expected, rel=1e-12)


def test_wilson_interval_is_scipys() -> None:
    for k, n in ((0, 10), (7, 40), (40, 40), (512, 1000)):
        lo, hi = wilson_interval(k, n, 0.99)
        want = ss.binomtest(k, n).proportion_ci(0.99, method="wilson")
        assert (float(lo), float(hi)) == pytest.approx((want.low, want.high), abs=1e-12)


def test_jensen_shannon_and_wasserstein_match_scipy_where_the_binning_is_exact() -> None:
    ref = np.array([120, 80, 0, 300, 5])
    cur = np.array([60, 90, 10, 100, 0])
    data = Binned("categorical", ref, cur, new_bin=2)
    assert float(get_test("jensenshannon").compute(data).statistic) == pytest.approx(jensenshannon(ref, cur),
                                                                                     rel=1e-12)
    # continuous values: the binned distance (values spread evenly within a bin) is close to the raw one
    rng = np.random.default_rng(2)
    ref_v, cur_v = rng.normal(0, 1, 5000), rng.normal(0.3, 1, 2000)
    num, _ = _numeric(ref_v, cur_v)
    assert float(WassersteinNormed.distance(num)) == pytest.approx(ss.wasserstein_distance(ref_v, cur_v), rel=0.1)


# -- hand-computed small cases ----------------------------------------------------------------------------------


def test_small_cases_by_hand() -> None:
    ref = np.array([50, 50])
    cur = np.array([25, 75])
    data = Binned("categorical", ref, cur, new_bin=None)
    # PSI = (0.25-0.5) ln(0.25/0.5) + (0.75-0.5) ln(0.75/0.5)
    assert float(get_test("psi").compute(data).statistic) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    # KL(q || p) with +0.5 smoothing: q = (25.5/101, 75.5/101), p = (50.5/101, 50.5/101)
    q, p = np.array([25.5, 75.5]) / 101, np.array([50.5, 50.5]) / 101
    assert float(get_test("kl").compute(data).statistic) == pytest.approx(float(np.sum(q * np.log(q / p))))
    # chi-square on [[50, 50], [25, 75]]: expected 37.5/62.5 in each column, statistic 13.333..., 1 dof
    assert float(get_test("chisquare").compute(data).statistic) == pytest.approx(ss.chi2.sf(40 / 3, 1))
    # unseen share: the "new" bin
    cats = Binned("categorical", np.array([10, 10, 0, 0, 0]), np.array([5, 3, 0, 2, 0]), new_bin=3)
    assert float(get_test("unseen").compute(cats).statistic) == pytest.approx(0.2)
    # KS: CDFs (0.5, 1) vs (0.25, 1) on the finite bins [below, x, above] + nan
    ks = Binned("numeric", np.array([0, 50, 50, 0, 0]), np.array([0, 25, 75, 0, 0]), np.array([0.0, 1.0, 2.0]))
    assert float(KolmogorovSmirnov.distance(ks)) == pytest.approx(0.25)
    # Wasserstein: the CDF difference goes 0 -> 0.25 over [0, 1] and 0.25 -> 0 over [1, 2]: area 0.25
    assert float(WassersteinNormed.distance(ks)) == pytest.approx(0.25)


def test_chisquare_pools_sparse_bins() -> None:
    ref, cur = ChiSquare.pooled(np.array([500.0, 300.0, 5.0, 2.0]), np.array([40.0, 30.0, 1.0, 0.0]))
    # expected counts in the smaller sample: 43.7, 26.7, 0.49, 0.16: the two sparse bins pooled are still
    # sparse (0.65), so the next smallest joins them
    assert ref.tolist() == [307.0, 500.0] and cur.tolist() == [31.0, 40.0]


def test_defaults_follow_evidentlys_rule() -> None:
    assert default_test("numeric", 1000, 50) == "ks" and default_test("numeric", 1001, 50) == "wasserstein"
    assert default_test("numeric", 500, 4) == "chisquare" and default_test("numeric", 5000, 4) == "jensenshannon"
    assert default_test("categorical", 800, 10) == "chisquare"
    assert default_test("categorical", 8000, 10) == "jensenshannon"
    assert {"ks", "wasserstein", "chisquare", "psi", "jensenshannon", "kl", "unseen"} <= set(REGISTRY)


def test_newcombe_interval_contains_the_difference_and_shrinks_with_rows() -> None:
    lo, hi = newcombe_difference(30, 100, 20, 100, 0.95)
    assert lo < 0.1 < hi
    lo2, hi2 = newcombe_difference(3000, 10000, 2000, 10000, 0.95)
    assert lo2 > 0 and hi2 - lo2 < hi - lo


# -- false alarms and power (simulation) ------------------------------------------------------------------------

WINDOWS = (50, 200, 1_000, 10_000, 100_000)
REPS = 2_000


def _normal_windows(rng: np.random.Generator, n_ref: int, m: int, shift: float, reps: int) -> np.ndarray:
    """``reps`` windows of ``m`` rows from N(shift, 1), counted on the bins of a fresh N(0, 1) reference each
    (the multinomial of the true bin masses is exactly the counts of raw draws); returns (ks p, W) pairs."""
    from scipy.stats import norm

    refs = rng.normal(0.0, 1.0, (reps, n_ref))
    levels = np.union1d(np.linspace(0, 1, 11), (0.01, 0.05, 0.95, 0.99))
    edges = np.quantile(refs, levels, axis=1).T  # (reps, 15)
    ref_counts = np.stack([np.histogram(refs[i], edges[i])[0] for i in range(reps)])
    ref_counts[:, -1] += 0  # the last interior bin is closed: np.histogram already counts the maximum in it
    p = np.diff(norm.cdf(edges - shift), axis=1)
    below = norm.cdf(edges[:, 0] - shift)
    above = 1.0 - norm.cdf(edges[:, -1] - shift)
    probs = np.column_stack([below, p, above])
    live = np.stack([rng.multinomial(m, probs[i] / probs[i].sum()) for i in range(reps)])
    zeros = np.zeros((reps, 1), dtype=np.int64)
    ref_full = np.column_stack([zeros, ref_counts, zeros, zeros])
    cur_full = np.column_stack([live, zeros])
    ps, ws = [], []
    for i in range(reps):  # edges differ per window; the tests themselves are vectorised over windows of one
        data = Binned("numeric", ref_full[i], cur_full[i], edges[i], float(np.std(refs[i])))
        ps.append(float(get_test("ks").compute(data).statistic))
        ws.append(float(get_test("wasserstein").compute(data).statistic))
    return np.column_stack([ps, ws])


def _drift_rate(results: np.ndarray) -> float:
    return float(np.mean((results[:, 0] < DEFAULT_ALPHA) & (results[:, 1] >= 0.1)))


@pytest.mark.parametrize("m", WINDOWS)
def test_numeric_false_alarms_at_most_one_percent(m: int) -> None:
    rate = _drift_rate(_normal_windows(np.random.default_rng(100 + m), 2_000, m, 0.0, REPS // 4))
    assert rate <= 0.01


@pytest.mark.parametrize("m", WINDOWS)
def test_categorical_false_alarms_at_most_one_percent(m: int) -> None:
    rng = np.random.default_rng(200 + m)
    shares = np.array([0.38, 0.17, 0.15, 0.12, 0.08, 0.10])
    ref = np.column_stack([rng.multinomial(2_000, shares, size=REPS), np.zeros((REPS, 3), dtype=np.int64)])
    cur = np.column_stack([rng.multinomial(m, shares, size=REPS), np.zeros((REPS, 3), dtype=np.int64)])
    data = Binned("categorical", ref, cur, new_bin=7)
    p = get_test("chisquare").compute(data).statistic
    js = get_test("jensenshannon").compute(data).statistic
    assert float(np.mean((p < DEFAULT_ALPHA) & (js >= 0.1))) <= 0.01


def test_power_for_a_quarter_standard_deviation_at_1000_rows() -> None:
    rate = _drift_rate(_normal_windows(np.random.default_rng(7), 2_000, 1_000, 0.25, 400))
    assert rate >= 0.90


# -- verdicts of one feature --------------------------------------------------------------------------------------


def _profile(values: np.ndarray) -> FeatureProfile:
    b = NumericBins.fit(values, 10)
    return FeatureProfile("x", b, [int(c) for c in b.count(values)], float(np.std(values)), 1000)


def test_feature_verdicts_need_significance_effect_and_rows() -> None:
    rng = np.random.default_rng(3)
    fp = _profile(rng.normal(0, 1, 50_000))
    b = fp.bins
    policy = DriftPolicy()
    shifted = feature_result(fp, b.count(rng.normal(0.5, 1, 2000)), policy)
    assert shifted.verdict == DRIFT and shifted.test == "wasserstein" and shifted.p_value is not None
    assert shifted.effect_test == "wasserstein" and shifted.effect is not None and shifted.effect >= 0.1
    same = feature_result(fp, b.count(rng.normal(0, 1, 2000)), policy)
    assert same.verdict == NO_DRIFT
    # a tiny but real shift on a huge window: significant, too small to matter
    tiny = feature_result(fp, b.count(rng.normal(0.06, 1, 200_000)), policy)
    assert tiny.p_value is not None and tiny.p_value < policy.alpha and tiny.verdict == NO_DRIFT
    few = feature_result(fp, b.count(rng.normal(3, 1, 10)), policy)
    assert few.verdict == INSUFFICIENT_DATA
    # per-feature override: PSI at 0.2
    psi = feature_result(fp, b.count(rng.normal(0.5, 1, 2000)),
                         DriftPolicy(features={"x": FeaturePolicy(test="psi", threshold=0.2)}))
    assert psi.test == "psi" and psi.threshold == 0.2 and psi.effect_test == "psi"
