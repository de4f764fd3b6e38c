"""Fleet status, headless: probe every agent's ``/health``, ``/stats`` and ``/metrics`` and build status rows.

The console (and any script) asks a :class:`FleetProber` for one :class:`NodeStatus` per inventory node. A
probe is three GETs per node, one after another over one httpx connection of its own, each with a timeout, and a
bounded number of nodes in flight (``fleet.probe_concurrency``); a node that does not answer costs one
``fleet.probe_timeout_s`` (one that answers each GET just under it, up to three). ::

    prober = FleetProber.from_settings(settings)
    rows = prober.probe_sync(inventory.nodes)      # blocking: call it from a worker thread
    for row in rows:
        print(row.name, row.state, row.p99_ms, row.slo_breaches)

What a row holds and where it comes from:

* model, version, digest, health: ``/health`` (503 -> ``unavailable`` with the agent's reason);
* p50/p95/p99: the latency sketch in ``/stats`` decoded with :mod:`modelfleet.core.latency`, compared with the
  SLO from ``[console]`` once the agent has answered ``monitor.min_requests`` requests (fewer: no SLO state);
  ``history`` keeps the p95 of each interval between probes (the previous sketch's bins subtracted from the
  current one), bounded;
* error rate and requests/s: ``/stats`` counters, as a rate between two probes (first probe: since the agent's
  window start);
* cpu and memory: ``/metrics`` (agent process CPU seconds as a rate, resident memory, host memory);
* ``unreachable``: the last probe could not connect or timed out; ``stale``: the last answer is older than
  ``console.stale_after_s``, so the numbers shown are old.

Pure apart from the HTTP calls: transport and clock are injectable, there is no Textual import.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.fleet import Node
from modelfleet.core.latency import LatencySketch

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from modelfleet.core.config import Settings

STATES = ("ok", "slo", "unavailable", "error", "unreachable", "stale", "unknown")
HISTORY_LEN = 60
DEPLOY_ALIASES = ("champion", "production")  # aliases that say "this is what should run"


@dataclass(frozen=True)
class Slo:
    """Latency objectives in milliseconds."""

    p50_ms: float = 20.0
    p95_ms: float = 50.0
    p99_ms: float = 100.0

    def budget(self, quantile: str) -> float:
        return float(getattr(self, f"{quantile}_ms"))


@dataclass(frozen=True)
class NodeStatus:
    """One node's status row. Numbers are None when unknown; times are epoch seconds."""

    name: str
    address: str
    node_class: str
    environment: str | None
    groups: tuple[str, ...]
    state: str = "unknown"  # one of STATES
    reason: str | None = None  # why the state is not ok (agent reason, HTTP error, exception)
    model: str | None = None
    version: str | None = None
    digest: str | None = None
    uptime_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    slo_breaches: tuple[str, ...] = ()  # e.g. ("p95", "p99")
    requests: int | None = None
    errors: int | None = None
    error_rate: float | None = None  # 0..1
    rps: float | None = None
    cpu: float | None = None  # agent process CPU, cores (1.0 = one core busy)
    mem_bytes: float | None = None  # agent resident memory
    host_mem_ratio: float | None = None  # host memory in use, 0..1
    drift_available: bool | None = None
    last_seen: float | None = None
    age_s: float | None = None  # seconds since last_seen, at probe time
    probed_at: float | None = None
    history: tuple[float, ...] = ()  # p95 per interval, ms, oldest first

    @property
    def reachable(self) -> bool:
        return self.state not in ("unreachable", "unknown", "stale")

    @property
    def target(self) -> str | None:
        """``model@version`` as served, or None."""
        if self.model is None:
            return None
        return f"{self.model}@{self.version}" if self.version else self.model

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class _Sample:
    at: float
    window_start: float | None
    version: str | None
    requests: int
    errors: int
    cpu_seconds: float | None
    sketch: LatencySketch | None


@dataclass
class _NodeMemory:
    last_ok: _Sample | None = None
    last_status: NodeStatus | None = None
    history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))


# -- parsing ----------------------------------------------------------------------------------------------------


def parse_prometheus(text: str, wanted: Iterable[str] | None = None) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A small parser for Prometheus text exposition: ``{name: [(labels, value), ...]}``.

    Only sample lines are read (``# HELP``/``# TYPE`` are skipped); ``wanted`` limits the names kept.
    """
    keep = set(wanted) if wanted is not None else None
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            end = line.rfind("}")
            label_text, rest = line[brace + 1:end], line[end + 1:]
        else:
            name, label_text, rest = line[:space], "", line[space:]
        if keep is not None and name not in keep:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue
        labels: dict[str, str] = {}
        if label_text:
            for item in _split_labels(label_text):
                k, _, v = item.partition("=")
                labels[k.strip()] = v.strip().strip('"').replace('\\"', '"').replace("\\\\", "\\")
        out.setdefault(name, []).append((labels, value))
    return out


def _split_labels(text: str) -> list[str]:
    items, buf, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\":
            buf.append(ch)
            escaped = True
        elif ch == '"':
            buf.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if buf:
        items.append("".join(buf))
    return [i for i in items if i.strip()]


_METRICS = (
    "modelfleet_agent_process_cpu_seconds_total",
    "modelfleet_agent_process_cpu_seconds",
    "modelfleet_agent_process_resident_memory_bytes",
    "modelfleet_agent_host_memory_bytes",
)


def _metric(parsed: Mapping[str, list[tuple[dict[str, str], float]]], name: str,
            labels: Mapping[str, str] | None = None) -> float | None:
    for lab, value in parsed.get(name, ()):
        if labels is None or all(lab.get(k) == v for k, v in labels.items()):
            return value
    return None


def sketch_delta(current: LatencySketch, previous: LatencySketch | None) -> LatencySketch:
    """The observations added between ``previous`` and ``current`` (same window): bins subtracted.

    When ``previous`` is None, or is not a prefix of ``current`` (the agent restarted or reset its window),
    ``current`` is returned unchanged.
    """
    if previous is None:
        return current
    delta = current.minus(previous)
    return current if delta is None else delta


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


# -- the prober --------------------------------------------------------------------------------------------------


class FleetProber:
    """Probes agents and remembers what it needs for rates, staleness and latency history (per node name).

    ``probe`` is a coroutine; ``probe_sync`` runs it on a private event loop (call it from a worker thread).
    One prober is not meant to run two probes at once; a lock serialises them.
    """

    def __init__(
        self,
        *,
        slo: Slo | None = None,
        stale_after_s: float = 30.0,
        min_requests: int = 50,
        timeout_s: float = 2.0,
        concurrency: int = 32,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        history_len: int = HISTORY_LEN,
    ) -> None:
        self.slo = slo or Slo()
        self.stale_after_s = stale_after_s
        self.timeout_s = timeout_s
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.transport = transport
        self.history_len = history_len
        self.min_requests = min_requests
        self._tls: Any = None
        self._memory: dict[str, _NodeMemory] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> FleetProber:
        c = settings.console
        return cls(slo=Slo(c.slo_p50_ms, c.slo_p95_ms, c.slo_p99_ms), stale_after_s=c.stale_after_s,
                   min_requests=settings.monitor.min_requests,
                   timeout_s=settings.fleet.probe_timeout_s, concurrency=settings.fleet.probe_concurrency, **kwargs)

    def _mem(self, name: str) -> _NodeMemory:
        mem = self._memory.get(name)
        if mem is None:
            mem = self._memory[name] = _NodeMemory(history=deque(maxlen=self.history_len))
        return mem

    def last(self, name: str) -> NodeStatus | None:
        mem = self._memory.get(name)
        return mem.last_status if mem else None

    def probe_sync(self, nodes: Sequence[Node]) -> list[NodeStatus]:
        """Blocking probe of ``nodes`` (inventory order kept)."""
        with self._lock:
            return asyncio.run(self._probe_all(nodes))

    async def probe(self, nodes: Sequence[Node]) -> list[NodeStatus]:
        """Probe ``nodes`` on the running event loop (network waits cost the loop nothing; each node's answers
        are parsed in their own small step)."""
        return await self._probe_all(nodes)

    def _client(self) -> httpx.AsyncClient:
        """A client for one node: one connection, reused for its three GETs, closed after them.

        One pool shared by the whole fleet costs O(connections) per request in httpcore (each request scans the
        pool and polls every idle socket): 5 CPU-seconds for 200 nodes here, against ~1 s with a pool per node.
        The TLS context (loading CA certificates takes milliseconds) is made once and shared. An injected
        ``transport`` is shared by these clients and closed with each: pass one whose close is a no-op (tests'
        ``httpx.MockTransport``)."""
        import httpx

        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), verify=self._tls,
                                 limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                 transport=self.transport, trust_env=False)

    async def _probe_all(self, nodes: Sequence[Node]) -> list[NodeStatus]:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(node: Node) -> NodeStatus:
            async with sem:
                return await self._probe_node(node)

        return list(await asyncio.gather(*(one(n) for n in nodes)))

    async def _probe_node(self, node: Node) -> NodeStatus:
        import httpx

        base = node.agent_url
        now = self.clock()
        try:
            async with self._client() as client:
                health_r = await client.get(f"{base}/health")
                stats_r = await client.get(f"{base}/stats")
                metrics_r = await client.get(f"{base}/metrics")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return self._unreachable(node, now, http_failure_reason(exc))
        try:
            health = health_r.json()
        except ValueError:
            health = {}
        stats: dict[str, Any] | None = None
        if stats_r.status_code == 200:
            try:
                stats = stats_r.json()
            except ValueError:
                stats = None
        metrics = parse_prometheus(metrics_r.text, _METRICS) if metrics_r.status_code == 200 else {}
        return self._build(node, now, health_r.status_code, health, stats, metrics)

    # -- turning answers into rows -------------------------------------------------------------------------

    def _base(self, node: Node) -> NodeStatus:
        return NodeStatus(name=node.name, address=node.address, node_class=node.node_class.value,
                          environment=node.environment, groups=node.groups)

    def _unreachable(self, node: Node, now: float, reason: str) -> NodeStatus:
        mem = self._mem(node.name)
        prev = mem.last_status
        if prev is not None and prev.last_seen is not None:
            age = now - prev.last_seen
            state = "stale" if age > self.stale_after_s else "unreachable"
            status = replace(prev, state=state, reason=reason, age_s=age, probed_at=now, rps=None, cpu=None,
                             history=tuple(mem.history))
        else:
            status = replace(self._base(node), state="unreachable", reason=reason, probed_at=now)
        mem.last_status = status
        return status

    def _build(self, node: Node, now: float, code: int, health: dict[str, Any], stats: dict[str, Any] | None,
               metrics: Mapping[str, list[tuple[dict[str, str], float]]]) -> NodeStatus:
        mem = self._mem(node.name)
        prev = mem.last_ok
        status = self._base(node)
        model = health.get("model") or (stats or {}).get("model")
        version = health.get("version") or (stats or {}).get("version")
        digest = health.get("digest") or (stats or {}).get("digest")
        fields: dict[str, Any] = {
            "model": model, "version": None if version is None else str(version), "digest": digest,
            "uptime_s": health.get("uptime_s") or (stats or {}).get("uptime_s"),
            "last_seen": now, "age_s": 0.0, "probed_at": now,
        }
        if code == 200:
            state, reason = "ok", None
        elif code == 503:
            state, reason = "unavailable", str(health.get("reason") or "not ready")
        else:
            state, reason = "error", f"/health answered HTTP {code}"

        sample: _Sample | None = None
        if stats is not None:
            requests = int(stats.get("requests") or 0)
            errors = int(stats.get("errors") or 0)
            window_start = stats.get("window_start")
            sketch = None
            lat = stats.get("latency") or {}
            if isinstance(lat.get("sketch"), dict):
                try:
                    sketch = LatencySketch.from_dict(lat["sketch"])
                except (KeyError, TypeError, ValueError):
                    sketch = None
            cpu_s = _metric(metrics, "modelfleet_agent_process_cpu_seconds_total")
            if cpu_s is None:
                cpu_s = _metric(metrics, "modelfleet_agent_process_cpu_seconds")
            sample = _Sample(now, window_start, fields["version"], requests, errors, cpu_s, sketch)
            same_window = (prev is not None and prev.window_start == window_start
                           and prev.version == sample.version and prev.requests <= requests)
            if sketch is not None:
                q = sketch.quantiles()
                fields.update(p50_ms=_ms(q["p50"]), p95_ms=_ms(q["p95"]), p99_ms=_ms(q["p99"]))
            else:
                fields.update(p50_ms=_ms(lat.get("p50")), p95_ms=_ms(lat.get("p95")), p99_ms=_ms(lat.get("p99")))
            fields.update(requests=requests, errors=errors)
            if same_window and prev is not None and now > prev.at:
                dt = now - prev.at
                dreq = requests - prev.requests
                fields["rps"] = dreq / dt
                fields["error_rate"] = (errors - prev.errors) / dreq if dreq > 0 else 0.0
                interval = sketch_delta(sketch, prev.sketch) if sketch is not None else None
            else:
                span = now - float(window_start) if isinstance(window_start, (int, float)) else None
                fields["rps"] = requests / span if span and span > 0 else None
                fields["error_rate"] = errors / requests if requests else 0.0
                interval = sketch
            if interval is not None and interval.count:
                p95 = interval.quantile(0.95)
                if p95 is not None:
                    mem.history.append(round(p95 * 1000.0, 3))
            if cpu_s is not None:
                if prev is not None and prev.cpu_seconds is not None and now > prev.at and cpu_s >= prev.cpu_seconds:
                    fields["cpu"] = (cpu_s - prev.cpu_seconds) / (now - prev.at)
                elif fields["uptime_s"]:
                    fields["cpu"] = cpu_s / float(fields["uptime_s"])
            drift = stats.get("drift")
            if isinstance(drift, dict):
                fields["drift_available"] = bool(drift.get("available"))
        fields["mem_bytes"] = _metric(metrics, "modelfleet_agent_process_resident_memory_bytes")
        total = _metric(metrics, "modelfleet_agent_host_memory_bytes", {"state": "total"})
        avail = _metric(metrics, "modelfleet_agent_host_memory_bytes", {"state": "available"})
        if total and avail is not None:
            fields["host_mem_ratio"] = 1.0 - avail / total

        # an SLO verdict needs enough requests: one 24 ms probe is not a breach (core/latency.py, min_requests)
        enough = (fields.get("requests") or 0) >= self.min_requests
        breaches = tuple(q for q in ("p50", "p95", "p99") if enough
                         and fields.get(f"{q}_ms") is not None and fields[f"{q}_ms"] > self.slo.budget(q))
        if breaches and state == "ok":
            state, reason = "slo", "over SLO: " + ", ".join(
                f"{q} {fields[f'{q}_ms']:.1f} > {self.slo.budget(q):g} ms" for q in breaches)
        status = replace(status, state=state, reason=reason, slo_breaches=breaches,
                         history=tuple(mem.history), **fields)
        if sample is not None:
            mem.last_ok = sample
        mem.last_status = status
        return status


def http_failure_reason(exc: BaseException) -> str:
    """One line for an httpx failure: 'timed out', 'connection refused' or the error's first line."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- fleet-level views ---------------------------------------------------------------------------------------------


def summarize(rows: Iterable[NodeStatus]) -> dict[str, int]:
    """Counts per state plus ``total``."""
    out = {s: 0 for s in STATES}
    total = 0
    for r in rows:
        out[r.state] = out.get(r.state, 0) + 1
        total += 1
    out["total"] = total
    return out


@dataclass(frozen=True)
class Placement:
    """Where one version of a model runs: per the ledger and per what the agents report."""

    version: str
    ledger_nodes: tuple[str, ...] = ()
    reported_nodes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.ledger_nodes) | set(self.reported_nodes)))

    @property
    def disagreeing(self) -> tuple[str, ...]:
        """Nodes where ledger and agent disagree about this version."""
        return tuple(sorted(set(self.ledger_nodes) ^ set(self.reported_nodes)))


def placements(model: str, events: Iterable[Any], statuses: Iterable[NodeStatus]) -> dict[str, Placement]:
    """version -> :class:`Placement` for ``model`` from ledger events and probed statuses."""
    status_list = list(statuses)
    by_node = {s.name: s for s in status_list}
    from modelfleet.core.placement import versions_by_node

    ledger = versions_by_node(events, model)
    versions: dict[str, dict[str, set[str]]] = {}
    for node, version in ledger.items():
        versions.setdefault(version, {"l": set(), "r": set()})["l"].add(node)
    for s in status_list:
        if s.model == model and s.version is not None:
            versions.setdefault(s.version, {"l": set(), "r": set()})["r"].add(s.name)
    out: dict[str, Placement] = {}
    for version, sets in versions.items():
        groups: set[str] = set()
        for n in sets["l"] | sets["r"]:
            st = by_node.get(n)
            if st is not None:
                groups.update(g for g in st.groups if g != "edge")
        out[version] = Placement(version, tuple(sorted(sets["l"])), tuple(sorted(sets["r"])), tuple(sorted(groups)))
    return out


def alias_mismatches(aliases: Mapping[str, int | str], places: Mapping[str, Placement],
                     deploy_aliases: Sequence[str] = DEPLOY_ALIASES) -> dict[str, str]:
    """version -> warning, for deploy aliases whose version is not what the fleet runs.

    ``champion -> 3`` while agents report 2 on some nodes gives ``{"3": "champion is v3 but 4 nodes run v2"}``.
    """
    out: dict[str, str] = {}
    for alias in deploy_aliases:
        if alias not in aliases:
            continue
        want = str(aliases[alias])
        others = {v: p for v, p in places.items() if v != want and p.reported_nodes}
        if not others:
            continue
        n = sum(len(p.reported_nodes) for p in others.values())
        running = ", ".join(f"v{v}" for v in sorted(others, key=_version_key))
        out[want] = f"{alias} is v{want} but {n} node{'s' if n != 1 else ''} run {running}"
    return out


def _version_key(v: str) -> tuple[int, str]:
    return (int(v), "") if v.isdigit() else (1 << 30, v)


# -- releases on disk ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    model: str
    name: str  # releases/<name>, e.g. 3-ab12cd34ef56
    current: bool = False
    previous: bool = False
    mtime: float | None = None


def releases_on_disk(node: Node, *, local_root: Path | None = None) -> list[Release] | None:
    """Releases under ``<root>/models/*/releases`` when the node's root is reachable as a local path (the
    simulated fleet); None for remote nodes (use the ledger instead)."""
    root = local_root or Path(node.root)
    models = root / "models"
    if not models.is_dir():
        return None
    out: list[Release] = []
    for model_dir in sorted(p for p in models.iterdir() if p.is_dir()):
        rel_dir = model_dir / "releases"
        current = _link_name(model_dir / "current")
        previous = _link_name(model_dir / "previous")
        if not rel_dir.is_dir():
            continue
        for rel in sorted(rel_dir.iterdir()):
            try:
                mtime = rel.stat().st_mtime
            except OSError:
                mtime = None
            out.append(Release(model_dir.name, rel.name, rel.name == current, rel.name == previous, mtime))
    return out


def _link_name(path: Path) -> str | None:
    try:
        return Path(path.readlink()).name if path.is_symlink() else None
    except OSError:
        return None
