"""What the console shows of the monitoring loop (core/monitor_view.py): the p95 of each interval between passes,
fleet and per node, across a counter reset, bounded; the verdicts of a pass equal ``evaluate_collected``'s; a view
slimmed for the pipe keeps every verdict."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from modelfleet.core.config import load_settings
from modelfleet.core.drift_counts import NodeSnapshot
from modelfleet.core.latency import LATENCY_BOUNDS, LatencySketch
from modelfleet.core.monitor import evaluate_collected
from modelfleet.core.monitor_policy import load_policy
from modelfleet.core.monitor_sources import Collected
from modelfleet.core.monitor_view import LatencyHistory, MonitorPass

SETTINGS = load_settings(env={}, cwd=Path("/nonexistent-monitor-view"))


class Agent:
    """One node's cumulative counters, as its /stats would give them pass after pass."""

    def __init__(self, node: str, version: str = "2", epoch: str = "e1") -> None:
        self.node, self.version, self.epoch = node, version, epoch
        self.values: list[float] = []
        self.start = 0.0

    def answer(self, values: list[float]) -> None:
        self.values.extend(values)

    def restart(self, at: float) -> None:
        self.values, self.epoch, self.start = [], self.epoch + "'", at

    def snapshot(self, at: float) -> NodeSnapshot:
        sketch = LatencySketch()
        sketch.add_many(self.values)
        hist = np.bincount(np.searchsorted(np.asarray(LATENCY_BOUNDS), self.values),
                           minlength=len(LATENCY_BOUNDS) + 1).astype(np.int64)
        return NodeSnapshot(node=self.node, model="m", version=self.version, digest=None, epoch=self.epoch,
                            counter_start=self.start, taken_at=at, requests=len(self.values), errors=0,
                            rows=len(self.values), latency=sketch, histogram=hist)


def _pass(at: float, *agents: Agent, unreachable: dict[str, str] | None = None) -> Collected:
    return Collected(snapshots={a.node: [a.snapshot(at)] for a in agents}, unreachable=dict(unreachable or {}),
                     at=at)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.011 * b  # the sketch's relative accuracy (0.5 %), twice, and rounding to the microsecond


def test_each_interval_has_its_own_p95_and_the_fleet_merges_the_nodes() -> None:
    rng = np.random.default_rng(3)
    a, b = Agent("n1"), Agent("n2")
    history = LatencyHistory()
    a.answer(list(rng.lognormal(np.log(0.004), 0.3, 400)))
    history.add(_pass(10.0, a, b))  # the first pass: nothing to compare with yet
    assert history.of("m", "2").fleet == ()
    slow_a = list(rng.lognormal(np.log(0.040), 0.3, 300))  # n1 got ten times slower in this interval
    fast_b = list(rng.lognormal(np.log(0.002), 0.3, 300))
    a.answer(slow_a)
    b.answer(fast_b)
    history.add(_pass(15.0, a, b))
    h = history.of("m", "2")
    (p1,), (p2,), (fleet,) = h.nodes["n1"], h.nodes["n2"], h.fleet
    assert p1.at == 15.0 and p1.requests == 300 and _close(p1.p95_ms, np.quantile(slow_a, 0.95) * 1000)
    assert _close(p2.p95_ms, np.quantile(fast_b, 0.95) * 1000)
    assert fleet.requests == 600 and _close(fleet.p95_ms, np.quantile(slow_a + fast_b, 0.95) * 1000)
    # an interval without requests adds no point; the 400 answers before the first pass never counted
    history.add(_pass(20.0, a, b))
    assert len(history.of("m", "2").fleet) == 1


def test_a_counter_reset_gives_the_interval_since_the_restart_never_a_negative_one() -> None:
    a = Agent("n1")
    history = LatencyHistory()
    a.answer([0.010] * 100)
    history.add(_pass(10.0, a))
    a.restart(at=12.0)
    a.answer([0.003] * 40)  # fewer than before the restart: a difference would be negative
    history.add(_pass(15.0, a))
    (point,) = history.of("m", "2").nodes["n1"]
    assert point.requests == 40 and _close(point.p95_ms, 3.0)


def test_history_is_bounded_and_forgets_what_is_no_longer_fed() -> None:
    a, b = Agent("n1"), Agent("n2", version="3")
    history = LatencyHistory(maxlen=5)
    for k in range(12):
        a.answer([0.005] * 10)
        b.answer([0.005] * 10)
        history.add(_pass(float(k), a, b) if k < 4 else _pass(float(k), a))  # n2 (version 3) goes away after 4
    assert len(history.of("m", "2").fleet) == 5 and len(history.of("m", "2").nodes["n1"]) == 5
    assert history.versions() == [("m", "2")]  # version 3's series: not fed for 5 passes, dropped
    assert "n2" not in history._last  # and its last snapshot with it (not read, not unreachable: left)


def test_a_pass_gives_the_verdicts_of_evaluate_collected_and_a_slim_view_keeps_them() -> None:
    from tests.console.monitor_data import _collections

    passes = _collections()
    monitor = MonitorPass(SETTINGS, window_s=900.0)
    view = [monitor.view(c) for c in passes][-1]
    full = evaluate_collected(passes[-1], load_policy(SETTINGS), 900.0)
    assert view.status.to_dict() == full.to_dict()  # (to_dict: every verdict, figure and reason)
    assert view.status.breaches == full.breaches
    assert len(pickle.dumps(view.status)) < 0.7 * len(pickle.dumps(full))  # what crosses the pipe
    assert all(s.window.counts is None and s.window.latency is None for v in view.status.versions
               for s in (v.fleet, *v.nodes.values()))
    assert view.version("credit-risk", "2") is not None and view.node_scope("edge-cpu-02") is not None
    assert view.node_scope("edge-arm-05") is None and view.history_of("x", "1").fleet == ()
    assert len(view.history_of("credit-risk", "2").fleet) == len(passes) - 1


@pytest.mark.parametrize("window", ["15m", "1h"])
def test_the_pass_uses_the_configured_window(window: str, tmp_path: Path) -> None:
    (tmp_path / "modelfleet.toml").write_text(f'[monitor]\nwindow = "{window}"\n', encoding="utf-8")
    assert MonitorPass(load_settings(env={}, cwd=tmp_path)).window_s == {"15m": 900.0, "1h": 3600.0}[window]
