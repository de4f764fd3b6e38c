"""One loaded version and its counters: what ``/stats``, ``/metrics`` and the monitoring loop read.

The counters only grow for as long as the version is served (its *epoch*: a random id and ``counter_start``);
a reload or a restart starts a new epoch at zero, which readers detect as a reset. ``/stats`` serves them
cumulative, so a window is the difference of two snapshots; the agent keeps a ring of its own snapshots
(every ``snapshot_interval_s``, the last ``snapshots`` of them) so that ``GET /stats?window=900`` can also return
the snapshot taken at or before 15 minutes ago as ``base`` without anyone scraping in between.

``/stats`` (format ``modelfleet-stats/2``; the console and ``core/monitor_sources.py`` read it)::

    {"format": "modelfleet-stats/2", "model", "version", "digest",
     "epoch": "9f2c...", "counter_start": 1733300000.0, "window_start": <same>, "window_start_utc": "...",
     "taken_at": 1733300900.0,
     "requests": 1200, "errors": 3, "rows": 2400,
     "latency": {"unit": "seconds", "p50", "p95", "p99", "sketch": {ddsketch/1},
                 "histogram": {"le": [0.0005, ..., 10.0], "counts": [... one per bound, then +Inf]}},
     "latency_regression": {"method": "cusum-log-latency", "state": "warming|watching|regressed", ...},
     "predictions": {"classes": {...}, "group_column": "applicant_group", "by_group": {...}},
     "drift": {"available": true, "reason": null, "profile_sha256": "...",
               "counts": {"rows", "features": {name: {"kind", "bins", "counts", "missing_column_rows"}},
                          "predictions": {"bins", "counts"},
                          "predictions_by_group": {"column", "groups": {label: [counts per prediction bin]}}}},
     "base": {<"taken_at", "requests", "errors", "rows", "latency", "drift" as above> at the ring snapshot},
     "uptime_s", "draining"}

``base`` is only there with ``?window=SECONDS``: the newest ring snapshot taken at or before ``now - SECONDS``,
else the oldest one (the epoch's first, taken when the version was loaded, holds zeros).
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import time
import uuid
from collections import Counter as TallyCounter
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfleet.core.drift import DriftCounter
from modelfleet.core.latency import LATENCY_BOUNDS, LatencySketch
from modelfleet.core.latency_regression import LatencyRegressionDetector

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.agent.metrics import AgentMetrics
    from modelfleet.agent.release import Release

STATS_FORMAT = "modelfleet-stats/2"
MAX_GROUPS = 64
MAX_CLASSES = 128
MAX_CHILDREN = 4096
SNAPSHOT_INTERVAL_S = 60.0
SNAPSHOTS = 60


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def profile_sha256(release: Release) -> str | None:
    """The sha256 of the release's profile.json (from the manifest when it lists it)."""
    if release.profile is None:
        return None
    files = (release.manifest or {}).get("files") or {}
    ref = (release.manifest or {}).get("profile") or "profile.json"
    if isinstance(files, dict) and isinstance(files.get(ref), str):
        return str(files[ref])
    try:
        return hashlib.sha256((release.path / ref).read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass
class Served:
    """One loaded version and its counters since it was loaded (one epoch)."""

    release: Release
    group_column: str | None
    drift: DriftCounter | None
    snapshot_interval_s: float = SNAPSHOT_INTERVAL_S
    snapshots: int = SNAPSHOTS
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    window_start: float = field(default_factory=time.time)
    latency: LatencySketch = field(default_factory=LatencySketch)
    histogram: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    regression: LatencyRegressionDetector = field(default_factory=LatencyRegressionDetector)
    requests: int = 0
    errors: int = 0
    rows: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    by_group: dict[str, dict[str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    version_header: bytes = b""
    profile_sha256: str | None = None
    ring: deque[dict[str, Any]] = field(default_factory=deque)
    # Prometheus children of the prediction counters, by (group, class) and ("c", class); bounded by the labels
    _children: dict[tuple[Any, Any], Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.version_header = self.release.version.encode("latin-1", "replace")
        self.profile_sha256 = profile_sha256(self.release)
        self.ring = deque(maxlen=max(1, self.snapshots))
        self.ring.append(self._counters(self.window_start))  # the epoch's start: all zeros

    def profile_json(self) -> bytes:
        """The release's profile.json bytes (what ``profile_sha256`` hashes), or the profile re-serialised."""
        ref = (self.release.manifest or {}).get("profile") or "profile.json"
        try:
            return (self.release.path / str(ref)).read_bytes()
        except OSError:
            profile = self.release.profile
            return profile.to_json().encode() if profile is not None else b"null"

    # -- counting -------------------------------------------------------------------------------------------
    def observe(self, seconds: float) -> None:
        """One answered scoring request (called on the event loop)."""
        self.requests += 1
        self.latency.add(seconds)
        self.histogram[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.regression.update(seconds)

    def record(self, frame: Any, preds: Any, metrics: AgentMetrics,
               columns: dict[str, np.ndarray] | None = None) -> None:
        """Count one predicted batch (called from the predict thread). ``columns``: the batch's typed columns
        (numpy arrays, much cheaper to read than the DataFrame's)."""
        n = len(frame)
        arr = np.asarray(preds)
        flat = arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim > 1 else arr
        discrete = flat.dtype.kind in "biuUSO" or (self.release.classes is not None)
        version = self.release.version
        source: Any = columns if columns is not None else frame
        groups: list[Any] | None = None
        if self.group_column and (columns is not None or hasattr(frame, "columns")) and self.group_column in source:
            groups = source[self.group_column].tolist()
        with self.lock:
            self.rows += n
            if self.drift is not None:
                if columns is not None:
                    self.drift.add(columns, flat)  # counted with other requests' rows, or when read
                else:
                    self.drift.update(source, flat)
            if not discrete or flat.shape[0] != n:
                return
            values = flat.tolist()
            tally = TallyCounter(values)
            children = self._children
            for cls, count in tally.items():
                key = str(cls)
                if key not in self.classes and len(self.classes) >= MAX_CLASSES:
                    key = "other"
                self.classes[key] = self.classes.get(key, 0) + count
                child = children.get(("c", cls))
                if child is None:  # labels() costs microseconds: once per class, not once per batch
                    child = metrics.predictions.labels(version, metrics.class_label(cls))
                    if len(children) < MAX_CHILDREN:
                        children[("c", cls)] = child
                child.inc(count)
            if groups is not None:
                for (g, cls), count in TallyCounter(zip(groups, values, strict=True)).items():
                    gk = str(g)
                    if gk not in self.by_group and len(self.by_group) >= MAX_GROUPS:
                        gk = "other"
                    per = self.by_group.setdefault(gk, {})
                    ck = str(cls)
                    if ck not in per and len(per) >= MAX_CLASSES:
                        ck = "other"
                    per[ck] = per.get(ck, 0) + count
                    child = children.get((g, cls))
                    if child is None:
                        child = metrics.by_group.labels(version, metrics.group_label(g), metrics.class_label(cls))
                        if len(children) < MAX_CHILDREN:  # raw values are unbounded: the cache is not
                            children[(g, cls)] = child
                    child.inc(count)

    # -- snapshots ------------------------------------------------------------------------------------------
    def _counters(self, now: float) -> dict[str, Any]:
        """The cumulative counters at ``now`` (JSON-ready); the caller holds the lock or owns the object."""
        out: dict[str, Any] = {
            "taken_at": now, "requests": self.requests, "errors": self.errors, "rows": self.rows,
            "latency": {"unit": "seconds", **self.latency.quantiles(), "sketch": self.latency.to_dict(),
                        "histogram": {"le": list(LATENCY_BOUNDS), "counts": list(self.histogram)}},
        }
        if self.drift is not None:
            out["drift"] = {"available": True, "reason": None, "profile_sha256": self.profile_sha256,
                            "counts": self.drift.snapshot()}
        else:
            out["drift"] = {"available": False,
                            "reason": self.release.profile_error or "no reference profile"}
        return out

    def tick(self, now: float | None = None) -> None:
        """Add a ring snapshot when the interval since the last one has passed (cheap to call often)."""
        now = time.time() if now is None else now
        if now - self.ring[-1]["taken_at"] < self.snapshot_interval_s:
            return
        with self.lock:
            self.ring.append(self._counters(now))

    def base(self, seconds: float, now: float) -> dict[str, Any]:
        """The ring snapshot at or before ``now - seconds`` (else the oldest one kept)."""
        target = now - seconds
        chosen = self.ring[0]
        for snap in self.ring:
            if snap["taken_at"] <= target:
                chosen = snap
            else:
                break
        return chosen

    def stats(self, window_s: float | None = None) -> dict[str, Any]:
        r = self.release
        now = time.time()
        self.tick(now)
        with self.lock:
            out: dict[str, Any] = {
                "format": STATS_FORMAT, "model": r.name, "version": r.version, "digest": r.digest,
                "epoch": self.epoch, "counter_start": self.window_start, "window_start": self.window_start,
                "window_start_utc": _utc(self.window_start),
                **self._counters(now),
                "latency_regression": self.regression.to_dict(),
                "predictions": {"classes": dict(self.classes), "group_column": self.group_column,
                                "by_group": {g: dict(c) for g, c in self.by_group.items()}},
            }
        if window_s is not None:
            out["base"] = self.base(window_s, now)
        return out
