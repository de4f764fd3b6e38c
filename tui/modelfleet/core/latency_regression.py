"""Sequential detection of a latency regression on one node: a one-sided CUSUM on standardised log latency.

Why CUSUM, and why on log latency
---------------------------------
The question asked of every scoring request is "has this node become slower than it was?", and it must be
answered as requests arrive, with a known false-alarm rate. Of the three usual detectors:

- **CUSUM** (Page 1954) accumulates the log-likelihood ratio of "shifted by delta" against "unchanged" and alarms
  when it passes ``h``. For a known pre-change level and a given step it minimises the worst-case detection delay
  among all detectors with the same mean time between false alarms (Lorden 1971, Moustakides 1986), and that mean
  time has a closed-form approximation (Siegmund 1985) that turns the false-alarm budget into ``h`` directly;
- **Page-Hinkley** is the same recursion with the pre-change mean re-estimated as a running average: the drift it
  detects leaks into its own baseline, so a slow regression lowers its power, and its threshold has no closed
  form;
- **ADWIN** compares every split of an adaptive window with a Hoeffding bound: distribution-free but very
  conservative (its bound holds for any bounded variable), so it needs thousands of requests for a 20% step, and
  it costs O(log n) buckets per request instead of three floating-point operations.

A step of +20% in p95 is, for the usual right-skewed latency distributions, a change of scale: every request
takes ~1.2 times as long. On the log scale that is a shift of the mean by ``ln 1.2`` whatever the spread, so the
detector works on ``z = (ln latency - mu) / sigma`` with ``mu`` and ``sigma`` estimated on the first ``warmup``
requests after the agent (re)loads a release (and refined in blocks afterwards, see the class), and looks for a
shift of ``delta = ln(1 + step) / sigma``: reference value ``k = delta / 2 + 1 / sqrt(n)`` (the second term,
the standard error of a baseline of ``n`` requests, keeps a young baseline from alarming on its own estimation
error), threshold ``h`` from Siegmund's approximation for a mean time between false alarms of ``arl0`` requests
(default 10^7: a hundred times the budget of one false alarm per 100,000 requests, which leaves room for tails
heavier than the normal and for autocorrelated traffic). Each ``z`` is clipped to ``[-(k + 4), k + 4]`` so one
pathological request (a GC pause, a swapped page) moves the statistic by a bounded amount. Expected delays for a
+20 % step (simulated): ~60 requests when the log latency varies by 0.3, ~160 at 0.5, ~650 at 1.0.

After an alarm the node is ``regressed`` and a second CUSUM watches for the way back (a shift of ``-delta`` from
the regressed level, same ``k`` and ``h``); when it fires the node is ``watching`` again. The simulation tests
(tests/unit/test_latency_regression.py, fixed seeds) check both budgets: a +20% step flagged within 2,000
requests, at most one false alarm per 100,000 stationary requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

WARMUP = 1000
STEP = 0.20
ARL0 = 10_000_000.0
MIN_SIGMA = 0.01  # log units: a node whose latency varies less than 1% is treated as varying by 1%
BLOCK = 1000
SE_MARGIN = 1.0
STATES = ("warming", "watching", "regressed")


def siegmund_arl0(k: float, h: float) -> float:
    """Mean run length to a false alarm of a one-sided CUSUM on N(0, 1) increments (Siegmund's approximation)."""
    b = h + 1.166
    if k <= 0:
        return b * b
    x = 2.0 * k * b
    return (math.exp(x) - x - 1.0) / (2.0 * k * k)


def threshold_for(k: float, arl0: float) -> float:
    """The smallest ``h`` whose :func:`siegmund_arl0` reaches ``arl0`` (bisection)."""
    lo, hi = 0.0, 1.0
    while siegmund_arl0(k, hi) < arl0:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if siegmund_arl0(k, mid) < arl0:
            lo = mid
        else:
            hi = mid
    return hi


def _reflected_crossing(increments: np.ndarray, start: float, h: float) -> tuple[int, float]:
    """First index where ``S = max(0, S + x)`` (from ``start``) passes ``h``, and S at the end (or -1 and S_end).

    Vectorised with the identity ``S_t = C_t - min(0, min_{j<=t} C_j)``, ``C_t = start + sum_{i<=t} x_i``.
    """
    if increments.size == 0:
        return -1, start
    c = start + np.cumsum(increments)
    s = c - np.minimum(np.minimum.accumulate(c), 0.0)
    above = np.flatnonzero(s > h)
    if above.size:
        return int(above[0]), float(s[above[0]])
    return -1, float(s[-1])


@dataclass
class Alarm:
    """One change the detector reported: ``kind`` is ``regression`` or ``recovery``; ``at`` counts requests."""

    kind: str
    at: int


class LatencyRegressionDetector:
    """Online detector; ``update(seconds)`` per request, ``update_many(array)`` for simulations and batches.

    The baseline (mean and spread of log latency) starts from the first ``warmup`` requests and keeps being
    refined while the node is ``watching``, in blocks of ``block`` requests, from the requests that arrived while
    the CUSUM was at rest (``S = 0`` before them: a choice that does not depend on the request itself, so it does
    not bias the baseline, and that stops feeding the baseline as soon as a shift starts to accumulate). A
    baseline that keeps improving is what keeps false alarms rare: a warm-up estimate that happened to be low
    would otherwise alarm again and again for the life of the release.
    """

    __slots__ = ("_blk", "_s0", "_s1", "alarms", "arl0", "block", "clip", "h", "k", "mu", "n", "recoveries",
                 "s", "sigma", "since", "state", "step", "warmup")

    def __init__(self, *, step: float = STEP, warmup: int = WARMUP, arl0: float = ARL0, block: int = BLOCK) -> None:
        if step <= 0 or warmup < 2 or arl0 <= 1 or block < 1:
            raise ValueError("step must be > 0, warmup >= 2, arl0 > 1 and block >= 1")
        self.step = step
        self.warmup = warmup
        self.arl0 = arl0
        self.block = block
        self.n = 0  # requests seen
        # baseline sums of log latency (count, sum, sum of squares) and the open block's sums of the requests
        # chosen to refine it
        self._s0 = np.zeros(3)
        self._s1 = np.zeros(3)
        self._blk = 0
        self.mu = 0.0
        self.sigma = 0.0
        self.k = 0.0
        self.h = 0.0
        self.clip = 0.0
        self.s = 0.0
        self.state = "warming"
        self.since: int | None = None  # request count at the last state change
        self.alarms = 0
        self.recoveries = 0

    # -- parameters ----------------------------------------------------------------------------------------
    def _refit(self) -> None:
        n, total, squares = self._s0
        self.mu = total / n
        var = max(squares / n - self.mu * self.mu, 0.0) * n / max(n - 1.0, 1.0)
        self.sigma = max(math.sqrt(var), MIN_SIGMA)
        delta = math.log1p(self.step) / self.sigma
        self.k = delta / 2.0 + SE_MARGIN / math.sqrt(n)  # a young baseline is uncertain: demand more
        self.h = threshold_for(self.k, self.arl0)
        self.clip = self.k + 4.0

    def _close_block(self) -> None:
        if self.state == "watching" and self._s1[0] > 0:
            self._s0 += self._s1
            self._refit()
        self._s1[:] = 0.0
        self._blk = 0

    def _z(self, log_latency: float) -> float:
        z = (log_latency - self.mu) / self.sigma
        return -self.clip if z < -self.clip else (self.clip if z > self.clip else z)

    # -- one request ---------------------------------------------------------------------------------------
    def update(self, seconds: float) -> Alarm | None:
        """Account one request's latency; returns the alarm it raised, if any. Non-positive values are ignored."""
        if not seconds > 0.0:
            return None
        x = math.log(seconds)
        self.n += 1
        if self.state == "warming":
            self._s0 += (1.0, x, x * x)
            if self.n >= self.warmup:
                self._refit()
                self.state = "watching"
                self.since = self.n
            return None
        z = self._z(x)
        alarm = None
        if self.state == "watching":
            if self.s == 0.0:
                self._s1 += (1.0, x, x * x)
            self.s = max(0.0, self.s + z - self.k)
            if self.s > self.h:
                alarm = self._flip("regressed")
        else:
            self.s = max(0.0, self.s + self.k - z)  # back down by delta from the regressed level (mean 2k)
            if self.s > self.h:
                alarm = self._flip("watching")
        self._blk += 1
        if self._blk >= self.block:
            self._close_block()
        return alarm

    def _flip(self, state: str) -> Alarm:
        self.state = state
        self.since = self.n
        self.s = 0.0
        self._s1[:] = 0.0  # what the open block chose was chosen under the old state
        if state == "regressed":
            self.alarms += 1
            return Alarm("regression", self.n)
        self.recoveries += 1
        return Alarm("recovery", self.n)

    # -- many requests (same result as calling update on each) ---------------------------------------------
    def update_many(self, seconds: Any) -> list[Alarm]:
        """Account a sequence of latencies in order; vectorised within each block and between alarms."""
        values = np.asarray(seconds, dtype=float)
        values = values[values > 0.0]
        out: list[Alarm] = []
        i = 0
        while i < values.size and self.state == "warming":
            self.update(float(values[i]))
            i += 1
        logs = np.log(values[i:])
        j = 0
        while j < logs.size:
            chunk = logs[j: j + self.block - self._blk]
            z = np.clip((chunk - self.mu) / self.sigma, -self.clip, self.clip)
            watching = self.state == "watching"
            inc = z - self.k if watching else self.k - z
            at, end = _reflected_crossing(inc, self.s, self.h)
            used = chunk if at < 0 else chunk[: at + 1]
            if watching:
                c = self.s + np.cumsum(inc[: used.size])
                s_after = c - np.minimum(np.minimum.accumulate(c), 0.0)
                rest = np.concatenate(([self.s], s_after[:-1])) == 0.0
                chosen = used[rest]
                self._s1 += (float(chosen.size), float(chosen.sum()), float(np.dot(chosen, chosen)))
            self.n += int(used.size)
            self._blk += int(used.size)
            j += int(used.size)
            if at >= 0:
                out.append(self._flip("regressed" if watching else "watching"))
            else:
                self.s = end
            if self._blk >= self.block:
                self._close_block()
        return out

    def to_dict(self) -> dict[str, Any]:
        """The detector's state for ``/stats`` (``baseline_p50_s`` is exp of the baseline's mean log latency)."""
        watching = self.state != "warming"
        return {
            "method": "cusum-log-latency", "state": self.state, "requests": self.n, "warmup": self.warmup,
            "step": self.step, "arl0": self.arl0, "statistic": round(self.s, 4) if watching else None,
            "threshold": round(self.h, 4) if watching else None, "k": round(self.k, 4) if watching else None,
            "baseline_p50_s": math.exp(self.mu) if watching else None,
            "baseline_log_sigma": self.sigma if watching else None,
            "since_request": self.since, "alarms": self.alarms, "recoveries": self.recoveries,
        }
