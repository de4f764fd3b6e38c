"""The monitoring loop's one pass: counters from a source -> windows -> merged per model version -> verdicts.

::

    status = monitor_status(settings, model="credit-risk", window_s=900)      # blocking (HTTP)
    for v in status.versions:
        print(v.model, v.version, v.fleet.drift.verdict, v.fleet.latency.verdict, [b.kind for b in v.breaches])

For every model version served in the fleet, :class:`VersionStatus` holds the fleet :class:`Scope` (every node's
window merged: counts add) and one scope per node, each with its drift report (:mod:`core.drift_verdict`), its
latency verdict (:mod:`core.latency`), error rate, requests/s, the nodes whose latency detector says
``regressed``, and what makes the window partial. :class:`Breach` is what the alerting side acts on: dataset
drift, a group's positive-share shift, an SLO breach or a latency regression, fleet-wide (``node`` None) or on
one node; its ``key`` names the breach for idempotence (the same key while the breach persists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from modelfleet.core.drift import ReferenceProfile
from modelfleet.core.drift_counts import Window, merge, window_of
from modelfleet.core.drift_verdict import DRIFT, SHIFT, DriftReport, evaluate
from modelfleet.core.latency import LatencyVerdict, latency_verdict
from modelfleet.core.monitor_policy import ModelPolicy, MonitorPolicy, load_policy

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.fleet import Node
    from modelfleet.core.monitor_sources import AgentSource, Collected, PrometheusSource

BREACH_KINDS = ("dataset_drift", "group_shift", "slo_breach", "latency_regression")


@dataclass(frozen=True)
class Breach:
    """Something the alerting side acts on. ``key`` stays the same while the same breach persists."""

    kind: str  # one of BREACH_KINDS
    model: str
    version: str
    node: str | None  # None: the fleet's merged window
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.model}:{self.version}:{self.node or '*'}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}


@dataclass(frozen=True)
class Scope:
    """One model version over one window, on one node or on the fleet (``nodes`` says which)."""

    model: str
    version: str
    nodes: tuple[str, ...]
    window: Window
    drift: DriftReport | None
    drift_note: str | None  # why there is no drift report (no profile, ...)
    latency: LatencyVerdict
    regressed: tuple[str, ...]  # nodes whose latency detector says "regressed"

    @property
    def error_rate(self) -> float | None:
        return self.window.error_rate

    @property
    def rps(self) -> float | None:
        return self.window.rps

    @property
    def partial(self) -> tuple[str, ...]:
        return self.window.partial

    def to_dict(self) -> dict[str, Any]:
        w = self.window
        return {
            "model": self.model, "version": self.version, "nodes": list(self.nodes),
            "window": {"start": w.start, "end": w.end, "seconds": round(w.seconds, 3), "requests": w.requests,
                       "errors": w.errors, "rows": w.rows, "resets": w.resets, "partial": list(w.partial)},
            "error_rate": self.error_rate, "rps": self.rps,
            "latency": self.latency.to_dict(), "regressed": list(self.regressed),
            "drift": None if self.drift is None else self.drift.to_dict(), "drift_note": self.drift_note,
        }


@dataclass(frozen=True)
class VersionStatus:
    model: str
    version: str
    fleet: Scope
    nodes: dict[str, Scope]
    breaches: tuple[Breach, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "fleet": self.fleet.to_dict(),
                "nodes": {n: s.to_dict() for n, s in self.nodes.items()},
                "breaches": [b.to_dict() for b in self.breaches]}


@dataclass(frozen=True)
class MonitorStatus:
    at: float
    source: str
    window_s: float
    versions: tuple[VersionStatus, ...]
    unreachable: dict[str, str]
    notes: tuple[str, ...] = ()

    @property
    def breaches(self) -> tuple[Breach, ...]:
        return tuple(b for v in self.versions for b in v.breaches)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "source": self.source, "window_s": self.window_s,
                "versions": [v.to_dict() for v in self.versions], "unreachable": dict(self.unreachable),
                "notes": list(self.notes), "breaches": [b.to_dict() for b in self.breaches]}


def _latency(window: Window, policy: ModelPolicy) -> LatencyVerdict:
    return latency_verdict(window.histogram, window.latency, dict(policy.slo_ms), policy.min_requests)


def _scope(windows: Sequence[Window], profile: ReferenceProfile | None, policy: ModelPolicy,
           regressed: Sequence[str]) -> Scope | None:
    merged = merge(windows)
    if merged is None:
        return None
    drift = None
    note = None
    if profile is None:
        note = "no reference profile: this version was registered without a reference sample"
    elif merged.counts is None:
        note = "the agents did not report drift counts"
    else:
        drift = evaluate(profile, merged.counts, policy.drift, model=merged.model, version=merged.version)
    return Scope(merged.model, merged.version, merged.nodes, merged, drift, note, _latency(merged, policy),
                 tuple(regressed))


def _breaches(scope: Scope, node: str | None) -> list[Breach]:
    out: list[Breach] = []
    where = f"on {node}" if node else "on the fleet"
    m, v = scope.model, scope.version
    d = scope.drift
    if d is not None and d.verdict == DRIFT:
        out.append(Breach("dataset_drift", m, v, node, f"{m}@{v} {where}: {len(d.drifted)} of "
                          f"{len(d.features)} features drift ({', '.join(d.drifted)})",
                          {"drifted": list(d.drifted), "share": d.drift_share, "rows": d.rows,
                           "features": [f.to_dict() for f in d.features if f.verdict == DRIFT]}))
    if d is not None and d.shifted_groups:
        groups = [g for g in d.groups if g.verdict == SHIFT]
        out.append(Breach("group_shift", m, v, node, f"{m}@{v} {where}: share of {d.positive_class!r} moved in "
                          + ", ".join(f"{g.group} ({g.reference_share:.3f} -> {g.share:.3f})" for g in groups
                                      if g.share is not None and g.reference_share is not None),
                          {"positive_class": d.positive_class, "groups": [g.to_dict() for g in groups]}))
    lat = scope.latency
    if lat.verdict == "SLO_BREACH":
        out.append(Breach("slo_breach", m, v, node, f"{m}@{v} {where}: "
                          + ", ".join(f"{q} over {lat.budgets_ms[q]:g} ms ({(lat.over[q] or 0) * 100:.1f}% slower)"
                                      for q in lat.breaches), lat.to_dict()))
    if node is not None and node in scope.regressed:
        out.append(Breach("latency_regression", m, v, node, f"{m}@{v} on {node}: latency regressed "
                          "(sequential detector)", {"p95_ms": lat.p95_ms, "requests": lat.requests}))
    return out


def evaluate_collected(collected: Collected, policy: MonitorPolicy, window_s: float, *, model: str | None = None,
                       version: str | None = None) -> MonitorStatus:
    """Windows, merges and verdicts of what a source collected."""
    start = collected.at - window_s
    per_version: dict[tuple[str, str, str | None], dict[str, Window]] = {}
    regressed: dict[tuple[str, str, str | None], list[str]] = {}
    for node, samples in collected.snapshots.items():
        w = window_of(sorted(samples, key=lambda s: s.taken_at), start)
        if w is None or (model and w.model != model) or (version and w.version != version):
            continue
        key = (w.model, w.version, w.profile_sha256)
        per_version.setdefault(key, {})[node] = w
        state = (samples[-1].regression or {}).get("state")
        if state == "regressed":
            regressed.setdefault(key, []).append(node)
    versions: list[VersionStatus] = []
    for key in sorted(per_version, key=lambda k: (k[0], _version_order(k[1]))):
        m, v, sha = key
        profile = collected.profiles.get(sha) if sha else None
        mp = policy.for_model(m)
        windows = per_version[key]
        fleet = _scope(list(windows.values()), profile, mp, regressed.get(key, []))
        assert fleet is not None
        nodes: dict[str, Scope] = {}
        for name, w in windows.items():
            scope = _scope([w], profile, mp, [name] if name in regressed.get(key, []) else [])
            assert scope is not None
            nodes[name] = scope
        # one node: its own breaches say it all (a fleet copy of each would alert twice)
        breaches = _breaches(fleet, None) if len(nodes) > 1 else []
        for name, scope in nodes.items():
            breaches.extend(_breaches(scope, name))
        versions.append(VersionStatus(m, v, fleet, nodes, tuple(breaches)))
    return MonitorStatus(collected.at, collected.source, window_s, tuple(versions), dict(collected.unreachable),
                         tuple(collected.notes))


def _version_order(v: str) -> tuple[int, str]:
    return (int(v), "") if v.isdigit() else (1 << 30, v)


def collect(source: AgentSource | PrometheusSource, nodes: Sequence[Node], window_s: float,
            model: str | None = None) -> Collected:
    from modelfleet.core.monitor_sources import PrometheusSource

    if isinstance(source, PrometheusSource):
        return source.collect(nodes, window_s, model=model)
    return source.collect(nodes, window_s)


def monitor_status(settings: Settings, *, model: str | None = None, version: str | None = None,
                   limit: str | None = None, window_s: float | None = None, source: str | None = None,
                   policy: MonitorPolicy | None = None) -> MonitorStatus:
    """One pass over the fleet of ``settings`` (nodes selected by ``limit``, an Ansible-style pattern)."""
    from modelfleet.core.config import parse_duration
    from modelfleet.core.fleet import Inventory
    from modelfleet.core.monitor_sources import source_for

    window = window_s if window_s is not None else parse_duration(settings.monitor.window, origin="monitor.window")
    inventory = Inventory.load(settings.fleet.inventory, default_agent_port=settings.fleet.agent_port)
    nodes = inventory.select(limit)
    chosen = source_for(settings, source)
    collected = collect(chosen, nodes, window, model)
    return evaluate_collected(collected, policy or load_policy(settings), window, model=model, version=version)
