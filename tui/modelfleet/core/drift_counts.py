"""Counts as the monitoring loop moves them: one flat vector per snapshot, windows as differences, fleet merges.

An agent's counters only grow while it serves one release (its *epoch*: ``/stats`` ``epoch`` and
``counter_start``); a restart or a reload starts new counters at zero. A snapshot is what one node said at one
time (:class:`NodeSnapshot`); a window is the difference of two snapshots of the same counters, or, when the
counters were reset in between, what the newer one counted since its own start (Prometheus' rule for
``increase()``: the rows counted between the older snapshot and the reset are lost, and the window says so:
``partial`` lists why). Windows of one model version merge across nodes by adding (:func:`merge`), so fleet
statistics are the statistics of the pooled counts.

Everything a profile counts lives in one int64 vector laid out by :class:`CountsLayout` (features in profile
order, then prediction bins, then the ``groups x prediction bins`` matrix), so merging 1,000 nodes is one sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, pairwise
from typing import Any

import numpy as np

from modelfleet.core.drift import ReferenceProfile
from modelfleet.core.latency import LatencySketch, histogram_delta


@dataclass(frozen=True)
class CountsLayout:
    """Where each feature's bins, the prediction bins and the group matrix sit in a counts vector."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    prediction_size: int
    group_size: int

    @classmethod
    def from_profile(cls, profile: ReferenceProfile) -> CountsLayout:
        return cls(
            names=tuple(f.name for f in profile.features),
            sizes=tuple(f.bins.size for f in profile.features),
            prediction_size=profile.prediction.size if profile.prediction is not None else 0,
            group_size=profile.group_bins.size if profile.group_bins is not None else 0,
        )

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.concatenate(([0], np.cumsum(self.sizes)))[:-1])

    @property
    def features_size(self) -> int:
        return int(sum(self.sizes))

    @property
    def size(self) -> int:
        return self.features_size + self.prediction_size * (1 + self.group_size)

    def feature(self, vector: np.ndarray, name: str) -> np.ndarray:
        i = self.names.index(name)
        off = self.offsets[i]
        return vector[..., off: off + self.sizes[i]]

    def predictions(self, vector: np.ndarray) -> np.ndarray:
        off = self.features_size
        return vector[..., off: off + self.prediction_size]

    def by_group(self, vector: np.ndarray) -> np.ndarray:
        off = self.features_size + self.prediction_size
        flat = vector[..., off: off + self.prediction_size * self.group_size]
        return flat.reshape((*flat.shape[:-1], self.group_size, self.prediction_size))

    def reference_vector(self, profile: ReferenceProfile) -> np.ndarray:
        """The profile's own reference counts in this layout."""
        parts: list[Any] = [f.reference_counts for f in profile.features]
        if self.prediction_size:
            parts.append(profile.prediction_reference or [0] * self.prediction_size)
            ref = profile.group_reference or [[0] * self.prediction_size] * self.group_size
            parts.extend(ref)
        return np.asarray([c for part in parts for c in part], dtype=np.int64)

    def vector(self, counts: Mapping[str, Any]) -> np.ndarray:
        """The vector of one agent snapshot (``/stats`` ``drift.counts``); ValueError when it does not fit."""
        features = counts.get("features") or {}
        if tuple(features) != self.names:
            raise ValueError("the agent counts other features than the profile names")
        parts = [f["counts"] for f in features.values()]
        if [len(p) for p in parts] != list(self.sizes):
            raise ValueError("the agent's bins differ from the profile's")
        if self.prediction_size:
            pred = (counts.get("predictions") or {}).get("counts") or [0] * self.prediction_size
            groups = list(((counts.get("predictions_by_group") or {}).get("groups") or {}).values())
            groups = (groups + [[0] * self.prediction_size] * self.group_size)[: self.group_size]
            if len(pred) != self.prediction_size or any(len(g) != self.prediction_size for g in groups):
                raise ValueError("prediction counts do not fit the profile's prediction bins")
            parts.append(pred)
            parts.extend(groups)
        return np.fromiter(chain.from_iterable(parts), dtype=np.int64, count=self.size)


@dataclass(frozen=True)
class NodeSnapshot:
    """What one node's agent said at one time about the release it serves (cumulative counters)."""

    node: str
    model: str
    version: str
    digest: str | None
    epoch: str | None  # identity of the counters; None: unknown (older agents), resets found by decreases only
    counter_start: float
    taken_at: float
    requests: int
    errors: int
    rows: int
    latency: LatencySketch | None = None
    histogram: np.ndarray | None = None  # scoring latency per bucket of LATENCY_BOUNDS (+Inf last)
    counts: np.ndarray | None = None  # drift counts in the profile's layout
    profile_sha256: str | None = None
    regression: Mapping[str, Any] | None = None  # the agent's latency-regression detector state

    def same_counters(self, later: NodeSnapshot) -> bool:
        """True when ``later`` continues these counters (same epoch, nothing went down)."""
        if self.version != later.version or self.profile_sha256 != later.profile_sha256:
            return False
        if self.epoch is not None and later.epoch is not None:
            if self.epoch != later.epoch:
                return False
        elif abs(self.counter_start - later.counter_start) > 1e-6:
            return False
        if later.requests < self.requests or later.errors < self.errors or later.rows < self.rows:
            return False
        if self.counts is not None and later.counts is not None and bool(np.any(later.counts < self.counts)):
            return False
        return not (self.histogram is not None and later.histogram is not None
                    and bool(np.any(later.histogram < self.histogram)))


@dataclass(frozen=True)
class Window:
    """Counts over ``[start, end]`` of one node, or of many merged (``nodes``). ``partial`` says what is missing."""

    model: str
    version: str
    start: float
    end: float
    requests: int
    errors: int
    rows: int
    latency: LatencySketch | None
    histogram: np.ndarray | None
    counts: np.ndarray | None
    nodes: tuple[str, ...]
    profile_sha256: str | None = None
    partial: tuple[str, ...] = ()
    resets: int = 0

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)

    @property
    def error_rate(self) -> float | None:
        total = self.requests + self.errors
        return self.errors / total if total else None

    @property
    def rps(self) -> float | None:
        return self.requests / self.seconds if self.seconds > 0 else None


def _delta(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if b is None:
        return None
    return b.copy() if a is None else b - a


def _since_start(s: NodeSnapshot) -> Window:
    return Window(s.model, s.version, s.counter_start, s.taken_at, s.requests, s.errors, s.rows,
                  s.latency.copy() if s.latency is not None else None,
                  None if s.histogram is None else s.histogram.copy(),
                  None if s.counts is None else s.counts.copy(), (s.node,), s.profile_sha256)


def _step(a: NodeSnapshot, b: NodeSnapshot) -> Window:
    """b - a for two snapshots of the same counters."""
    latency = None
    if b.latency is not None:
        latency = b.latency.minus(a.latency) if a.latency is not None else b.latency.copy()
    return Window(b.model, b.version, a.taken_at, b.taken_at, b.requests - a.requests, b.errors - a.errors,
                  b.rows - a.rows, latency, histogram_delta(b.histogram, a.histogram), _delta(a.counts, b.counts),
                  (b.node,), b.profile_sha256)


def _add(w: Window, other: Window, *, end: float | None = None) -> Window:
    latency = w.latency
    if other.latency is not None:
        latency = other.latency.copy() if latency is None else _merged_sketch(latency, other.latency)
    return replace(
        w, end=other.end if end is None else end, requests=w.requests + other.requests,
        errors=w.errors + other.errors, rows=w.rows + other.rows, latency=latency,
        histogram=_sum(w.histogram, other.histogram), counts=_sum(w.counts, other.counts),
    )


def _merged_sketch(a: LatencySketch, b: LatencySketch) -> LatencySketch:
    out = a.copy()
    out.merge(b)
    return out


def _sum(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None if b is None else b.copy()
    return a if b is None else a + b


def window_of(samples: Sequence[NodeSnapshot], start: float) -> Window | None:
    """The increase of one node's counters from ``start`` to its last sample, across resets (Prometheus' rule).

    ``samples`` are the node's snapshots in time order (e.g. a Prometheus range query, or the agent's ring base
    and its current counters). The base is the last sample at or before ``start``; when there is none, the
    window starts at the first sample (or at its counters' start when they started after ``start``) and is
    partial. Every reset between two samples adds what the newer one counted since its start and is partial
    too: what was counted between the older sample and the reset is lost. Versions differ -> only the samples of
    the last sample's version count (the profile changed with them).
    """
    if not samples:
        return None
    last = samples[-1]
    same_version = [s for s in samples if s.version == last.version and s.profile_sha256 == last.profile_sha256]
    before = [s for s in same_version if s.taken_at <= start]
    partial: list[str] = []
    if len(same_version) < len(samples):
        partial.append(f"{last.node}: serves {last.version} since {_utc(same_version[0].taken_at)} "
                       "(earlier rows were counted for another version)")
    if before:
        base = before[-1]
        chain = [base, *(s for s in same_version if s.taken_at > start)]
        w: Window | None = None
    else:
        first = same_version[0]
        chain = list(same_version)
        if first.counter_start >= start - 1e-6:
            w = _since_start(first)
            if first.counter_start > start + 1e-6:
                partial.append(f"{first.node}: counters start at {_utc(first.counter_start)} "
                               "(agent started or reloaded then)")
        else:
            w = None
            partial.append(f"{first.node}: no snapshot before {_utc(first.taken_at)}; "
                           "the window starts there")
    resets = 0
    for a, b in pairwise(chain):
        if a.same_counters(b):
            step = _step(a, b)
        else:
            resets += 1
            step = _since_start(b)
            partial.append(f"{b.node}: counters reset at {_utc(b.counter_start)} (agent restarted or reloaded); "
                           f"rows counted between {_utc(a.taken_at)} and then are lost")
        w = step if w is None else _add(w, step)
    if w is None:  # a single base sample: nothing happened after it
        w = replace(_step(chain[0], chain[0]), start=start, end=chain[0].taken_at)
    return replace(w, partial=tuple(partial), resets=resets)


def merge(windows: Iterable[Window]) -> Window | None:
    """The fleet window of one model version: counts add; the span covers every node's; partial reasons kept."""
    items = list(windows)
    if not items:
        return None
    first = items[0]
    for w in items[1:]:
        if (w.model, w.version) != (first.model, first.version):
            raise ValueError(f"cannot merge {w.model}@{w.version} into {first.model}@{first.version}")
        if w.profile_sha256 != first.profile_sha256:
            raise ValueError(f"{w.model}@{w.version}: nodes count on different profiles")
    counts = _stack_sum([w.counts for w in items])
    hist = _stack_sum([w.histogram for w in items])
    latency: LatencySketch | None = None
    for w in items:
        if w.latency is not None:
            if latency is None:
                latency = w.latency.copy()
            else:
                latency.merge(w.latency)
    return Window(
        first.model, first.version, min(w.start for w in items), max(w.end for w in items),
        sum(w.requests for w in items), sum(w.errors for w in items), sum(w.rows for w in items), latency, hist,
        counts, tuple(n for w in items for n in w.nodes), first.profile_sha256,
        tuple(p for w in items for p in w.partial), sum(w.resets for w in items),
    )


def _stack_sum(arrays: Sequence[np.ndarray | None]) -> np.ndarray | None:
    present = [a for a in arrays if a is not None]
    if not present:
        return None
    return np.sum(np.stack(present), axis=0) if len(present) > 1 else present[0].copy()


def _utc(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class SnapshotSeries:
    """Snapshots per node, in time order (what a source returns for one model)."""

    by_node: dict[str, list[NodeSnapshot]] = field(default_factory=dict)

    def add(self, snapshot: NodeSnapshot) -> None:
        self.by_node.setdefault(snapshot.node, []).append(snapshot)

    def windows(self, start: float) -> list[Window]:
        out = []
        for samples in self.by_node.values():
            w = window_of(sorted(samples, key=lambda s: s.taken_at), start)
            if w is not None:
                out.append(w)
        return out
