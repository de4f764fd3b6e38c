"""Fairness metrics against hand-computed confusion matrices, the threshold search, and Fairlearn as the yardstick."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from modelfleet.core import fairness as f
from modelfleet.core.approvals import thresholds_digest

# Hand-made: 13 decisions in three groups.
#   A: y 0 0 0 0 1, flagged 1 0 0 0 1 -> TP 1 FP 1 TN 3 FN 0 -> FPR 1/4, TPR 1, flag rate 2/5
#   B: y 0 0 1,     flagged 1 1 0     -> TP 0 FP 2 TN 0 FN 1 -> FPR 2/2, TPR 0, flag rate 2/3
#   C: y 0 0 0 0 0, flagged 0 0 0 0 0 -> TP 0 FP 0 TN 5 FN 0 -> FPR 0/5, TPR -, flag rate 0
Y = [0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0]
FLAGGED = [1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
GROUPS = ["A", "A", "A", "A", "A", "B", "B", "B", "C", "C", "C", "C", "C"]


def test_group_confusion_matrices_by_hand() -> None:
    stats = f.group_stats(Y, FLAGGED, GROUPS)
    assert {g: (s.counts.tp, s.counts.fp, s.counts.tn, s.counts.fn) for g, s in stats.items()} == {
        "A": (1, 1, 3, 0), "B": (0, 2, 0, 1), "C": (0, 0, 5, 0)}
    assert stats["A"].fpr.value == 0.25 and stats["B"].fpr.value == 1.0 and stats["C"].fpr.value == 0.0
    assert stats["A"].tpr.value == 1.0 and stats["B"].tpr.value == 0.0 and math.isnan(stats["C"].tpr.value)
    assert stats["A"].positive_rate.value == pytest.approx(0.4)
    gap = f.fpr_gap(stats)
    assert (gap.value, gap.high_group, gap.low_group) == (1.0, "B", "C")
    parity = f.demographic_parity_difference(stats)
    assert parity.value == pytest.approx(2 / 3) and (parity.high_group, parity.low_group) == ("B", "C")
    # 5:1 cost: one FN (5) and three FPs (3) over 13 decisions
    assert f.expected_cost(Y, FLAGGED, 5.0) == pytest.approx(8 / 13)
    assert f.confusion(Y, FLAGGED) == f.Confusion(tp=1, fp=3, tn=8, fn=1)


def test_a_group_without_negatives_has_no_fpr_and_is_left_out_of_the_gap() -> None:
    stats = f.group_stats([0, 0, 1, 1], [1, 0, 1, 1], ["A", "B", "C", "C"])
    assert math.isnan(stats["C"].fpr.value)
    assert f.fpr_gap(stats).value == 1.0
    assert f.fpr_gap(f.group_stats([0], [1], ["A"])).value == 0.0


def test_wilson_interval_matches_the_textbook_values() -> None:
    # 2 of 10 at 95%: (0.0567, 0.5098); 0 of 10: lower edge exactly 0, upper 0.2775
    r = f.wilson(2, 10)
    assert (round(r.low, 4), round(r.high, 4)) == (0.0567, 0.5098)
    z = f.wilson(0, 10)
    assert z.low == 0.0 and round(z.high, 4) == 0.2775
    assert math.isnan(f.wilson(0, 0).value)


def test_calibration_and_the_cost_threshold() -> None:
    assert f.expected_calibration_error([1, 0, 1, 0], [0.8, 0.8, 0.8, 0.8]) == pytest.approx(0.3)
    # Flag top k of [.4 .3 .2 .1] with y = [1 0 1 0]: cost(k) = 10, 5, 6, 1, 2 -> flag the top 3.
    t = f.choose_threshold([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 5.0)
    assert t == pytest.approx(0.15)
    assert f.choose_threshold([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 1.0) > t
    rng = np.random.default_rng(1)
    p = rng.random(50_000)
    assert f.choose_threshold(rng.random(50_000) < p, p, 5.0) == pytest.approx(1 / 6, abs=0.04)


def test_thresholds_apply_per_group_and_digest_like_approvals_do() -> None:
    th = f.GroupThresholds("g", {"A": 0.5, "B": 0.2}, default=0.9)
    flags = th.apply([0.4, 0.6, 0.3, 0.1, 0.95, 0.5], ["A", "A", "B", "B", "Z", "Z"])
    assert flags.tolist() == [False, True, True, False, True, False]
    assert th.sha256 == thresholds_digest(th.to_dict())
    assert f.GroupThresholds.from_json(th.to_json()) == th
    for bad in ({"column": "g", "thresholds": {}, "default": 0.5}, {"column": "g", "thresholds": {"A": "x"},
                                                                       "default": 0.5},
                {"thresholds": {"A": 0.5}, "default": 0.5}, {"column": "g", "thresholds": {"A": 0.5}}):
        with pytest.raises(ValueError):
            f.GroupThresholds.from_dict(bad)


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores and groups where group B's scores run higher at equal risk (an FPR gap to repair)."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
    risk = rng.beta(2, 5, n)
    y = rng.random(n) < risk
    shift = np.select([groups == "B", groups == "C"], [0.15, -0.05], 0.0)
    proba = np.clip(risk + shift + rng.normal(0, 0.08, n), 0.001, 0.999)
    return y, proba, groups


def test_search_reaches_the_tolerance_at_least_cost_among_equal_fpr_rules() -> None:
    y, p, g = _scores(6000, 3)
    before = f.outcome(y, p >= f.choose_threshold(y, p, 5.0), g, 5.0)
    assert before.fpr_gap.value > 0.15
    result = f.search_thresholds(y, p, g, column="g", cost_ratio=5.0, tolerance=0.02)
    assert result.feasible and result.after.fpr_gap.value <= 0.02
    # Brute force over one shared target FPR: no single-target rule within the tolerance is cheaper.
    for target in np.linspace(0.05, 0.95, 19):
        table = {}
        for name in ("A", "B", "C"):
            neg = np.sort(p[(g == name) & ~y])[::-1]
            table[name] = neg[max(round(target * len(neg)) - 1, 0)]
        flags = f.GroupThresholds("g", table, 0.5).apply(p, g)
        out = f.outcome(y, flags, g, 5.0)
        if out.fpr_gap.value <= 0.02:
            assert result.after.cost <= out.cost + 1e-9


def test_search_on_groups_too_small_says_so() -> None:
    y = np.array([0, 1, 0, 1, 0, 0, 1])
    p = np.array([0.2, 0.9, 0.8, 0.3, 0.1, 0.6, 0.7])
    g = np.array(["A", "A", "B", "B", "C", "C", "C"])
    result = f.search_thresholds(y, p, g, column="g", tolerance=0.01, grid=[0.25, 0.75])
    assert not result.feasible
    with pytest.raises(ValueError):
        f.search_thresholds(y, p, g, column="g", tolerance=0)


def _scores_model() -> Any:
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Scores(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        """A prefit estimator whose positive-class probability is the input's score column."""

        def fit(self, X: Any, y: Any) -> Any:
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X: Any) -> np.ndarray:
            s = np.asarray(X["score"], dtype=float)
            return np.column_stack([1 - s, s])

        def predict(self, X: Any) -> np.ndarray:
            return (np.asarray(X["score"]) >= 0.5).astype(int)

    return Scores().fit(None, None)


class _Scores:
    """A fitted binary model whose positive-class probability is the input's score column."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X: Any) -> np.ndarray:
        s = np.asarray(X["score"], dtype=float)
        return np.column_stack([1 - s, s])

    def predict(self, X: Any) -> np.ndarray:
        return (np.asarray(X["score"]) >= 0.5).astype(int)


def test_against_fairlearn_threshold_optimizer_on_the_demo_evaluation_set() -> None:
    """Fairlearn's ThresholdOptimizer (false_positive_rate_parity) on the same scores of the demo champion, with the
    5:1 cost as its objective (accuracy on data where each positive counts five times); its decisions are random,
    so it is judged by the mean realised FPR gap and cost over 50 random states (0.0037 and 0.5468 per decision).

    * At the policy's tolerance (0.02) ours costs less (0.5440) and both gaps are within 0.02 (ours 0.0198).
    * Held to Fairlearn's own realised gap (tolerance 0.0037) ours has the smaller gap (0.0036) and costs 0.5472,
      0.0004 (0.07%) more than Fairlearn. Both "gap and cost no worse" at once is out of reach of deterministic
      per-group thresholds on this data, not of our search: the search is exact (it finds the least cost of every
      such rule within a gap), and its frontier here is 0.5478 at gap 0.0008, 0.5472 at 0.0036, 0.5467 at 0.0049,
      0.5440 at 0.0198. Fairlearn reaches exact parity in expectation (expected cost 0.5466 at expected gap 0)
      by flipping a coin between two thresholds per group: points on the convex hull of each group's ROC curve,
      which no single threshold reaches; its realised gap is that coin's sampling noise. To match its cost, ours
      needs a gap of 0.0049, 1.3 times its mean realised gap (docs/governance.md)."""
    import pandas as pd
    from fairlearn.postprocessing import ThresholdOptimizer

    from modelfleet.demo import GROUP_COLUMN, TARGET_COLUMN
    from modelfleet.demo.data import INPUT_COLUMNS, make_loans, split
    from modelfleet.demo.seed import EVALUATION_ROWS, EVALUATION_SEED
    from modelfleet.demo.train import VERSIONS, train_version

    train, valid, test = split(make_loans(6_000))
    champion = train_version(VERSIONS[1], train, valid, test)
    data = make_loans(EVALUATION_ROWS, seed=EVALUATION_SEED)
    y = data[TARGET_COLUMN].to_numpy().astype(bool)
    g = data[GROUP_COLUMN].to_numpy()
    p = champion.model.predict_proba(data[list(INPUT_COLUMNS)])[:, 1]
    weight = np.where(y, 5, 1)
    optimizer = ThresholdOptimizer(estimator=_scores_model(), constraints="false_positive_rate_parity",
                                   objective="accuracy_score", prefit=True, predict_method="predict_proba")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.fit(pd.DataFrame({"score": np.repeat(p, weight)}), np.repeat(y, weight).astype(int),
                      sensitive_features=np.repeat(g, weight))
        theirs = [f.outcome(y, optimizer.predict(pd.DataFrame({"score": p}), sensitive_features=g,
                                                 random_state=seed).astype(bool), g, 5.0) for seed in range(50)]
    their_gap = float(np.mean([t.fpr_gap.value for t in theirs]))
    their_cost = float(np.mean([t.cost for t in theirs]))
    assert max(t.fpr_gap.value for t in theirs) <= 0.02

    ours = f.search_thresholds(y, p, g, column=GROUP_COLUMN, cost_ratio=5.0, tolerance=0.02)
    assert ours.after.fpr_gap.value <= 0.02
    assert ours.after.cost <= their_cost

    matched = f.search_thresholds(y, p, g, column=GROUP_COLUMN, cost_ratio=5.0, tolerance=their_gap)
    assert matched.feasible and matched.after.fpr_gap.value <= their_gap
    assert matched.after.cost - their_cost <= 0.001  # the price of deterministic thresholds: under 0.2%
    relaxed = f.search_thresholds(y, p, g, column=GROUP_COLUMN, cost_ratio=5.0, tolerance=1.5 * their_gap)
    assert relaxed.after.cost <= their_cost  # a gap 1.5 times Fairlearn's mean buys its cost

    unadjusted = f.outcome(y, champion.model.predict(data[list(INPUT_COLUMNS)]).astype(bool), g, 5.0)
    assert unadjusted.fpr_gap.value > 0.1  # there was something to repair


def test_of_the_least_cost_rules_the_search_takes_the_tightest_gap() -> None:
    """Costs are counts, so many windows tie at the least cost; the search takes the one whose rates lie closest
    together: no tolerance below the gap it reaches costs as little."""
    y, p, g = _scores(6000, 3)
    for tolerance in np.linspace(0.004, 0.03, 14):
        result = f.search_thresholds(y, p, g, column="g", cost_ratio=5.0, tolerance=float(tolerance))
        gap = result.after.fpr_gap.value
        assert result.feasible and gap <= tolerance
        if gap < 1e-9:
            continue
        tighter = f.search_thresholds(y, p, g, column="g", cost_ratio=5.0, tolerance=gap - 1e-9)
        assert not tighter.feasible or tighter.after.cost > result.after.cost + 1e-12, (tolerance, gap)


def test_thresholded_classifier_answers_in_the_models_labels() -> None:
    import pandas as pd

    model = _Scores()
    clf = f.ThresholdedClassifier(model, f.GroupThresholds("g", {"A": 0.3}, default=0.7))
    frame = pd.DataFrame({"score": [0.4, 0.4, 0.8], "g": ["A", "B", "B"]})
    assert clf.predict(frame).tolist() == [1, 0, 1]
    with pytest.raises(KeyError, match="'g'"):
        clf.predict(pd.DataFrame({"score": [0.4]}))
