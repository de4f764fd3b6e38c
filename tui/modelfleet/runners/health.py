"""``modelfleet health``: ask every model agent on every node for ``/health``, directly over HTTP.

Each model on a node has its own agent and port. The agents to ask, and the version each should run, come
from the ledger through the one placement rule (``core/placement.py``: the agent URL and the version of the
last run that placed the model on the node) and, for a node the ledger knows nothing about, from the
inventory's agent address and port. Requests run concurrently (at most ``fleet.probe_concurrency`` in flight)
with ``fleet.probe_timeout_s`` per request; the transport is injectable so tests need no network.

Verdicts: ``healthy`` (200, and the version the ledger says should run there), ``wrong_version``, ``behind``
(it answers with the version it should run, but the last run that targeted the node meant another one: that
deploy did not reach it), ``unhealthy`` (any other status, with the agent's reason), ``unreachable`` (no
connection or no answer in time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from modelfleet.core.fleet import Node
    from modelfleet.core.placement import NodePlacement

VERDICTS = ("healthy", "wrong_version", "behind", "unhealthy", "unreachable")


@dataclass(frozen=True)
class Target:
    node: str
    url: str
    model: str | None = None  # None: whatever model answers on the node's default port
    expected_version: str | None = None
    placement: NodePlacement | None = None


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


def plan_targets(nodes: Sequence[Node], placed: Mapping[tuple[str, str], NodePlacement],
                 model: str | None = None) -> list[Target]:
    """One target per (node, model) the ledger knows; a node without any gets its default agent URL."""
    targets: list[Target] = []
    for node in nodes:
        known = sorted((m, p) for (n, m), p in placed.items() if n == node.name and (model is None or m == model))
        if not known:
            targets.append(Target(node.name, node.agent_url, model))
            continue
        for m, p in known:
            targets.append(Target(node.name, p.agent_url or node.agent_url, m, p.version, p))
    return targets


def _behind(target: Target) -> str | None:
    p = target.placement
    if p is None or not p.behind:
        return None
    why = f"{p.intended_outcome}" + (f": {p.intended_message}" if p.intended_message else "")
    keep = f"deploy {p.model}/{p.version} to keep it" if p.version else "or roll it back"
    return (f"the last run that targeted it ({p.intended_run}) meant version {p.intended_version}, and ended {why} "
            f"here; rerun that deploy, or {keep}")


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
                         f"runs version {version}, the ledger says {target.expected_version}; if a run lost this "
                         f"node (dark, or its controller killed), `modelfleet reconcile {model or '<model>'} --limit "
                         f"{target.node}` reads what the node did into the ledger", ms)
    behind = _behind(target)
    if behind:
        return HealthRow(target.node, model, version, target.url, "behind", target.expected_version, digest,
                         behind[:300], ms)
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
    from modelfleet.core.placement import PLACING_ACTIONS, placements

    inventory = Inventory.load(settings.fleet.inventory, default_agent_port=settings.fleet.agent_port)
    nodes = inventory.select(limit)
    with Ledger(settings.ledger.url) as ledger:
        placed = placements(e for e in ledger.events() if e.action in PLACING_ACTIONS)
    return probe(plan_targets(nodes, placed, model), timeout_s=settings.fleet.probe_timeout_s,
                 concurrency=settings.fleet.probe_concurrency, transport=transport)
