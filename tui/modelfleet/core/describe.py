"""Everything known about one node or one model, put together for ``modelfleet describe`` (headless, pure).

The callers gather the facts (the inventory, the registry, the ledger's events and runs, the agents' ``/health``
answers, the rule for what should run where) and these functions only combine them, so they run without network,
MLflow or Ansible::

    node = describe_node(inventory.node("edge-cpu-01"), events, runs, answers, expected, tail=10)
    model = describe_model(summary, versions, events, runs, answers, expected, selected=None, tail=10)

``expected`` maps (node, model) to the version that should run there (``None``: placed, version unknown); its
keys are every (node, model) the ledger ever placed. ``answers`` are the agents' ``/health`` answers
(:class:`AgentAnswer`: ``runners.health.HealthRow`` is one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from modelfleet.core.fleet import Node
from modelfleet.core.fleet_status import Placement, alias_mismatches, releases_on_disk
from modelfleet.core.ledger import Event, RunSummary
from modelfleet.core.registry import ModelSummary, ModelVersionInfo

METRICS = ("auc", "accuracy", "ece", "fpr_gap", "demographic_parity_difference")
_VERDICT_RANK = {"healthy": 0, "behind": 1, "wrong_version": 2, "unhealthy": 3, "unreachable": 4}


class AgentAnswer(Protocol):
    """One agent's ``/health`` answer, as ``modelfleet health`` reports it."""

    @property
    def node(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def url(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def latency_ms(self) -> float | None: ...


@dataclass(frozen=True)
class ModelOnNode:
    """One model on one node: what the ledger says should run, and what its agent answers."""

    model: str | None
    expected_version: str | None
    running_version: str | None
    digest: str | None
    url: str
    verdict: str
    reason: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class NodeDescription:
    name: str
    node_class: str
    address: str
    environment: str | None
    groups: tuple[str, ...]
    agent_url: str
    root: str
    health: str  # the worst verdict of its agents, or "unknown" when none was asked
    models: tuple[ModelOnNode, ...]
    releases: tuple[dict[str, Any], ...] | None  # on disk (simulated fleet), None when not readable from here
    runs: tuple[RunSummary, ...]  # newest first
    events: tuple[Event, ...]  # newest last

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.name, "class": self.node_class, "address": self.address, "environment": self.environment,
            "groups": list(self.groups), "agent_url": self.agent_url, "root": self.root, "health": self.health,
            "models": [asdict(m) for m in self.models],
            "releases": None if self.releases is None else list(self.releases),
            "runs": [r.to_dict() for r in self.runs], "ledger": [e.to_dict() for e in self.events],
        }


@dataclass(frozen=True)
class VersionDescription:
    version: str
    aliases: tuple[str, ...]
    status: str
    created: str | None
    metrics: dict[str, float]
    run_id: str | None
    ledger_nodes: tuple[str, ...] = ()  # where the ledger says it should run
    reported_nodes: tuple[str, ...] = ()  # where an agent answers with it
    params: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"aliases": list(self.aliases), "ledger_nodes": list(self.ledger_nodes),
                               "reported_nodes": list(self.reported_nodes)}


@dataclass(frozen=True)
class ModelDescription:
    name: str
    description: str
    aliases: dict[str, int]
    latest_version: int | None
    selected: str | None  # the version MODEL@REF named, None for the whole model
    versions: tuple[VersionDescription, ...]  # newest first
    unregistered: tuple[VersionDescription, ...]  # versions running somewhere that the registry does not list
    disagreements: tuple[str, ...]  # "edge-arm-01: the ledger says v2, its agent answers v3"
    alias_warnings: tuple[str, ...]  # "champion is v3 but 2 nodes run v2"
    runs: tuple[RunSummary, ...]  # newest first
    events: tuple[Event, ...]  # newest last

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name, "description": self.description, "aliases": self.aliases,
            "latest_version": self.latest_version, "selected_version": self.selected,
            "versions": [v.to_dict() for v in self.versions],
            "unregistered_versions": [v.to_dict() for v in self.unregistered],
            "disagreements": list(self.disagreements), "alias_warnings": list(self.alias_warnings),
            "runs": [r.to_dict() for r in self.runs], "ledger": [e.to_dict() for e in self.events],
        }


def runs_touching(runs: Iterable[RunSummary], events: Iterable[Event], tail: int) -> tuple[RunSummary, ...]:
    """The newest ``tail`` of ``runs`` that have at least one of ``events``, newest first."""
    ids = {e.run_id for e in events if e.run_id}
    return tuple(reversed([r for r in runs if r.run_id in ids][-tail:])) if tail else ()


def describe_node(node: Node, events: Sequence[Event], runs: Iterable[RunSummary], answers: Iterable[AgentAnswer],
                  expected: Mapping[tuple[str, str], str | None], *, tail: int = 10) -> NodeDescription:
    """``events``: the ledger events on this node (seq order); ``answers``: its agents' answers."""
    models: list[ModelOnNode] = []
    answered: set[str] = set()
    for a in answers:
        if a.node != node.name:
            continue
        want = expected.get((node.name, a.model)) if a.model else None
        models.append(ModelOnNode(a.model, want, a.version, a.digest, a.url, a.verdict, a.reason, a.latency_ms))
        if a.model:
            answered.add(a.model)
    for (name, model), want in sorted(expected.items()):  # placed by the ledger, no agent asked about it
        if name == node.name and model not in answered:
            models.append(ModelOnNode(model, want, None, None, node.agent_url, "unknown"))
    verdicts = [m.verdict for m in models if m.verdict in _VERDICT_RANK]
    health = max(verdicts, key=_VERDICT_RANK.__getitem__) if verdicts else "unknown"
    on_disk = releases_on_disk(node)
    releases = None if on_disk is None else tuple(
        {"model": r.model, "release": r.name, "current": r.current, "previous": r.previous} for r in on_disk)
    return NodeDescription(
        name=node.name, node_class=node.node_class.value, address=node.address, environment=node.environment,
        groups=node.groups, agent_url=node.agent_url, root=node.root, health=health, models=tuple(models),
        releases=releases, runs=runs_touching(runs, events, tail), events=tuple(events[-tail:]) if tail else (),
    )


def placements(model: str, answers: Iterable[AgentAnswer],
               expected: Mapping[tuple[str, str], str | None]) -> dict[str, Placement]:
    """version -> where the ledger says it should run and where an agent answers with it."""
    ledger: dict[str, set[str]] = {}
    reported: dict[str, set[str]] = {}
    for (node, m), version in expected.items():
        if m == model and version is not None:
            ledger.setdefault(version, set()).add(node)
    for a in answers:
        if a.model == model and a.version is not None and a.verdict != "unreachable":
            reported.setdefault(a.version, set()).add(a.node)
    return {v: Placement(v, tuple(sorted(ledger.get(v, ()))), tuple(sorted(reported.get(v, ()))))
            for v in sorted(set(ledger) | set(reported), key=_version_key)}


def describe_model(summary: ModelSummary, versions: Sequence[ModelVersionInfo], events: Sequence[Event],
                   runs: Iterable[RunSummary], answers: Iterable[AgentAnswer],
                   expected: Mapping[tuple[str, str], str | None], *, selected: int | None = None,
                   tail: int = 10) -> ModelDescription:
    """``versions``: the registry's versions (newest first); ``events``: the ledger events of this model."""
    answers = list(answers)
    places = placements(summary.name, answers, expected)
    by_version = {str(v.version): v for v in versions}
    rows = []
    for v in versions:
        if selected is not None and v.version != selected:
            continue
        p = places.get(str(v.version), Placement(str(v.version)))
        rows.append(VersionDescription(
            version=str(v.version), aliases=v.aliases, status=v.status,
            created=v.created.isoformat() if v.created else None,
            metrics=v.metrics if selected is not None else {k: v.metrics[k] for k in METRICS if k in v.metrics},
            run_id=v.run_id, ledger_nodes=p.ledger_nodes, reported_nodes=p.reported_nodes,
            params=v.params if selected is not None else {},
        ))
    unregistered = tuple(VersionDescription(p.version, (), "not in the registry", None, {}, None, p.ledger_nodes,
                                            p.reported_nodes)
                         for p in places.values() if p.version not in by_version
                         and (selected is None or p.version == str(selected)))
    wanted = {(n, v) for v, p in places.items() for n in p.ledger_nodes}
    running = {n: v for v, p in places.items() for n in p.reported_nodes}
    disagreements = []
    for node, version in sorted(wanted):
        if node in running and running[node] != version:
            disagreements.append(f"{node}: the ledger says v{version}, its agent answers v{running[node]}")
    if selected is not None:
        events = [e for e in events if e.version in (None, str(selected))]
        runs = [r for r in runs if r.version in (None, str(selected))]
    return ModelDescription(
        name=summary.name, description=summary.description, aliases=dict(summary.aliases),
        latest_version=summary.latest_version, selected=None if selected is None else str(selected),
        versions=tuple(rows), unregistered=unregistered, disagreements=tuple(disagreements),
        alias_warnings=tuple(alias_mismatches(summary.aliases, places).values()),
        runs=runs_touching(runs, events, tail), events=tuple(events[-tail:]) if tail else (),
    )


def _version_key(v: str) -> tuple[int, str]:
    return (int(v), "") if v.isdigit() else (1 << 30, v)
