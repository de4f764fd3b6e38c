"""A fixed monitoring pass for the console tests, built by the real core code from synthetic counts.

The demo's loan applications (``modelfleet.demo.data.make_loans``, fixed seeds) profiled as a release's reference
sample, live traffic counted on the profile's bins by the agent's own ``DriftCounter``, latencies in the agent's
own sketch and histogram, snapshots as an agent's ``/stats?window=W`` gives them, and twelve successive passes
through ``core.monitor_view.MonitorPass`` (the same ``evaluate_collected`` as ``modelfleet status``), so that the
verdicts, intervals and p95 history the console draws are real ones:

* ``credit-risk@2`` on edge-cpu-01 (income +25 %: income drifts, the dataset does not), edge-cpu-03 (as the
  reference) and edge-gpu-04 (20 rows, 20 requests: INSUFFICIENT_DATA);
* ``credit-risk@3`` on edge-cpu-02: five features shifted (dataset DRIFT), a new ``purpose`` category, group C's
  positive share up (SHIFT), slow answers (SLO breach) and a regressed latency detector;
* edge-arm-05 and edge-arm-06 not read (connection refused, timed out).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from modelfleet.core.config import load_settings
from modelfleet.core.drift import DriftCounter, ReferenceProfile
from modelfleet.core.drift_counts import CountsLayout, NodeSnapshot
from modelfleet.core.latency import LATENCY_BOUNDS, LatencySketch
from modelfleet.core.monitor_sources import Collected
from modelfleet.core.monitor_view import MonitorPass, MonitorView
from modelfleet.demo import GROUP_COLUMN
from modelfleet.demo.data import INPUT_COLUMNS, make_loans

NOW = 1_750_000_000.0  # (tests/console/fakes.py's fixed clock)
WINDOW_S = 900.0
PASSES = 12
REFRESH_S = 5.0
COUNTER_START = NOW - 3600.0


def _predict(frame: Any) -> np.ndarray:
    return ((frame["credit_score"] < 640) | (frame["debt_to_income"] > 0.45)).to_numpy().astype(int)


@functools.cache
def _profiles() -> dict[str, ReferenceProfile]:
    reference = make_loans(4_000, seed=1)[list(INPUT_COLUMNS)]
    return {version: ReferenceProfile.build(reference, _predict(reference), group_column=GROUP_COLUMN,
                                            model="credit-risk", version=version) for version in ("2", "3")}


def _live(n: int, seed: int, *, shifted: bool = False, income: float = 1.0) -> tuple[Any, np.ndarray]:
    frame = make_loans(n, seed=seed)[list(INPUT_COLUMNS)].copy()
    preds = _predict(frame)
    frame["income"] = frame["income"] * income
    if shifted:
        rng = np.random.default_rng(seed)
        frame["loan_amount"] = frame["loan_amount"] * 1.4
        frame["credit_score"] = frame["credit_score"] - 60
        frame["debt_to_income"] = frame["debt_to_income"] + 0.12
        purpose = frame["purpose"].to_numpy(dtype=object)
        purpose[rng.random(n) < 0.08] = "crypto"  # never in the reference
        frame["purpose"] = purpose
        group_c = (frame[GROUP_COLUMN] == "C").to_numpy()
        preds = np.where(group_c & (rng.random(n) < 0.35), 1, preds)
    return frame, preds


def _latencies(n: int, median_s: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median_s), 0.35, n)


def _histogram(values: np.ndarray) -> np.ndarray:
    """Counts per bucket of the agent's scoring histogram (``le`` bounds, +Inf last)."""
    index = np.searchsorted(np.asarray(LATENCY_BOUNDS), values, side="left")
    return np.bincount(index, minlength=len(LATENCY_BOUNDS) + 1).astype(np.int64)


# node -> (version, live rows, requests per pass, median latency s, live traffic options)
NODES: dict[str, tuple[str, int, int, float, dict[str, Any]]] = {
    "edge-cpu-01": ("2", 1_200, 50, 0.004, {"income": 1.25}),
    "edge-cpu-03": ("2", 1_200, 50, 0.0038, {}),
    "edge-gpu-04": ("2", 20, 2, 0.0015, {}),
    "edge-cpu-02": ("3", 1_500, 60, 0.045, {"shifted": True, "income": 1.4}),
}
NOT_READ = {"edge-arm-05": "connection refused", "edge-arm-06": "timed out"}
SHA = {"2": "a2" * 32, "3": "b3" * 32}


def _collections() -> list[Collected]:
    """The twelve passes, oldest first: counters growing pass by pass."""
    profiles = _profiles()
    passes: list[Collected] = [Collected(source="agents", at=NOW - (PASSES - 1 - k) * REFRESH_S,
                                         profiles={SHA[v]: p for v, p in profiles.items()},
                                         unreachable=dict(NOT_READ)) for k in range(PASSES)]
    for i, (node, (version, rows, per_pass, median, live)) in enumerate(NODES.items()):
        layout = CountsLayout.from_profile(profiles[version])
        counter = DriftCounter(profiles[version])
        counter.update(*_live(rows, seed=100 + i, **live))
        counts = layout.vector(counter.snapshot())
        slow_from = PASSES - 4 if version == "3" else PASSES  # edge-cpu-02 gets slower for the last passes
        latencies = np.concatenate([_latencies(per_pass, median * (1.6 if k >= slow_from else 1.0), 1000 * i + k)
                                    for k in range(PASSES)])
        for k, collected in enumerate(passes):
            done = latencies[: per_pass * (k + 1)]
            sketch = LatencySketch()
            sketch.add_many(done)

            def snap(taken_at: float, share: float, sketch: LatencySketch | None, hist: np.ndarray,
                     regression: dict[str, Any] | None = None, node: str = node, version: str = version,
                     counts: np.ndarray = counts, rows: int = rows, requests: int = len(done)) -> NodeSnapshot:
                return NodeSnapshot(node=node, model="credit-risk", version=version, digest=SHA[version],
                                    epoch=f"epoch-{node}", counter_start=COUNTER_START, taken_at=taken_at,
                                    requests=int(requests * share), errors=int(3 * share) if version == "3" else 0,
                                    rows=int(rows * share), latency=sketch, histogram=hist,
                                    counts=(counts * share).astype(np.int64), profile_sha256=SHA[version],
                                    regression=regression)

            base = snap(collected.at - WINDOW_S - 60, 0.0, LatencySketch(), np.zeros(len(LATENCY_BOUNDS) + 1,
                                                                                       dtype=np.int64))
            regression = {"state": "regressed" if version == "3" and k >= PASSES - 2 else "watching"}
            current = snap(collected.at, (k + 1) / PASSES, sketch, _histogram(done), regression)
            collected.snapshots[node] = [base, current]
    return passes


@functools.cache
def monitor_view() -> MonitorView:
    """The twelfth pass's view (computed once per test session: ~1 s)."""
    settings = load_settings(env={}, cwd=Path("/nonexistent-mf"))
    monitor = MonitorPass(settings, window_s=WINDOW_S)
    view = None
    for collected in _collections():
        view = monitor.view(collected)
    assert view is not None
    return view
