"""Fairness and cost of a binary risk classifier (seed 003), and per-group thresholds that equalise them.

The lending case flags a loan as high-risk (the positive class, 1) for a manual review. A false positive (a repaid
loan flagged) is punitive to the applicant, so fairness is Equal Opportunity on the false-positive rate: the
FPR per group and the largest absolute difference between any two groups (``fpr_gap``). Cost is the mean cost
per decision with a false negative ``cost_ratio`` times as expensive as a false positive (5:1 in the case).

Everything here is plain numpy so that each number can be checked against a hand-made confusion matrix, and so
that the edge agent can import :class:`GroupThresholds` and :class:`ThresholdedClassifier` (the same code applies
the thresholds on the controller, in the probe's expected answer and on the nodes).

Threshold search (:func:`search_thresholds`): for each window ``[a, a + tolerance]`` of false-positive rates, with
``a`` every rate some group can reach, every group takes, among its cut points whose FPR lies in the window, the
one with the least cost; the window with the least total cost wins, and among windows of equal cost the one whose
chosen rates are closest together. So the realised FPR gap is at most ``tolerance`` on the data searched, no
deterministic per-group threshold rule within that gap costs less, and none of that least cost has a smaller gap.

Fairlearn's ``ThresholdOptimizer`` reaches exact parity in expectation by flipping a coin between two thresholds
per group (points on the convex hull of each group's ROC curve, which no single threshold reaches), so at the same
realised gap it is slightly cheaper than any deterministic per-group threshold rule: see docs/governance.md and
tests/unit/test_fairness.py for the numbers on the demo.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_COST_RATIO = 5.0  # false negative : false positive (seed 003)
DEFAULT_TOLERANCE = 0.02
THRESHOLDS_FORMAT = "modelfleet-thresholds/1"
Z_95 = 1.959963984540054


# -- counting ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """Counts of one confusion matrix (positive = flagged as high risk)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def negatives(self) -> int:
        return self.fp + self.tn

    @property
    def positives(self) -> int:
        return self.tp + self.fn


def _bools(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    return arr.astype(bool)


def confusion(y_true: Any, flagged: Any) -> Confusion:
    y = _bools(y_true, "y_true")
    f = _bools(flagged, "flagged")
    if y.shape != f.shape:
        raise ValueError("y_true and flagged must have the same length")
    return Confusion(tp=int(np.sum(y & f)), fp=int(np.sum(~y & f)), tn=int(np.sum(~y & ~f)),
                     fn=int(np.sum(y & ~f)))


@dataclass(frozen=True)
class Rate:
    """A proportion ``count / n`` with its Wilson score interval (95% by default); ``value`` is NaN when n = 0."""

    count: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.count / self.n if self.n else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"value": _round(self.value), "low": _round(self.low), "high": _round(self.high),
                "count": self.count, "n": self.n}


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def wilson(count: int, n: int, z: float = Z_95) -> Rate:
    """The Wilson score interval of ``count`` successes in ``n`` trials (no NaN edges at 0 or n)."""
    if n <= 0:
        return Rate(count, n, math.nan, math.nan)
    p = count / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Rate(count, n, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class GroupStats:
    """One group's confusion matrix and its rates with confidence intervals."""

    group: str
    counts: Confusion

    @property
    def fpr(self) -> Rate:
        return wilson(self.counts.fp, self.counts.negatives)

    @property
    def tpr(self) -> Rate:
        return wilson(self.counts.tp, self.counts.positives)

    @property
    def positive_rate(self) -> Rate:
        return wilson(self.counts.tp + self.counts.fp, self.counts.n)

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {"group": self.group, "n": c.n, "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn,
                "fpr": self.fpr.to_dict(), "tpr": self.tpr.to_dict(), "positive_rate": self.positive_rate.to_dict()}


def group_labels(groups: Any) -> np.ndarray:
    """Group values as strings (how thresholds and reports name them); missing values become ``"<missing>"``."""
    raw = np.asarray(groups, dtype=object)
    return np.array(["<missing>" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                     for v in raw.tolist()], dtype=object)


def group_stats(y_true: Any, flagged: Any, groups: Any) -> dict[str, GroupStats]:
    """Per-group confusion matrices, by group name (sorted)."""
    y = _bools(y_true, "y_true")
    f = _bools(flagged, "flagged")
    g = group_labels(groups)
    if not (y.shape == f.shape == g.shape):
        raise ValueError("y_true, flagged and groups must have the same length")
    return {name: GroupStats(name, confusion(y[g == name], f[g == name])) for name in sorted(set(g.tolist()))}


@dataclass(frozen=True)
class Gap:
    """The largest difference of a rate between two groups, and which groups hold the extremes."""

    value: float
    high_group: str | None
    low_group: str | None
    high: float = math.nan
    low: float = math.nan

    def describe(self) -> str:
        if self.high_group is None:
            return "fewer than two groups to compare"
        return f"{self.high_group} {self.high:.3f} vs {self.low_group} {self.low:.3f}"

    def to_dict(self) -> dict[str, Any]:
        return {"value": _round(self.value), "high_group": self.high_group, "low_group": self.low_group,
                "high": _round(self.high), "low": _round(self.low)}


def max_gap(rates: Mapping[str, float]) -> Gap:
    """Largest absolute difference between any two of ``rates`` (NaN rates are left out)."""
    valid = {k: v for k, v in rates.items() if not math.isnan(v)}
    if len(valid) < 2:
        return Gap(0.0, None, None)
    hi = max(valid, key=lambda k: valid[k])
    lo = min(valid, key=lambda k: valid[k])
    return Gap(float(valid[hi] - valid[lo]), hi, lo, valid[hi], valid[lo])


def fpr_gap(stats: Mapping[str, GroupStats]) -> Gap:
    """Equal Opportunity (seed 003): the largest difference of false-positive rates between groups."""
    return max_gap({g: s.fpr.value for g, s in stats.items()})


def tpr_gap(stats: Mapping[str, GroupStats]) -> Gap:
    return max_gap({g: s.tpr.value for g, s in stats.items()})


def demographic_parity_difference(stats: Mapping[str, GroupStats]) -> Gap:
    """The largest difference of flag (selection) rates between groups."""
    return max_gap({g: s.positive_rate.value for g, s in stats.items()})


def expected_cost(y_true: Any, flagged: Any, cost_ratio: float = DEFAULT_COST_RATIO) -> float:
    """Mean cost per decision: ``cost_ratio`` per missed positive (false negative), 1 per false positive."""
    c = confusion(y_true, flagged)
    return float((cost_ratio * c.fn + c.fp) / max(c.n, 1))


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


def gap_interval(y_true: Any, flagged: Any, groups: Any, *, seed: int, resamples: int = 200,
                 rate: str = "fpr") -> tuple[float, float]:
    """A bootstrap 95% interval of the FPR gap (or ``rate="positive_rate"``: the parity difference).

    Rows are resampled with ``numpy.random.default_rng(seed)``, so the same seed gives the same interval."""
    y = _bools(y_true, "y_true")
    f = _bools(flagged, "flagged")
    names, codes = np.unique(group_labels(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    k = len(names)
    gaps = np.empty(resamples)
    for i in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        c, yy, ff = codes[pick], y[pick], f[pick]
        if rate == "fpr":
            den = np.bincount(c[~yy], minlength=k)
            num = np.bincount(c[~yy & ff], minlength=k)
        else:
            den = np.bincount(c, minlength=k)
            num = np.bincount(c[ff], minlength=k)
        ok = den > 0
        r = num[ok] / den[ok]
        gaps[i] = float(r.max() - r.min()) if r.size >= 2 else 0.0
    return float(np.quantile(gaps, 0.025)), float(np.quantile(gaps, 0.975))


# -- thresholds ------------------------------------------------------------------------------------------------


def _cut_table(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For "flag the top k scores", k = 0..n at valid cuts: (threshold, false positives, false negatives, valid).

    ``threshold[k]`` flags exactly the top k scores with ``proba >= threshold``: above the maximum for k = 0,
    midpoints between distinct scores, the minimum for k = n. A cut inside a run of equal scores is invalid."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.concatenate([[0], np.cumsum(ys)])
    fp = np.concatenate([[0], np.cumsum(~ys)])
    fn = tp[-1] - tp
    valid = np.ones(len(ps) + 1, dtype=bool)
    valid[1:-1] = ps[:-1] != ps[1:]
    if len(ps) == 0:
        return np.array([math.inf]), fp, fn, valid
    cuts = np.concatenate([[np.nextafter(ps[0], np.inf)], (ps[:-1] + ps[1:]) / 2.0, [ps[-1]]])
    return cuts, fp, fn, valid


def choose_threshold(y_true: Any, proba: Any, cost_ratio: float = DEFAULT_COST_RATIO) -> float:
    """The probability threshold (flag when ``proba >= t``) with the least expected cost on this data.

    Ties go to the threshold closest to the cost-optimal one for calibrated scores, ``1 / (1 + cost_ratio)``.
    """
    y = _bools(y_true, "y_true")
    p = np.asarray(proba, dtype=float)
    if y.shape != p.shape or y.size == 0:
        raise ValueError("y_true and proba must be non-empty and of the same length")
    cuts, fp, fn, valid = _cut_table(y, p)
    cost = cost_ratio * fn + fp
    best = np.min(cost[valid])
    candidates = cuts[valid & (cost == best)]
    prior = 1.0 / (1.0 + cost_ratio)
    return float(candidates[np.argmin(np.abs(candidates - prior))])


@dataclass(frozen=True)
class GroupThresholds:
    """Per-group probability thresholds on the positive class: flag when ``proba >= thresholds[group]``.

    Rows whose group is not listed use ``default``. The canonical JSON (:meth:`to_json`) is what a release
    carries and what approvals bind (:attr:`sha256`)."""

    column: str
    thresholds: dict[str, float]
    default: float
    cost_ratio: float = DEFAULT_COST_RATIO
    format: str = THRESHOLDS_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "column": self.column,
                "thresholds": {k: float(v) for k, v in sorted(self.thresholds.items())},
                "default": float(self.default), "cost_ratio": float(self.cost_ratio)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def sha256(self) -> str:
        """What approvals bind (:func:`modelfleet.core.approvals.thresholds_digest` of :meth:`to_dict`)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, raw: Any) -> GroupThresholds:
        """Parse and check a thresholds object; ValueError names what is wrong."""
        if not isinstance(raw, Mapping):
            raise ValueError("thresholds must be a JSON object")
        if raw.get("format", THRESHOLDS_FORMAT) != THRESHOLDS_FORMAT:
            raise ValueError(f"thresholds format {raw.get('format')!r} is not {THRESHOLDS_FORMAT}")
        column = raw.get("column")
        table = raw.get("thresholds")
        if not isinstance(column, str) or not column:
            raise ValueError("thresholds need a 'column' naming the group column")
        if not isinstance(table, Mapping) or not table:
            raise ValueError("thresholds need a non-empty 'thresholds' object of group: probability")

        def prob(value: Any, where: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where} must be a finite number, not {value!r}")
            return float(value)

        thresholds = {str(k): prob(v, f"threshold of group {k!r}") for k, v in table.items()}
        default = prob(raw.get("default"), "default threshold")
        cost_ratio = prob(raw.get("cost_ratio", DEFAULT_COST_RATIO), "cost_ratio")
        return cls(column=column, thresholds=thresholds, default=default, cost_ratio=cost_ratio)

    @classmethod
    def from_json(cls, text: str) -> GroupThresholds:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"thresholds are not valid JSON: {exc}") from None
        return cls.from_dict(raw)

    def for_groups(self, groups: Any) -> np.ndarray:
        labels = group_labels(groups)
        return np.array([self.thresholds.get(g, self.default) for g in labels.tolist()], dtype=float)

    def apply(self, proba: Any, groups: Any) -> np.ndarray:
        """Flags (bool) for positive-class probabilities ``proba`` of rows in ``groups``."""
        p = np.asarray(proba, dtype=float)
        return np.asarray(p >= self.for_groups(groups))


class ThresholdedClassifier:
    """A fitted binary classifier whose ``predict`` applies :class:`GroupThresholds` to ``predict_proba``.

    Returns the model's own class labels (``classes_[1]`` when flagged), so answers look exactly like the
    model's. The input must hold the thresholds' group column (a DataFrame or a mapping of columns)."""

    def __init__(self, model: Any, thresholds: GroupThresholds) -> None:
        classes = getattr(model, "classes_", None)
        if not callable(getattr(model, "predict_proba", None)) or classes is None or len(classes) != 2:
            raise ValueError("per-group thresholds need a binary classifier with predict_proba and classes_")
        self.model = model
        self.thresholds = thresholds
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X: Any) -> Any:
        return self.model.predict_proba(X)

    def flags(self, X: Any) -> np.ndarray:
        column = self.thresholds.column
        try:
            groups = X[column]
        except (KeyError, IndexError, TypeError, ValueError):
            raise KeyError(f"input has no column {column!r}, which this release's per-group thresholds "
                           "need") from None
        proba = np.asarray(self.model.predict_proba(X))[:, 1]
        return self.thresholds.apply(proba, np.asarray(groups, dtype=object))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.flags(X).astype(int)]


@dataclass(frozen=True)
class Outcome:
    """How a set of decisions does on labelled data: cost, per-group stats, the gaps."""

    cost: float
    groups: dict[str, GroupStats]
    fpr_gap: Gap
    parity: Gap

    def to_dict(self) -> dict[str, Any]:
        return {"expected_cost": round(self.cost, 6), "fpr_gap": self.fpr_gap.to_dict(),
                "demographic_parity_difference": self.parity.to_dict(),
                "groups": [s.to_dict() for s in self.groups.values()]}


def outcome(y_true: Any, flagged: Any, groups: Any, cost_ratio: float = DEFAULT_COST_RATIO) -> Outcome:
    stats = group_stats(y_true, flagged, groups)
    return Outcome(expected_cost(y_true, flagged, cost_ratio), stats, fpr_gap(stats),
                   demographic_parity_difference(stats))


@dataclass(frozen=True)
class ThresholdSearch:
    """The result of :func:`search_thresholds`: the thresholds, the target FPR and the outcome they reach."""

    thresholds: GroupThresholds
    target_fpr: float
    tolerance: float
    feasible: bool  # every group reached the target within the tolerance
    after: Outcome
    skipped: list[str] = field(default_factory=list)  # groups without negatives (they keep the default)


def search_thresholds(
    y_true: Any,
    proba: Any,
    groups: Any,
    *,
    column: str,
    cost_ratio: float = DEFAULT_COST_RATIO,
    tolerance: float = DEFAULT_TOLERANCE,
    grid: Sequence[float] | None = None,
) -> ThresholdSearch:
    """Per-group thresholds whose false-positive rates lie within ``tolerance`` of each other, at least cost.

    See the module docstring for the method. When no candidate rate lets every group within the tolerance
    (tiny groups), the thresholds that come closest are returned with ``feasible=False``.
    """
    if not (0 < tolerance < 1):
        raise ValueError("tolerance must be between 0 and 1")
    if cost_ratio <= 0 or not math.isfinite(cost_ratio):
        raise ValueError("cost_ratio must be a positive number")
    y = _bools(y_true, "y_true")
    p = np.asarray(proba, dtype=float)
    g = group_labels(groups)
    if not (y.shape == p.shape == g.shape) or y.size == 0:
        raise ValueError("y_true, proba and groups must be non-empty and of the same length")
    default = choose_threshold(y, p, cost_ratio)
    names = sorted(set(g.tolist()))
    tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    skipped: list[str] = []
    fixed_cost = 0.0
    for name in names:
        mask = g == name
        negatives = int(np.sum(~y[mask]))
        if negatives == 0:
            skipped.append(name)
            flagged = p[mask] >= default
            fixed_cost += cost_ratio * np.sum(y[mask] & ~flagged) + np.sum(~y[mask] & flagged)
            continue
        cuts, fp, fn, valid = _cut_table(y[mask], p[mask])
        fpr = fp[valid] / negatives
        cost = cost_ratio * fn[valid] + fp[valid]
        tables[name] = (cuts[valid], fpr, cost)
    # Every deterministic rule whose FPRs lie within ``tolerance`` has its lowest FPR at some achievable rate
    # ``a``, so sweeping the windows [a, a + tolerance] over all achievable rates finds the cheapest one exactly.
    anchors = np.unique(np.concatenate([t[1] for t in tables.values()])) if grid is None else \
        np.asarray(grid, dtype=float) - tolerance / 2.0
    # Among the windows of least cost, the one whose chosen rates lie closest together wins: within a window each
    # group takes the lowest FPR among its cheapest cuts (argmin's first), so this finds the tightest realised gap
    # of all least-cost rules, not merely one within the tolerance.
    best: tuple[float, float, dict[str, float]] | None = None  # (cost, target, thresholds)
    best_gap = math.inf
    for a in anchors:
        chosen: dict[str, float] = {}
        rates: list[float] = []
        total = fixed_cost
        for name, (cuts, fpr, cost) in tables.items():
            lo = int(np.searchsorted(fpr, a - 1e-12, side="left"))
            hi = int(np.searchsorted(fpr, a + tolerance + 1e-12, side="right"))
            if lo >= hi:
                break
            k = lo + int(np.argmin(cost[lo:hi]))
            chosen[name] = float(cuts[k])
            rates.append(float(fpr[k]))
            total += float(cost[k])
        else:
            gap = max(rates) - min(rates) if rates else 0.0
            if best is None or total < best[0] - 1e-9 or (total <= best[0] + 1e-9 and gap < best_gap - 1e-12):
                best, best_gap = (total, float(a + tolerance / 2.0), chosen), gap
    feasible = best is not None
    if best is None:  # nearest achievable rate per group for the target that spreads them least
        best = _closest(tables, anchors + tolerance / 2.0)
    chosen = dict(best[2])
    for name in skipped:
        chosen.setdefault(name, default)
    thresholds = GroupThresholds(column=column, thresholds=chosen, default=default, cost_ratio=cost_ratio)
    after = outcome(y, thresholds.apply(p, g), g, cost_ratio)
    return ThresholdSearch(thresholds, best[1], tolerance, feasible, after, skipped)


def _closest(tables: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
             targets: np.ndarray) -> tuple[float, float, dict[str, float]]:
    best: tuple[float, float, dict[str, float]] | None = None
    best_spread = math.inf
    for f in targets:
        chosen: dict[str, float] = {}
        rates = []
        for name, (cuts, fpr, _cost) in tables.items():
            k = int(np.argmin(np.abs(fpr - f)))
            chosen[name] = float(cuts[k])
            rates.append(float(fpr[k]))
        spread = max(rates) - min(rates) if rates else 0.0
        if spread < best_spread - 1e-12:
            best_spread, best = spread, (0.0, float(f), chosen)
    assert best is not None
    return best
