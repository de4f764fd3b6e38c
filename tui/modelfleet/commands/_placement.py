"""The CLI's one door to the rule for what should run where, and who has a model at all (``deploy
--skip-deployed``).

The rule itself is ``core/placement.py`` (the one ``modelfleet health``, the fleet view and the rollback request
read); ``describe`` and ``deploy --skip-deployed`` reach it only through :func:`what_should_run_where`, so their
expectations match health's verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.ledger import Event
    from modelfleet.runners.health import HealthRow


def what_should_run_where(events: Iterable[Event]) -> dict[tuple[str, str], str | None]:
    """(node, model) -> the version the ledger says should run there now, for every (node, model) a deploy or
    rollback ever targeted (None: the ledger can vouch for no version there, e.g. its only deploy failed)."""
    from modelfleet.core.placement import placements

    return {key: p.version for key, p in placements(events).items()}


@dataclass(frozen=True)
class ModelPresence:
    """Where a model is, per the ledger and per the agents, for the nodes asked about."""

    model: str
    by_ledger: dict[str, str]  # node -> version the ledger says should run there
    by_agents: dict[str, str | None]  # node -> version its agent answers with

    @property
    def nodes(self) -> set[str]:
        return set(self.by_ledger) | set(self.by_agents)

    def version_on(self, node: str) -> str | None:
        return self.by_agents.get(node) or self.by_ledger.get(node)


def model_presence(model: str, events: Iterable[Event], answers: Iterable[HealthRow],
                   nodes: Iterable[str]) -> ModelPresence:
    """Which of ``nodes`` have ``model``: placed by the ledger, or answering with it on an agent."""
    wanted = set(nodes)
    placed = what_should_run_where(events)
    by_ledger = {n: v for (n, m), v in placed.items() if m == model and n in wanted and v is not None}
    by_agents = {a.node: a.version for a in answers
                 if a.model == model and a.node in wanted and a.verdict != "unreachable" and not serves_another(a)}
    return ModelPresence(model, by_ledger, by_agents)


def serves_another(row: HealthRow) -> bool:
    """An agent URL the ledger gave one model answers for another: health reports the model it asked about
    with the other model's version ("<url> serves X, not M"); that version is not M's."""
    return (row.reason or "").startswith(row.url + " serves ")


def limit_to_undeployed(settings: Settings, ref: str, limit: str | None, inventory: Path | None) -> str | None:
    """``deploy --skip-deployed``: the ``--limit`` naming the selected nodes that do not have the model yet, or
    None (after saying so on stderr) when every selected node has it.

    A node "has" the model when the ledger says a version of it should run there (core/placement.py: a deploy
    or rollback that took) or when its agent answers with it, whatever the version: a node the operator moved to
    another version keeps it; a node the ledger never placed it on (or whose only deploy of it failed) and whose
    agent does not serve it gets ``ref``. This is what a second ``make run`` needs: it fills new nodes and undoes
    nobody's work.
    """
    from modelfleet.commands._output import progress
    from modelfleet.core.fleet import Inventory
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.reference import parse_ref
    from modelfleet.runners.health import check_fleet

    model = parse_ref(ref).name
    selected = [n.name for n in Inventory.load(inventory or settings.fleet.inventory,
                                                default_agent_port=settings.fleet.agent_port).select(limit)]
    with Ledger(settings.ledger.url) as ledger:
        events = ledger.events(model=model)
    answers = check_fleet(settings, limit=limit, model=model)
    presence = model_presence(model, events, answers, selected)
    have = [n for n in selected if n in presence.nodes]
    todo = [n for n in selected if n not in presence.nodes]
    kept = ", ".join(f"{n} v{presence.version_on(n) or '?'}" for n in have)
    if not todo:
        progress(f"{model} is already deployed on all {len(selected)} selected node(s) ({kept}): nothing to do; "
                 "--skip-deployed leaves them as they are")
        return None
    if have:
        progress(f"{model} is already deployed on {len(have)} node(s), left as they are ({kept}); deploying to the "
                 f"{len(todo)} other(s): {', '.join(todo)}")
    return ",".join(todo)
