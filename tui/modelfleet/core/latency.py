"""Mergeable latency quantiles (a DDSketch-style log-bucket sketch) and SLO status.

A :class:`LatencySketch` keeps counts in logarithmic buckets: bucket ``i`` holds the values in
``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + a) / (1 - a)``. Reporting a bucket by
``2 * gamma**i / (gamma + 1)`` is within relative error ``a`` of every value in it, so any quantile is within
``a`` (default 0.5 %) of the true order statistic. The number of buckets is bounded (``max_buckets``); when full
the lowest buckets collapse into one, which only costs accuracy on the fastest requests, never on p50/p95/p99.

Sketches with the same ``relative_accuracy`` merge exactly (bucket counts add), so per-node sketches combine
into fleet-wide quantiles. ``to_dict``/``from_dict`` give a compact JSON form::

    {"format": "ddsketch/1", "relative_accuracy": 0.005, "count": 12, "sum": 0.034, "min": 0.0011,
     "max": 0.0093, "zero_count": 0, "offset": -1390, "counts": [3, 0, 0, 9]}

Values are seconds by convention (any positive unit works). Values <= ``min_value`` count as zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

FORMAT = "ddsketch/1"
# Upper bounds (seconds) of the scoring-latency histogram every agent keeps, in /stats and on /metrics (plus
# +Inf). The default SLO budgets (20, 50, 100 ms) are bounds, so SLO verdicts from the histogram are exact.
LATENCY_BOUNDS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
                  0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencySketch:
    """A bounded, mergeable quantile sketch with relative-error guarantees."""

    __slots__ = ("_bins", "_inv_log_gamma", "count", "gamma", "max", "max_buckets", "min", "min_value",
                 "relative_accuracy", "sum", "zero_count")

    def __init__(self, relative_accuracy: float = 0.005, max_buckets: int = 4096,
                 min_value: float = 1e-9) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.relative_accuracy = relative_accuracy
        self.gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self.gamma)
        self.max_buckets = max_buckets
        self.min_value = min_value
        self._bins: dict[int, int] = {}
        self.count = 0
        self.zero_count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- adding -------------------------------------------------------------------------------------------
    def _key(self, value: float) -> int:
        return math.ceil(math.log(value) * self._inv_log_gamma)

    def add(self, value: float, weight: int = 1) -> None:
        """Record one observation (``weight`` times). NaN is ignored."""
        if value != value:  # NaN
            return
        self.count += weight
        self.sum += value * weight
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= self.min_value:
            self.zero_count += weight
            return
        key = math.ceil(math.log(value) * self._inv_log_gamma)
        bins = self._bins
        bins[key] = bins.get(key, 0) + weight
        if len(bins) > self.max_buckets:
            self._collapse()

    def add_many(self, values: Iterable[float]) -> None:
        """Record many observations at once (vectorised with numpy)."""
        import numpy as np

        arr = np.asarray(list(values) if not hasattr(values, "__array__") else values, dtype=float)
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            return
        self.count += int(arr.size)
        self.sum += float(arr.sum())
        self.min = min(self.min, float(arr.min()))
        self.max = max(self.max, float(arr.max()))
        positive = arr[arr > self.min_value]
        self.zero_count += int(arr.size - positive.size)
        keys = np.ceil(np.log(positive) * self._inv_log_gamma).astype(np.int64)
        uniq, counts = np.unique(keys, return_counts=True)
        bins = self._bins
        for k, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            bins[k] = bins.get(k, 0) + c
        while len(bins) > self.max_buckets:
            self._collapse()

    def _collapse(self) -> None:
        keys = sorted(self._bins)
        excess = len(keys) - self.max_buckets
        if excess <= 0:
            return
        target = keys[excess]
        moved = sum(self._bins.pop(k) for k in keys[:excess])
        self._bins[target] += moved

    # -- merging -------------------------------------------------------------------------------------------
    def merge(self, other: LatencySketch) -> None:
        """Add ``other``'s observations to this sketch (same relative accuracy required)."""
        if not math.isclose(other.relative_accuracy, self.relative_accuracy):
            raise ValueError("cannot merge sketches with different relative accuracy")
        for k, c in other._bins.items():
            self._bins[k] = self._bins.get(k, 0) + c
        self.count += other.count
        self.zero_count += other.zero_count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        while len(self._bins) > self.max_buckets:
            self._collapse()

    def minus(self, previous: LatencySketch | None) -> LatencySketch | None:
        """The observations added since ``previous`` (an earlier state of these same counters): bins subtracted.

        None when ``previous`` is not a prefix of this sketch (a bin or the count went down: counters reset).
        ``min``/``max`` stay those of the whole sketch (a window cannot recover them).
        """
        if previous is None:
            return self.copy()
        if previous.count > self.count or not math.isclose(previous.relative_accuracy, self.relative_accuracy):
            return None
        out = LatencySketch(self.relative_accuracy, self.max_buckets, self.min_value)
        bins = dict(self._bins)
        for k, c in previous._bins.items():
            left = bins.get(k, 0) - c
            if left < 0:
                return None
            bins[k] = left
        out._bins = {k: c for k, c in bins.items() if c}
        out.count = self.count - previous.count
        out.zero_count = max(0, self.zero_count - previous.zero_count)
        out.sum = max(0.0, self.sum - previous.sum)
        if out.count > 0:
            out.min, out.max = self.min, self.max
        return out

    def copy(self) -> LatencySketch:
        out = LatencySketch(self.relative_accuracy, self.max_buckets, self.min_value)
        out.merge(self)
        return out

    # -- querying ------------------------------------------------------------------------------------------
    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 <= q <= 1), or None when empty."""
        if self.count == 0:
            return None
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        rank = q * (self.count - 1)
        if rank < self.zero_count:
            return max(self.min, 0.0) if self.min <= self.min_value else 0.0
        seen = self.zero_count
        for key in sorted(self._bins):
            seen += self._bins[key]
            if seen > rank:
                value = 2.0 * self.gamma**key / (self.gamma + 1.0)
                return min(max(value, self.min), self.max)
        return self.max

    def quantiles(self, qs: Iterable[float] = (0.5, 0.95, 0.99)) -> dict[str, float | None]:
        """``{"p50": ..., "p95": ..., "p99": ...}`` in the sketch's unit."""
        return {f"p{round(q * 100, 3):g}": self.quantile(q) for q in qs}

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def __len__(self) -> int:
        return self.count

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        keys = sorted(self._bins)
        offset = keys[0] if keys else 0
        counts = [0] * (keys[-1] - offset + 1) if keys else []
        for k in keys:
            counts[k - offset] = self._bins[k]
        return {
            "format": FORMAT,
            "relative_accuracy": self.relative_accuracy,
            "max_buckets": self.max_buckets,
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "zero_count": self.zero_count,
            "offset": offset,
            "counts": counts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencySketch:
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"unknown sketch format {data.get('format')!r}")
        out = cls(float(data["relative_accuracy"]), int(data.get("max_buckets", 4096)))
        out.count = int(data["count"])
        out.sum = float(data["sum"])
        out.zero_count = int(data.get("zero_count", 0))
        out.min = math.inf if data.get("min") is None else float(data["min"])
        out.max = -math.inf if data.get("max") is None else float(data["max"])
        offset = int(data.get("offset", 0))
        out._bins = {offset + i: int(c) for i, c in enumerate(data.get("counts", [])) if c}
        return out


@dataclass(frozen=True)
class SloStatus:
    """Whether a latency quantile meets its budget."""

    quantile: float
    value_s: float | None
    budget_s: float
    ok: bool | None  # None: no data


def slo_status(sketch: LatencySketch, budget_s: float, quantile: float = 0.99) -> SloStatus:
    """Compare the sketch's ``quantile`` with ``budget_s`` (no data -> ok is None)."""
    value = sketch.quantile(quantile)
    return SloStatus(quantile, value, budget_s, None if value is None else value <= budget_s)


# -- windows of the scoring-latency histogram and SLO verdicts ------------------------------------------------------


def histogram_delta(current: np.ndarray | None, previous: np.ndarray | None) -> np.ndarray | None:
    """Per-bucket requests between two histogram snapshots of the same counters."""
    if current is None:
        return None
    return current.copy() if previous is None else current - previous


def share_over(counts: Sequence[int] | np.ndarray, budget_s: float,
               bounds: Sequence[float] = LATENCY_BOUNDS) -> float | None:
    """Share of requests slower than ``budget_s`` from per-bucket counts (``len(bounds) + 1``, +Inf last).

    Exact when ``budget_s`` is a bucket bound; otherwise the bucket holding it is split linearly (as Prometheus'
    ``histogram_quantile`` assumes). None without requests.
    """
    values = [float(c) for c in counts]
    total = sum(values)
    if total <= 0:
        return None
    slower = 0.0
    lower = 0.0
    for i, upper in enumerate(bounds):
        if budget_s >= upper:
            lower = upper
            continue
        part = values[i] * (upper - budget_s) / (upper - lower) if upper > lower else 0.0
        slower = part + sum(values[i + 1:])
        break
    else:
        slower = values[-1]
    return slower / total


def histogram_quantile(counts: Sequence[int] | np.ndarray, q: float,
                       bounds: Sequence[float] = LATENCY_BOUNDS) -> float | None:
    """The ``q`` quantile from per-bucket counts, interpolated linearly within its bucket (Prometheus'
    ``histogram_quantile``); the +Inf bucket answers its lower bound. None without requests."""
    values = [float(c) for c in counts]
    total = sum(values)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for i, upper in enumerate(bounds):
        if values[i] > 0 and seen + values[i] >= rank:
            return lower + (upper - lower) * (rank - seen) / values[i]
        seen += values[i]
        lower = upper
    return float(bounds[-1])


LATENCY_VERDICTS = ("OK", "SLO_BREACH", "INSUFFICIENT_DATA")
QUANTILES = ("p50", "p95", "p99")


@dataclass(frozen=True)
class LatencyVerdict:
    """Latency of a window against its SLO: a verdict only with at least ``min_requests`` requests.

    ``over`` maps each quantile to the share of requests slower than its budget; ``p95`` breaches when more than
    5 % are slower than the p95 budget (and so on). ``pXX_ms`` are read from the sketch, for people.
    """

    verdict: str  # one of LATENCY_VERDICTS
    requests: int
    min_requests: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    budgets_ms: dict[str, float]
    over: dict[str, float | None]
    breaches: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def latency_verdict(histogram: Sequence[int] | np.ndarray | None, sketch: LatencySketch | None,
                    budgets_ms: dict[str, float], min_requests: int) -> LatencyVerdict:
    """The SLO verdict of a window from its histogram (verdict) and sketch (figures; from the histogram when there
    is no sketch)."""
    requests = int(sum(int(c) for c in histogram)) if histogram is not None else (sketch.count if sketch else 0)
    if sketch is not None:
        figures = {q: (sketch.quantile(int(q[1:]) / 100.0) if sketch.count else None) for q in QUANTILES}
    elif histogram is not None:  # e.g. from Prometheus, which keeps the histogram only: interpolated
        figures = {q: histogram_quantile(histogram, int(q[1:]) / 100.0) for q in QUANTILES}
    else:
        figures = dict.fromkeys(QUANTILES)
    ms = {q: (None if v is None else round(v * 1000.0, 3)) for q, v in figures.items()}
    over: dict[str, float | None] = {}
    breaches: list[str] = []
    for q in QUANTILES:
        budget = budgets_ms.get(q)
        if budget is None or histogram is None:
            continue
        share = share_over(histogram, budget / 1000.0)
        over[q] = share
        if share is not None and share > 1.0 - int(q[1:]) / 100.0 + 1e-12:
            breaches.append(q)
    if requests < min_requests:
        verdict = "INSUFFICIENT_DATA"
        breaches = []
    else:
        verdict = "SLO_BREACH" if breaches else "OK"
    return LatencyVerdict(verdict, requests, min_requests, ms["p50"], ms["p95"], ms["p99"], dict(budgets_ms), over,
                          tuple(breaches))
