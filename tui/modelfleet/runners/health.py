"""``modelfleet health``: ask every model agent on every node for ``/health``, directly over HTTP.

Each model on a node has its own agent and port. The agents to ask come from the ledger (the latest node event
of each node and model names the agent URL and the version that should run there) and, for a node the ledger
knows nothing about, from the inventory's agent address and port. Requests run concurrently (at most
``fleet.probe_concurrency`` in flight) with ``fleet.probe_timeout_s`` per request; the transport is injectable
so tests need no network.

Verdicts: ``healthy`` (200, and the expected version when the ledger names one), ``wrong_version``,
``unhealthy`` (any other status, with the agent's reason), ``unreachable`` (no connection or no answer in time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from modelfleet.core.fleet import Node

VERDICTS = ("healthy", "wrong_version", "unhealthy", "unreachable")
_PLACING = ("node_deploy", "node_rollback")
_GOOD = ("ok", "changed", "rolled_back")


@dataclass(frozen=True)
class Target:
    node: str
    url: str
    model: str | None = None  # None: whatever model answers on the node's default port
    expected_version: str | None = None


@dataclass(frozen=True)
class HealthRow:
    node: str
    model: str | None
    version: str | None
    url: str
    verdict: str
    expected_version: str | None = None
    digest: str | None = None
    reason: str | None = None
    latency_ms: float | None = None

    @property
    def healthy(self) -> bool:
        return self.verdict == "healthy"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "model": self.model, "version": self.version, "url": self.url,
                "verdict": self.verdict, "expected_version": self.expected_version, "digest": self.digest,
                "reason": self.reason, "latency_ms": self.latency_ms}


def expected_from_ledger(events: Iterable[Any]) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """(node, model) -> (agent URL, version that should run), from node events in seq order."""
    out: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for ev in events:
        if ev.action not in _PLACING or not ev.node or not ev.model or ev.outcome not in _GOOD:
            continue
        details = ev.details if isinstance(ev.details, Mapping) else {}
        if details.get("check"):
            continue
        url, version = out.get((ev.node, ev.model), (None, None))
        url = details.get("agent_url") or url
        if ev.action == "node_rollback" or ev.outcome == "rolled_back":
            version = details.get("to_version") or (ev.version if ev.action == "node_rollback" else None)
        else:
            version = ev.version
        out[(ev.node, ev.model)] = (url, None if version is None else str(version))
    return out


def plan_targets(nodes: Sequence[Node], placed: Mapping[tuple[str, str], tuple[str | None, str | None]],
                 model: str | None = None) -> list[Target]:
    """One target per (node, model) the ledger knows; a node without any gets its default agent URL."""
    targets: list[Target] = []
    for node in nodes:
        known = sorted((m, v) for (n, m), v in placed.items() if n == node.name and (model is None or m == model))
        if not known:
            targets.append(Target(node.name, node.agent_url, model))
            continue
        for m, (url, version) in known:
            targets.append(Target(node.name, url or node.agent_url, m, version))
    return targets


def _verdict(target: Target, code: int, body: Mapping[str, Any], ms: float) -> HealthRow:
    model = body.get("model") if isinstance(body.get("model"), str) else target.model
    version = None if body.get("version") is None else str(body.get("version"))
    digest = body.get("digest") if isinstance(body.get("digest"), str) else None
    if code != 200:
        reason = body.get("reason") or body.get("error") or body.get("detail") or f"HTTP {code}"
        return HealthRow(target.node, model, version, target.url, "unhealthy", target.expected_version, digest,
                         str(reason)[:300], ms)
    if target.model and model and model != target.model:
        return HealthRow(target.node, target.model, version, target.url, "wrong_version", target.expected_version,
                         digest, f"{target.url} serves {model}, not {target.model}", ms)
    if target.expected_version is not None and version != target.expected_version:
        return HealthRow(target.node, model, version, target.url, "wrong_version", target.expected_version, digest,
                         f"runs version {version}, the ledger says {target.expected_version}", ms)
    return HealthRow(target.node, model, version, target.url, "healthy", target.expected_version, digest, None, ms)


async def _probe_all(targets: Sequence[Target], *, timeout_s: float, concurrency: int,
                     transport: httpx.AsyncBaseTransport | None) -> list[HealthRow]:
    import time

    import httpx

    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(client: httpx.AsyncClient, target: Target) -> HealthRow:
        async with sem:
            start = time.perf_counter()
            try:
                resp = await client.get(target.url.rstrip("/") + "/health")
            except httpx.TimeoutException:
                return HealthRow(target.node, target.model, None, target.url, "unreachable",
                                 target.expected_version, reason=f"no answer within {timeout_s:g}s")
            except httpx.HTTPError as exc:
                return HealthRow(target.node, target.model, None, target.url, "unreachable",
                                 target.expected_version, reason=(str(exc) or type(exc).__name__)[:300])
            ms = round((time.perf_counter() - start) * 1000.0, 2)
            try:
                body = resp.json()
            except ValueError:
                body = {}
            return _verdict(target, resp.status_code, body if isinstance(body, Mapping) else {}, ms)

    async with httpx.AsyncClient(timeout=timeout_s, transport=transport, trust_env=False) as client:
        return list(await asyncio.gather(*(one(client, t) for t in targets)))


def probe(targets: Sequence[Target], *, timeout_s: float = 2.0, concurrency: int = 32,
          transport: httpx.AsyncBaseTransport | None = None) -> list[HealthRow]:
    """Probe every target (blocking; run it from a worker thread in a GUI). Rows in target order."""
    if not targets:
        return []
    return asyncio.run(_probe_all(targets, timeout_s=timeout_s, concurrency=concurrency, transport=transport))


def check_fleet(settings: Any, *, limit: str | None = None, model: str | None = None,
                transport: httpx.AsyncBaseTransport | None = None) -> list[HealthRow]:
    """Inventory + ledger -> targets -> probes, with the timeouts and concurrency of ``[fleet]``."""
    from modelfleet.core.fleet import Inventory
    from modelfleet.core.ledger import Ledger

    inventory = Inventory.load(settings.fleet.inventory, default_agent_port=settings.fleet.agent_port)
    nodes = inventory.select(limit)
    with Ledger(settings.ledger.url) as ledger:
        placed = expected_from_ledger(e for e in ledger.events() if e.action in _PLACING)
    return probe(plan_targets(nodes, placed, model), timeout_s=settings.fleet.probe_timeout_s,
                 concurrency=settings.fleet.probe_concurrency, transport=transport)
