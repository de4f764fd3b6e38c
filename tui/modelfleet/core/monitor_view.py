"""What the console shows of the monitoring loop: one pass's verdicts, and p95 over successive passes.

::

    monitor = MonitorPass(settings)                   # keeps its source (profile cache) and the history
    view = monitor.run(inventory.nodes)               # blocking (HTTP + statistics): a worker or a child process
    v = view.version("credit-risk", "2")              # VersionStatus: fleet and per-node verdicts
    h = view.history_of("credit-risk", "2")           # p95 per interval between passes, fleet and per node

A pass is :func:`core.monitor.collect` + :func:`core.monitor.evaluate_collected`, exactly what ``modelfleet
status`` and ``modelfleet drift`` compute. On top, :class:`LatencyHistory` remembers each node's last counters and
turns two successive passes into the interval between them (:func:`core.drift_counts.window_of`, so a counter reset
is handled as everywhere else); the nodes' intervals of one model version merge (:func:`core.drift_counts.merge`)
into the fleet's. Each series keeps the last ``maxlen`` points, and a series not fed for ``maxlen`` passes is
dropped: memory stays bounded whatever the fleet does.

:func:`for_display` drops what only the statistics needed (count vectors, histograms, sketches) from the windows,
so that a view crosses a pipe in a fraction of the bytes and costs the console little to unpickle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from modelfleet.core.drift_counts import NodeSnapshot, Window, merge, window_of
from modelfleet.core.drift_verdict import FeatureResult
from modelfleet.core.latency import histogram_quantile
from modelfleet.core.monitor import MonitorStatus, Scope, VersionStatus, collect, evaluate_collected

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.fleet import Node
    from modelfleet.core.monitor_policy import MonitorPolicy
    from modelfleet.core.monitor_sources import AgentSource, Collected, PrometheusSource

HISTORY_LEN = 60


@dataclass(frozen=True)
class LatencyPoint:
    """p95 of the requests answered between two passes (``at``: the later pass's snapshot time)."""

    at: float
    p95_ms: float
    requests: int


@dataclass(frozen=True)
class VersionHistory:
    """p95 per interval of one model version: the fleet's (every node's interval merged) and each node's."""

    model: str
    version: str
    fleet: tuple[LatencyPoint, ...] = ()
    nodes: dict[str, tuple[LatencyPoint, ...]] = field(default_factory=dict)


def _p95_ms(window: Window) -> float | None:
    if window.latency is not None and window.latency.count:
        value = window.latency.quantile(0.95)
    elif window.histogram is not None:
        value = histogram_quantile(window.histogram, 0.95)
    else:
        value = None
    return None if value is None else round(value * 1000.0, 3)


class LatencyHistory:
    """Interval p95 per model version, fleet and node, from successive collections (bounded)."""

    def __init__(self, maxlen: int = HISTORY_LEN) -> None:
        self.maxlen = maxlen
        self._last: dict[str, NodeSnapshot] = {}  # node -> its newest snapshot
        self._series: dict[tuple[str, str, str], deque[LatencyPoint]] = {}  # (model, version, node | "") -> points
        self._fed: dict[tuple[str, str, str], int] = {}  # series -> the pass that last fed it
        self._passes = 0

    def add(self, collected: Collected) -> None:
        """One more pass: each node's interval since its previous snapshot, merged per model version."""
        self._passes += 1
        per_version: dict[tuple[str, str, str | None], list[Window]] = {}
        for node, samples in collected.snapshots.items():
            if not samples:
                continue
            newest = max(samples, key=lambda s: s.taken_at)
            previous = self._last.get(node)
            self._last[node] = newest
            if previous is None or newest.taken_at <= previous.taken_at:
                continue
            interval = window_of([previous, newest], previous.taken_at)
            if interval is None or interval.requests <= 0:
                continue
            per_version.setdefault((interval.model, interval.version, interval.profile_sha256), []).append(interval)
            self._feed((interval.model, interval.version, node), interval)
        for (model, version, _sha), windows in per_version.items():
            fleet = merge(windows)
            if fleet is not None:
                self._feed((model, version, ""), fleet)
        for node in set(self._last) - set(collected.snapshots) - set(collected.unreachable):
            del self._last[node]  # no longer asked about (left the inventory)
        for key in [k for k, fed in self._fed.items() if self._passes - fed >= self.maxlen]:
            del self._series[key], self._fed[key]

    def _feed(self, key: tuple[str, str, str], window: Window) -> None:
        p95 = _p95_ms(window)
        if p95 is None:
            return
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = deque(maxlen=self.maxlen)
        series.append(LatencyPoint(window.end, p95, window.requests))
        self._fed[key] = self._passes

    def of(self, model: str, version: str) -> VersionHistory:
        nodes = {node: tuple(points) for (m, v, node), points in sorted(self._series.items())
                 if (m, v) == (model, version) and node}
        return VersionHistory(model, version, tuple(self._series.get((model, version, ""), ())), nodes)

    def versions(self) -> list[tuple[str, str]]:
        return sorted({(m, v) for m, v, _node in self._series})


@dataclass(frozen=True)
class MonitorView:
    """One pass (``status``, slimmed by :func:`for_display`) and the latency history up to it."""

    status: MonitorStatus
    history: dict[tuple[str, str], VersionHistory] = field(default_factory=dict)

    def version(self, model: str, version: str) -> VersionStatus | None:
        return next((v for v in self.status.versions if (v.model, v.version) == (model, version)), None)

    def history_of(self, model: str, version: str) -> VersionHistory:
        return self.history.get((model, version)) or VersionHistory(model, version)

    def node_scope(self, node: str) -> Scope | None:
        """The node's own scope, in whichever version it serves."""
        for v in self.status.versions:
            scope = v.nodes.get(node)
            if scope is not None:
                return scope
        return None


def for_display(status: MonitorStatus) -> MonitorStatus:
    """``status`` without what only the statistics needed (every verdict, figure and reason is kept), and with one
    tuple of bin labels per feature shared by every scope (pickled once, not once per node)."""
    labels: dict[tuple[str, ...], tuple[str, ...]] = {}

    def result(r: FeatureResult) -> FeatureResult:
        bins = labels.setdefault(r.bins, r.bins)
        return r if bins is r.bins else replace(r, bins=bins)

    def slim(scope: Scope) -> Scope:
        d = scope.drift
        if d is not None:
            d = replace(d, features=tuple(result(f) for f in d.features),
                        prediction=None if d.prediction is None else result(d.prediction))
        return replace(scope, window=replace(scope.window, latency=None, histogram=None, counts=None), drift=d)

    versions = tuple(replace(v, fleet=slim(v.fleet), nodes={n: slim(s) for n, s in v.nodes.items()})
                     for v in status.versions)
    return replace(status, versions=versions)


class MonitorPass:
    """The console's monitoring pass: a source kept between passes (its profile cache), the latency history."""

    def __init__(self, settings: Settings, *, source: AgentSource | PrometheusSource | None = None,
                 window_s: float | None = None, history: LatencyHistory | None = None) -> None:
        from modelfleet.core.config import parse_duration
        from modelfleet.core.monitor_sources import source_for

        self.settings = settings
        self.source = source if source is not None else source_for(settings)
        self.window_s = window_s if window_s is not None else parse_duration(settings.monitor.window,
                                                                             origin="monitor.window")
        self.history = history if history is not None else LatencyHistory()

    def run(self, nodes: Sequence[Node], *, model: str | None = None) -> MonitorView:
        """Collect from the source and decide (blocking: HTTP and statistics)."""
        return self.view(collect(self.source, nodes, self.window_s, model))

    def view(self, collected: Collected, policy: MonitorPolicy | None = None) -> MonitorView:
        """The verdicts of what a source collected; the history takes it in as the newest pass."""
        from modelfleet.core.monitor_policy import load_policy

        status = evaluate_collected(collected, policy or load_policy(self.settings), self.window_s)
        self.history.add(collected)
        history = {key: self.history.of(*key) for key in self.history.versions()}
        return MonitorView(for_display(status), history)
