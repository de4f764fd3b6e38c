"""Drift verdicts of one model version over one window of counts: per feature, per dataset, per group.

Per feature (:class:`FeatureResult`):

- the *test* is the configured one, else Evidently's choice by kind and reference size
  (:func:`modelfleet.core.stattests.default_test`);
- a verdict needs **significance and effect size**: ``DRIFT`` when the significance test's p-value (KS for numeric,
  chi-square for categorical features) is below ``alpha`` *and* the effect passes its threshold. The effect is
  the test's own statistic when the test is a distance (Wasserstein, Jensen-Shannon, PSI, KL, unseen share), and
  the normed Wasserstein distance (numeric) or the Jensen-Shannon distance (categorical) at 0.1 when the test is
  itself a p-value; so a huge window never flags a negligible shift, and a tiny one never flags noise;
- fewer than ``min_rows`` live rows: ``INSUFFICIENT_DATA``, nothing is guessed.

Dataset (:class:`DriftReport`): ``DRIFT`` when at least ``dataset_drift_share`` of the decided features drift,
``INSUFFICIENT_DATA`` when none could be decided.

Prediction drift per group (:class:`GroupResult`): each group's share of the positive class in the window
against the reference's, with Wilson intervals at confidence ``1 - alpha / G`` (Bonferroni over the ``G`` groups
compared); ``SHIFT`` when Newcombe's interval for the difference of the two shares (built from both Wilson
intervals, so the reference's own uncertainty counts) excludes 0 *and* the shares differ by at least
``min_rate_shift``; groups with fewer than ``min_group_rows`` live rows are ``INSUFFICIENT_DATA``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelfleet.core.drift import CategoricalBins, FeatureProfile, NumericBins, ReferenceProfile
from modelfleet.core.drift_counts import CountsLayout
from modelfleet.core.monitor_policy import DriftPolicy
from modelfleet.core.stattests import (
    CATEGORICAL,
    NUMERIC,
    Binned,
    default_test,
    effect_test,
    get_test,
    newcombe_difference,
    significance_test,
    wilson_interval,
)

DRIFT = "DRIFT"
NO_DRIFT = "NO_DRIFT"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
SHIFT = "SHIFT"
OK = "OK"
FEATURE_VERDICTS = (NO_DRIFT, DRIFT, INSUFFICIENT_DATA)
GROUP_VERDICTS = (OK, SHIFT, INSUFFICIENT_DATA)
EXPLAIN_TESTS = ("ks", "wasserstein", "chisquare", "psi", "jensenshannon", "kl", "unseen")
PREDICTION = "<prediction>"
POSITIVE_NAMES = (("0", "1"), ("false", "true"), ("no", "yes"), ("negative", "positive"))


def _num(x: Any) -> float | None:
    v = float(x)
    return None if math.isnan(v) else v


@dataclass(frozen=True)
class FeatureResult:
    """One feature's verdict with what it rests on (``statistics`` holds every applicable test, for --explain).

    ``bins``, ``reference_shares`` and ``current_shares`` are what a picture of the shift draws side by side.
    """

    feature: str
    kind: str
    verdict: str
    test: str
    statistic: float | None
    threshold: float
    p_value: float | None
    alpha: float
    effect_test: str
    effect: float | None
    effect_threshold: float
    rows: int
    reference_rows: int
    unseen_share: float | None = None
    ignored: bool = False
    statistics: dict[str, float | None] = field(default_factory=dict)
    bins: tuple[str, ...] = ()
    reference_shares: tuple[float, ...] = ()
    current_shares: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GroupResult:
    group: str
    verdict: str
    rows: int
    positives: int
    share: float | None
    interval: tuple[float, float] | None  # Wilson, live window, at ``confidence``
    reference_rows: int
    reference_positives: int
    reference_share: float | None
    reference_interval: tuple[float, float] | None
    difference: tuple[float, float] | None  # Newcombe's interval of share - reference_share
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Drift of one model version over one window (one node, or the fleet merged)."""

    model: str
    version: str
    rows: int
    verdict: str  # dataset verdict: DRIFT | NO_DRIFT | INSUFFICIENT_DATA
    drifted: tuple[str, ...]
    drift_share: float | None
    dataset_drift_share: float
    features: tuple[FeatureResult, ...]
    prediction: FeatureResult | None
    positive_class: str | None
    groups: tuple[GroupResult, ...]
    groups_note: str | None = None
    alpha: float = 0.005

    @property
    def shifted_groups(self) -> tuple[str, ...]:
        return tuple(g.group for g in self.groups if g.verdict == SHIFT)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shifted_groups"] = list(self.shifted_groups)
        return out


def _binned(fp: FeatureProfile, current: np.ndarray) -> Binned:
    ref = np.asarray(fp.reference_counts, dtype=np.int64)
    if isinstance(fp.bins, NumericBins):
        return Binned(NUMERIC, ref, current, np.asarray(fp.bins.edges, dtype=float), fp.std)
    assert isinstance(fp.bins, CategoricalBins)
    return Binned(CATEGORICAL, ref, current, new_bin=len(fp.bins.categories) + 1)


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = float(counts.sum())
    return tuple(float(c) / total for c in counts) if total > 0 else tuple(0.0 for _ in counts)


def feature_result(fp: FeatureProfile, current: np.ndarray, policy: DriftPolicy, *,
                   name: str | None = None) -> FeatureResult:
    """The verdict of one feature (or of the predictions, binned the same way) on ``current`` counts."""
    data = _binned(fp, np.asarray(current, dtype=np.int64))
    kind = data.kind
    fpol = policy.feature(fp.name)
    ref_rows = int(data.reference.sum())
    rows = int(data.current.sum())
    configured = fpol.test or (policy.numeric_test if kind == NUMERIC else policy.categorical_test)
    test_name = configured or default_test(kind, ref_rows, fp.distinct)
    test = get_test(test_name)
    if kind not in test.kinds:  # a default for the other kind, e.g. numeric_test on a categorical feature
        test_name = default_test(kind, ref_rows, fp.distinct)
        test = get_test(test_name)
    threshold = fpol.threshold if fpol.threshold is not None else (
        test.default_threshold if test.default_threshold is not None else policy.alpha)
    stats: dict[str, float | None] = {}
    for t in EXPLAIN_TESTS:
        st = get_test(t)
        if kind in st.kinds:
            stats[t] = _num(st.compute(data).statistic)
    statistic = stats.get(test_name)
    sig_name = significance_test(kind)
    p_value = stats.get(sig_name)
    if test.measures == "p_value":
        eff_name = effect_test(kind)
        eff_threshold = float(get_test(eff_name).default_threshold or 0.1)
        alpha = threshold
    else:
        eff_name, eff_threshold, alpha = test_name, threshold, policy.alpha
    effect = stats.get(eff_name)
    if rows < policy.min_rows or ref_rows == 0:
        verdict = INSUFFICIENT_DATA
    else:
        significant = p_value is not None and p_value < alpha
        large = effect is not None and get_test(eff_name).drifted(effect, eff_threshold)
        verdict = DRIFT if significant and large else NO_DRIFT
    return FeatureResult(
        feature=name or fp.name, kind=kind, verdict=verdict, test=test_name, statistic=statistic,
        threshold=float(threshold), p_value=p_value, alpha=float(alpha), effect_test=eff_name, effect=effect,
        effect_threshold=eff_threshold, rows=rows, reference_rows=ref_rows,
        unseen_share=stats.get("unseen") if kind == CATEGORICAL else None, ignored=fpol.ignore, statistics=stats,
        bins=tuple(fp.bins.labels()), reference_shares=_shares(data.reference), current_shares=_shares(data.current),
    )


def positive_class(profile: ReferenceProfile, configured: str | None) -> tuple[int | None, str | None, str | None]:
    """(index in the prediction bins, class label, note when there is none)."""
    bins = profile.prediction
    if not isinstance(bins, CategoricalBins):
        return None, None, "predictions are not classes (or were not profiled): no positive share per group"
    cats = bins.categories
    if configured is not None:
        if configured not in cats:
            return None, None, (f"positive_class {configured!r} is not among the reference predictions "
                                f"({', '.join(cats)})")
        return cats.index(configured), configured, None
    lowered = tuple(sorted(c.lower() for c in cats))
    for pair in POSITIVE_NAMES:
        if lowered == pair:
            label = next(c for c in cats if c.lower() == pair[1])
            return cats.index(label), label, None
    return None, None, f"set positive_class for this model (predictions: {', '.join(cats[:8])})"


def group_results(profile: ReferenceProfile, by_group: np.ndarray, policy: DriftPolicy
                  ) -> tuple[tuple[GroupResult, ...], str | None, str | None]:
    """Per-group positive shares of a window (``groups x prediction bins``) against the reference's."""
    if profile.group_bins is None or profile.group_reference is None:
        return (), None, "no group column in the profile (version tag modelfleet.group_column)"
    index, label, note = positive_class(profile, policy.positive_class)
    if index is None:
        return (), None, note
    labels = profile.group_bins.labels()
    ref = np.asarray(profile.group_reference, dtype=np.int64)
    live = np.asarray(by_group, dtype=np.int64)
    rows = live.sum(axis=1)
    ref_rows = ref.sum(axis=1)
    compared = [g for g in range(len(labels)) if rows[g] >= policy.min_group_rows and ref_rows[g] > 0]
    confidence = 1.0 - policy.alpha / max(len(compared), 1)
    out: list[GroupResult] = []
    for g, name in enumerate(labels):
        if rows[g] == 0 and ref_rows[g] == 0:
            continue
        k, n = int(live[g, index]), int(rows[g])
        rk, rn = int(ref[g, index]), int(ref_rows[g])
        interval = tuple(float(x) for x in wilson_interval(k, n, confidence)) if n else None
        ref_interval = tuple(float(x) for x in wilson_interval(rk, rn, confidence)) if rn else None
        difference = None
        if g in compared:
            lo, hi = newcombe_difference(k, n, rk, rn, confidence)
            difference = (float(lo), float(hi))
            share_gap = abs(k / n - rk / rn)
            excluded = difference[0] > 0 or difference[1] < 0
            verdict = SHIFT if excluded and share_gap >= policy.min_rate_shift else OK
        else:
            verdict = INSUFFICIENT_DATA
        out.append(GroupResult(
            group=name, verdict=verdict, rows=n, positives=k, share=k / n if n else None,
            interval=interval,  # type: ignore[arg-type]
            reference_rows=rn, reference_positives=rk, reference_share=rk / rn if rn else None,
            reference_interval=ref_interval,  # type: ignore[arg-type]
            difference=difference, confidence=confidence,
        ))
    return tuple(out), label, None


def evaluate(profile: ReferenceProfile, counts: np.ndarray, policy: DriftPolicy, *, model: str | None = None,
             version: str | None = None) -> DriftReport:
    """Every verdict of a window whose counts are laid out by :class:`CountsLayout` of ``profile``."""
    layout = CountsLayout.from_profile(profile)
    vector = np.asarray(counts, dtype=np.int64)
    if vector.shape != (layout.size,):
        raise ValueError(f"counts of length {vector.shape} do not fit the profile's layout ({layout.size})")
    features = tuple(feature_result(fp, layout.feature(vector, fp.name), policy) for fp in profile.features)
    decided = [f for f in features if f.verdict != INSUFFICIENT_DATA and not f.ignored]
    drifted = tuple(f.feature for f in decided if f.verdict == DRIFT)
    share = len(drifted) / len(decided) if decided else None
    if share is None:
        verdict = INSUFFICIENT_DATA
    else:
        verdict = DRIFT if share >= policy.dataset_drift_share and drifted else NO_DRIFT
    prediction = None
    if profile.prediction is not None and profile.prediction_reference is not None:
        pred_profile = FeatureProfile(PREDICTION, profile.prediction, list(profile.prediction_reference))
        prediction = feature_result(pred_profile, layout.predictions(vector), policy)
    groups: tuple[GroupResult, ...] = ()
    label = None
    note = None
    if layout.prediction_size and layout.group_size:
        groups, label, note = group_results(profile, layout.by_group(vector), policy)
    elif profile.group_column is None:
        note = "no group column in the profile (version tag modelfleet.group_column)"
    rows = max((f.rows for f in features), default=0)
    return DriftReport(
        model=model or profile.model or "?", version=version or profile.version or "?", rows=rows, verdict=verdict,
        drifted=drifted, drift_share=share, dataset_drift_share=policy.dataset_drift_share, features=features,
        prediction=prediction, positive_class=label, groups=groups, groups_note=note, alpha=policy.alpha,
    )
