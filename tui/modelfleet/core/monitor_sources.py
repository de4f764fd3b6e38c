"""Where the monitoring loop reads the agents' counters: the agents themselves, or a Prometheus server.

Both sources answer the same question, "the snapshots of every node's counters that cover the last W seconds",
as :class:`~modelfleet.core.drift_counts.NodeSnapshot` series, and the same code turns them into windows
(:func:`~modelfleet.core.drift_counts.window_of`), so both give the same verdicts on the same traffic:

- :class:`AgentSource` (default, ``monitor.source = "agents"``): ``GET /stats?window=W`` on every node returns its
  current counters and its own ring snapshot taken at or before ``now - W`` (``base``); the reference profile
  comes from the agent's ``GET /profile`` once per profile (cached by sha256 under ``<state>/monitor/profiles``);
- :class:`PrometheusSource` (``monitor.source = "prometheus"``): one range query per metric family over
  ``W + lookback`` returns the raw samples Prometheus scraped (no ``increase()``: its extrapolation would make
  counts that no agent counted); the profile comes from the controller's cache (the bundle it built, or the
  profile cache), named by the ``profile_info`` metric's sha256.

A node that does not answer is listed in :attr:`Collected.unreachable` with the reason, never silently dropped.
Transports are injectable (``httpx`` transports) for tests without sockets.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfleet.core.drift import ReferenceProfile
from modelfleet.core.drift_counts import CountsLayout, NodeSnapshot
from modelfleet.core.errors import ConfigError, ModelfleetError
from modelfleet.core.fleet_status import http_failure_reason
from modelfleet.core.latency import LATENCY_BOUNDS, LatencySketch

if TYPE_CHECKING:  # pragma: no cover
    import ssl

    import httpx

    from modelfleet.core.config import Settings
    from modelfleet.core.fleet import Node

PROMETHEUS_LOOKBACK_S = 300.0


class SourceError(ModelfleetError):
    """A monitoring source could not be read (Prometheus down, a bad answer)."""


@dataclass
class Collected:
    """What a source returned: snapshots per node (time order), profiles by sha256, nodes it could not read."""

    snapshots: dict[str, list[NodeSnapshot]] = field(default_factory=dict)
    profiles: dict[str, ReferenceProfile] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)  # node -> reason
    notes: list[str] = field(default_factory=list)
    source: str = "agents"
    at: float = 0.0


class ProfileStore:
    """Reference profiles by sha256: memory, then ``<state>/monitor/profiles/<sha>.json``, then bundles built here."""

    def __init__(self, state_dir: Path | None) -> None:
        self.dir = None if state_dir is None else Path(state_dir) / "monitor" / "profiles"
        self.bundles = None if state_dir is None else Path(state_dir) / "bundles"
        self._memory: dict[str, ReferenceProfile] = {}

    def get(self, sha: str, *, model: str | None = None, version: str | None = None,
            fetch: Callable[[], bytes] | None = None) -> ReferenceProfile | None:
        if sha in self._memory:
            return self._memory[sha]
        data = self._from_disk(sha) or self._from_bundles(sha, model, version)
        if data is None and fetch is not None:
            data = fetch()
            import hashlib

            if hashlib.sha256(data).hexdigest() != sha:
                return None
        if data is None:
            return None
        profile = ReferenceProfile.from_json(data.decode("utf-8"))
        self._memory[sha] = profile
        self._save(sha, data)
        return profile

    def _from_disk(self, sha: str) -> bytes | None:
        if self.dir is None:
            return None
        try:
            return (self.dir / f"{sha}.json").read_bytes()
        except OSError:
            return None

    def _from_bundles(self, sha: str, model: str | None, version: str | None) -> bytes | None:
        import hashlib

        if self.bundles is None or model is None or version is None or not self.bundles.is_dir():
            return None
        for path in sorted(self.bundles.glob(f"{model}-{version}-*.tar.gz")):
            try:
                with tarfile.open(path, "r:gz") as tar:
                    member = tar.extractfile("profile.json")
                    data = member.read() if member is not None else None
            except (OSError, KeyError, tarfile.TarError):
                continue
            if data is not None and hashlib.sha256(data).hexdigest() == sha:
                return data
        return None

    def _save(self, sha: str, data: bytes) -> None:
        if self.dir is None:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{sha}.tmp"
            tmp.write_bytes(data)
            tmp.replace(self.dir / f"{sha}.json")
        except OSError:
            pass  # a cache: failing to keep it costs a fetch next time


# -- parsing an agent's /stats ------------------------------------------------------------------------------------


def _histogram(latency: Mapping[str, Any]) -> np.ndarray | None:
    hist = latency.get("histogram")
    if not isinstance(hist, dict) or list(hist.get("le") or []) != list(LATENCY_BOUNDS):
        return None
    return np.asarray(hist["counts"], dtype=np.int64)


def _sketch(latency: Mapping[str, Any]) -> LatencySketch | None:
    raw = latency.get("sketch")
    if not isinstance(raw, dict):
        return None
    try:
        return LatencySketch.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None


def snapshot_from_stats(node: str, stats: Mapping[str, Any], part: Mapping[str, Any],
                        layout: CountsLayout | None) -> NodeSnapshot:
    """One snapshot from a ``/stats`` answer: ``part`` is the answer itself or its ``base``."""
    drift = part.get("drift") or {}
    counts = None
    if layout is not None and drift.get("available"):
        counts = layout.vector(drift["counts"])
    latency = part.get("latency") or {}
    return NodeSnapshot(
        node=node, model=str(stats.get("model")), version=str(stats.get("version")), digest=stats.get("digest"),
        epoch=stats.get("epoch"), counter_start=float(stats.get("counter_start", stats.get("window_start", 0.0))),
        taken_at=float(part.get("taken_at", time.time())), requests=int(part.get("requests") or 0),
        errors=int(part.get("errors") or 0), rows=int(part.get("rows") or 0), latency=_sketch(latency),
        histogram=_histogram(latency), counts=counts,
        profile_sha256=(stats.get("drift") or {}).get("profile_sha256"),
        regression=stats.get("latency_regression") if part is stats else None,
    )


class AgentSource:
    """Reads ``/stats?window=W`` (and ``/profile`` once per profile) from every node's agent."""

    name = "agents"

    def __init__(self, profiles: ProfileStore, *, timeout_s: float = 5.0, concurrency: int = 32,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.profiles = profiles
        self.timeout_s = timeout_s
        self.concurrency = max(1, concurrency)
        self.transport = transport
        self._tls: ssl.SSLContext | None = None

    def _one(self, node: Node, window_s: float) -> tuple[str, list[NodeSnapshot], ReferenceProfile | None, str]:
        import httpx

        try:
            with httpx.Client(timeout=self.timeout_s, transport=self.transport, trust_env=False,
                              verify=self._tls or True) as client:
                r = client.get(f"{node.agent_url}/stats", params={"window": f"{window_s:g}"})
                if r.status_code != 200:
                    return node.name, [], None, f"/stats answered HTTP {r.status_code}: {r.text[:120]}"
                stats = r.json()
                sha = (stats.get("drift") or {}).get("profile_sha256")
                profile = None
                if sha:
                    def fetch() -> bytes:
                        return client.get(f"{node.agent_url}/profile").raise_for_status().content

                    profile = self.profiles.get(sha, model=stats.get("model"), version=str(stats.get("version")),
                                                fetch=fetch)
        except (httpx.HTTPError, ValueError) as exc:
            return node.name, [], None, http_failure_reason(exc)
        layout = CountsLayout.from_profile(profile) if profile is not None else None
        try:
            snaps = [snapshot_from_stats(node.name, stats, stats["base"], layout)] if "base" in stats else []
            snaps.append(snapshot_from_stats(node.name, stats, stats, layout))
        except (ValueError, KeyError, TypeError) as exc:
            return node.name, [], None, f"/stats does not fit its profile: {exc}"
        return node.name, snaps, profile, ""

    def collect(self, nodes: Sequence[Node], window_s: float) -> Collected:
        import httpx

        if self._tls is None:
            # one TLS context for every node's client: each client would otherwise load the CA bundle again
            # (~18 ms of CPU a node, 3.6 s a pass over 200 nodes)
            self._tls = httpx.create_ssl_context()
        out = Collected(source=self.name, at=time.time())
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(nodes)))) as pool:
            for name, snaps, profile, error in pool.map(lambda n: self._one(n, window_s), nodes):
                if error:
                    out.unreachable[name] = error
                    continue
                out.snapshots[name] = snaps
                if profile is not None and snaps[-1].profile_sha256:
                    out.profiles[snaps[-1].profile_sha256] = profile
        return out


# -- Prometheus ---------------------------------------------------------------------------------------------------

_P = "modelfleet_agent_"
FAMILIES = ("counter_start_time_seconds", "scored_requests_total", "scoring_errors_total", "scored_rows_total",
            "scoring_latency_seconds_bucket", "profile_info", "drift_rows_total", "drift_predictions_total",
            "drift_group_predictions_total", "latency_regression", "latency_regression_alarms_total")


@dataclass
class _Scrape:
    """Everything one node's agent exposed at one scrape (one Prometheus timestamp)."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    model: str = ""
    version: str = ""

    def get(self, family: str, **labels: str) -> float | None:
        key = (family, tuple(sorted(labels.items())))
        return self.values.get(key)


class PrometheusSource:
    """Reads the agents' counters from a Prometheus server's HTTP API (``/api/v1/query`` with range selectors)."""

    name = "prometheus"

    def __init__(self, url: str, profiles: ProfileStore, *, timeout_s: float = 10.0,
                 lookback_s: float = PROMETHEUS_LOOKBACK_S, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.profiles = profiles
        self.timeout_s = timeout_s
        self.lookback_s = lookback_s
        self.transport = transport

    def _query(self, client: httpx.Client, expr: str, at: float) -> list[dict[str, Any]]:
        import httpx

        try:
            r = client.get(f"{self.url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"})
        except httpx.HTTPError as exc:
            raise SourceError(f"Prometheus at {self.url} did not answer: {http_failure_reason(exc)}",
                              hint="start Prometheus (see monitoring/README.md) or set monitor.prometheus_url, "
                                   "or use --source agents") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200 or body.get("status") != "success":
            raise SourceError(f"Prometheus refused {expr!r}: HTTP {r.status_code} {body.get('error', r.text[:200])}",
                              hint="check monitor.prometheus_url points at a Prometheus server")
        data = body.get("data") or {}
        return list(data.get("result") or []) if data.get("resultType") == "matrix" else []

    def collect(self, nodes: Sequence[Node], window_s: float, *, model: str | None = None) -> Collected:
        import httpx

        at = time.time()
        out = Collected(source=self.name, at=at)
        wanted = {n.name for n in nodes}
        span = int(window_s + self.lookback_s)
        selector = f'{{model="{model}"}}' if model else ""
        scrapes: dict[str, dict[float, _Scrape]] = {}
        with httpx.Client(timeout=self.timeout_s, transport=self.transport, trust_env=False) as client:
            for family in FAMILIES:
                for series in self._query(client, f"{_P}{family}{selector}[{span}s]", at):
                    labels = dict(series.get("metric") or {})
                    node = labels.pop("node", None) or labels.get("instance", "?")
                    if node not in wanted:
                        continue
                    labels.pop("__name__", None)
                    model_label, version = labels.get("model", ""), labels.get("version", "")
                    key_labels = {k: v for k, v in labels.items() if k in ("feature", "bin", "group", "le",
                                                                               "profile_sha256")}
                    for ts, value in series.get("values") or []:
                        s = scrapes.setdefault(node, {}).setdefault(float(ts), _Scrape())
                        s.model, s.version = model_label or s.model, version or s.version
                        s.values[(family, tuple(sorted(key_labels.items())))] = float(value)
        for node in sorted(wanted - set(scrapes)):
            out.unreachable[node] = "no samples in Prometheus for this window"
        for node, by_time in scrapes.items():
            snaps = []
            for ts in sorted(by_time):
                snap = self._snapshot(node, ts, by_time[ts], out)
                if snap is not None:
                    snaps.append(snap)
            if snaps:
                out.snapshots[node] = snaps
                last_seen = snaps[-1].taken_at
                if at - last_seen > max(60.0, 0.1 * window_s):
                    out.notes.append(f"{node}: last scraped at {_utc(last_seen)}")
        return out

    def _snapshot(self, node: str, ts: float, s: _Scrape, out: Collected) -> NodeSnapshot | None:
        start = s.get("counter_start_time_seconds")
        if start is None or not s.version:
            return None
        sha = next((dict(lab).get("profile_sha256") for fam, lab in s.values if fam == "profile_info"), None)
        profile = out.profiles.get(sha) if sha else None
        if sha and profile is None:
            profile = self.profiles.get(sha, model=s.model, version=s.version)
            if profile is None:
                raise ConfigError(
                    f"{s.model}@{s.version}: reference profile {sha[:12]} is not on this controller",
                    hint=f"build its bundle here (modelfleet bundle {s.model}/{s.version}) or use --source agents")
            out.profiles[sha] = profile
        counts = None
        if profile is not None:
            layout = CountsLayout.from_profile(profile)
            counts = np.zeros(layout.size, dtype=np.int64)
            offsets = layout.offsets
            for i, name in enumerate(layout.names):
                for b in range(layout.sizes[i]):
                    counts[offsets[i] + b] = int(s.get("drift_rows_total", bin=str(b), feature=name) or 0)
            p0 = layout.features_size
            for b in range(layout.prediction_size):
                counts[p0 + b] = int(s.get("drift_predictions_total", bin=str(b)) or 0)
            if profile.group_bins is not None:
                g0 = p0 + layout.prediction_size
                for g, label in enumerate(profile.group_bins.labels()):
                    for b in range(layout.prediction_size):
                        value = s.get("drift_group_predictions_total", bin=str(b), group=label)
                        counts[g0 + g * layout.prediction_size + b] = int(value or 0)
        cumulative = [s.get("scoring_latency_seconds_bucket", le=repr(b)) for b in LATENCY_BOUNDS]
        cumulative.append(s.get("scoring_latency_seconds_bucket", le="+Inf"))
        histogram = None
        if all(c is not None for c in cumulative):
            histogram = np.diff(np.asarray([0.0, *cumulative], dtype=float)).astype(np.int64)
        regressed = s.get("latency_regression")
        return NodeSnapshot(
            node=node, model=s.model, version=s.version, digest=None, epoch=None, counter_start=float(start),
            taken_at=ts, requests=int(s.get("scored_requests_total") or 0),
            errors=int(s.get("scoring_errors_total") or 0), rows=int(s.get("scored_rows_total") or 0),
            latency=None, histogram=histogram, counts=counts, profile_sha256=sha,
            regression=None if regressed is None else {
                "state": "regressed" if regressed >= 1 else "watching",
                "alarms": int(s.get("latency_regression_alarms_total") or 0)},
        )


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def source_for(settings: Settings, name: str | None = None) -> AgentSource | PrometheusSource:
    """The source ``name`` (default ``monitor.source``) configured from the settings."""
    chosen = name or settings.monitor.source
    profiles = ProfileStore(settings.state_dir)
    if chosen == "agents":
        return AgentSource(profiles, timeout_s=max(settings.fleet.probe_timeout_s, 2.0),
                           concurrency=settings.fleet.probe_concurrency)
    if chosen == "prometheus":
        return PrometheusSource(settings.monitor.prometheus_url, profiles)
    raise ConfigError(f"unknown monitoring source {chosen!r}", hint="use agents or prometheus")
