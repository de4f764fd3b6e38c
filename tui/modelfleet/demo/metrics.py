"""Model metrics of the demo: cost-based threshold, calibration error and the two fairness measures.

Plain numpy, so they can be checked on hand-made examples. The fairness check is Equal Opportunity as in the
lending case: the false-positive rate (a repaid loan flagged as high-risk) per applicant group, and the largest
absolute difference between any two groups (``fpr_gap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

COST_FN = 5.0  # a flagged-as-safe loan that defaults
COST_FP = 1.0  # a repaid loan sent to manual review


def expected_cost(y_true: Any, flagged: Any, cost_fn: float = COST_FN, cost_fp: float = COST_FP) -> float:
    """Mean cost per loan: ``cost_fn`` per missed default, ``cost_fp`` per needless review."""
    y = np.asarray(y_true).astype(bool)
    f = np.asarray(flagged).astype(bool)
    return float((cost_fn * np.sum(y & ~f) + cost_fp * np.sum(~y & f)) / max(len(y), 1))


def choose_threshold(
    y_true: Any, proba: Any, cost_fn: float = COST_FN, cost_fp: float = COST_FP
) -> float:
    """The probability threshold (flag when ``proba >= t``) with the least expected cost on this data.

    Candidates are the midpoints between distinct scores plus both ends; ties go to the threshold closest to
    the cost-optimal one for calibrated scores, ``cost_fp / (cost_fp + cost_fn)``.
    """
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(proba, dtype=float)
    if y.shape != p.shape or y.size == 0:
        raise ValueError("y_true and proba must be non-empty and of the same length")
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # Flag the top k scores for k = 0..n: FN = positives not flagged, FP = negatives flagged.
    tp = np.concatenate([[0], np.cumsum(y_sorted)])
    fp = np.concatenate([[0], np.cumsum(~y_sorted)])
    fn = tp[-1] - tp
    cost = cost_fn * fn + cost_fp * fp
    # cuts[k] flags exactly the top k scores: above the maximum, midpoints between distinct scores, the minimum.
    valid = np.ones(len(cost), dtype=bool)
    valid[1:-1] = p_sorted[:-1] != p_sorted[1:]
    cuts = np.concatenate(
        [[np.nextafter(p_sorted[0], np.inf)], (p_sorted[:-1] + p_sorted[1:]) / 2.0, [p_sorted[-1]]]
    )
    best = np.min(cost[valid])
    candidates = cuts[valid & (cost == best)]
    prior = cost_fp / (cost_fp + cost_fn)
    return float(candidates[np.argmin(np.abs(candidates - prior))])


def expected_calibration_error(y_true: Any, proba: Any, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins: sum of |bin share| * |observed rate - mean score|."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(ece)


def false_positive_rates(y_true: Any, flagged: Any, groups: Any) -> dict[str, float]:
    """False-positive rate per group (groups without any negative example are left out)."""
    y = np.asarray(y_true).astype(bool)
    f = np.asarray(flagged).astype(bool)
    g = np.asarray(groups)
    rates: dict[str, float] = {}
    for group in sorted({str(v) for v in g}):
        negatives = (g.astype(str) == group) & ~y
        if negatives.any():
            rates[group] = float(f[negatives].mean())
    return rates


def positive_rates(flagged: Any, groups: Any) -> dict[str, float]:
    """Share of flagged loans per group."""
    f = np.asarray(flagged).astype(bool)
    g = np.asarray(groups).astype(str)
    return {group: float(f[g == group].mean()) for group in sorted(set(g.tolist()))}


def max_gap(rates: dict[str, float] | Sequence[float]) -> float:
    """Largest absolute difference between any two values (0.0 for fewer than two)."""
    values = list(rates.values()) if isinstance(rates, dict) else list(rates)
    return float(max(values) - min(values)) if len(values) >= 2 else 0.0


def fpr_gap(y_true: Any, flagged: Any, groups: Any) -> float:
    """Equal Opportunity check: the largest difference of false-positive rates between groups."""
    return max_gap(false_positive_rates(y_true, flagged, groups))


def demographic_parity_difference(flagged: Any, groups: Any) -> float:
    """The largest difference of flag rates between groups."""
    return max_gap(positive_rates(flagged, groups))
