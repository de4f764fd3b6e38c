"""What should run where: the one rule that reads placement back from the ledger's node events.

``modelfleet health``, the fleet status, the console, ``describe`` and the rollback request all ask this module,
never the events directly. For each (node, model) the ledger says two things:

* **placed**: the version the node should run now: the version of the last deploy that succeeded there
  (``changed``/``ok``), the version a successful rollback switched to, or, for a deploy that failed its gate
  and was switched back (``reverted``), the version it is back on;
* **intended**: what the last run that targeted the node meant to put there (a deploy's version, whatever its
  outcome there; a rollback's target when it succeeded). A node whose intended version is not its placed one is
  **behind**: the last deploy did not reach it (not started, failed, unreachable, reverted). A later deploy of
  the version it runs, or a successful rollback, brings intent and placement together again.

A ``node_reconcile`` event (``modelfleet reconcile``, runners/records.py) with outcome ``reconciled`` is what the
node's own journal says a run of this ledger did there when that run lost the node (dark, or its controller
killed): the node is placed on the version it holds, by that run; the run's intent replaces the node's when the
run started after the event that set it (or is the same run). ``agrees`` and ``unexplained`` place nothing: a
version no recorded run put on a node is not what should run there.

Check-mode runs place nothing. Node events written before outcomes were renamed (a deploy's ``rolled_back`` is
today's ``reverted``; a rollback's ``ok``/``changed`` today's ``rolled_back``) are read the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelfleet.core.release_names import release_version

PLACING_ACTIONS = ("node_deploy", "node_rollback", "node_reconcile")
_DEPLOY_DONE = frozenset({"ok", "changed"})
_SWITCHED_BACK = frozenset({"reverted", "rolled_back"})  # "rolled_back": a deploy's revert, as older events say it


@dataclass(frozen=True)
class NodePlacement:
    node: str
    model: str
    version: str | None  # what should run there now (None: nothing the ledger can vouch for)
    intended_version: str | None
    agent_url: str | None = None
    run_id: str | None = None  # the run that placed ``version``
    intended_run: str | None = None
    intended_outcome: str | None = None  # the node's outcome in that run
    intended_message: str | None = None

    @property
    def behind(self) -> bool:
        """The last run that targeted this node meant another version than the one it should run now."""
        return self.intended_version is not None and self.intended_version != self.version

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "model": self.model, "version": self.version,
                "intended_version": self.intended_version, "behind": self.behind, "agent_url": self.agent_url,
                "run_id": self.run_id, "intended_run": self.intended_run,
                "intended_outcome": self.intended_outcome, "intended_message": self.intended_message}


def _details(ev: Any) -> Mapping[str, Any]:
    return ev.details if isinstance(ev.details, Mapping) else {}


def _back_to(details: Mapping[str, Any]) -> str | None:
    version = details.get("to_version")
    if version is None and isinstance(details.get("to_release"), str):
        version = release_version(details["to_release"])
    return None if version in (None, "") else str(version)


def placements(events: Iterable[Any], *, model: str | None = None) -> dict[tuple[str, str], NodePlacement]:
    """(node, model) -> :class:`NodePlacement`, from ledger events in sequence order."""
    out: dict[tuple[str, str], NodePlacement] = {}
    intent_seq: dict[tuple[str, str], int] = {}  # seq of the event that set the node's intent
    for ev in events:
        if ev.action not in PLACING_ACTIONS or not ev.node or not ev.model or (model and ev.model != model):
            continue
        details = _details(ev)
        if details.get("check"):
            continue
        key = (ev.node, ev.model)
        prev = out.get(key) or NodePlacement(ev.node, ev.model, None, None)
        url = details.get("agent_url") or prev.agent_url
        version, run_id = prev.version, prev.run_id
        intended, intended_run = prev.intended_version, prev.intended_run
        outcome = ev.outcome or "ok"
        message = details.get("message") if isinstance(details.get("message"), str) else None
        seq = getattr(ev, "seq", None)
        if ev.action == "node_deploy":
            intended, intended_run = (None if ev.version is None else str(ev.version)), ev.run_id
            intent_seq[key] = seq or 0
            if outcome in _DEPLOY_DONE and ev.version is not None:
                version, run_id = str(ev.version), ev.run_id
            elif outcome in _SWITCHED_BACK:
                version, run_id = _back_to(details) or version, ev.run_id
        elif ev.action == "node_reconcile":
            observed, by_run, run_seq = details.get("observed_version"), details.get("by_run"), details.get("run_seq")
            if outcome != "reconciled" or observed in (None, "") or not by_run:
                continue
            version, run_id = str(observed), str(by_run)
            if intended_run != by_run and isinstance(run_seq, int) and run_seq > intent_seq.get(key, 0):
                run_version = details.get("run_version")
                deploy = details.get("by_kind") == "deploy" and run_version not in (None, "")
                intended, intended_run = (str(run_version) if deploy else version), str(by_run)
                intent_seq[key] = run_seq
        elif outcome in ("rolled_back", "ok", "changed"):  # a rollback that switched (or found it current)
            to = _back_to(details) or (None if ev.version is None else str(ev.version))
            if to is not None:
                version, run_id, intended, intended_run = to, ev.run_id, to, ev.run_id
                intent_seq[key] = seq or 0
        else:  # a rollback that did not happen leaves placement and intent as they were
            continue
        out[key] = NodePlacement(ev.node, ev.model, version, intended, url, run_id, intended_run, outcome, message)
    return out


def versions_by_node(events: Iterable[Any], model: str) -> dict[str, str]:
    """node -> the version of ``model`` that should run there (nodes the ledger can vouch for)."""
    return {node: p.version for (node, _), p in placements(events, model=model).items() if p.version is not None}


def models_known(events: Iterable[Any], nodes: Iterable[str] | None = None) -> dict[str, set[str]]:
    """model -> versions the ledger ever placed (on ``nodes``, when given): what a rollback could go back to."""
    wanted = set(nodes) if nodes is not None else None
    out: dict[str, set[str]] = {}
    for ev in events:
        if ev.action != "node_deploy" or not ev.model or ev.version is None:
            continue
        if wanted is not None and ev.node not in wanted:
            continue
        if ev.outcome in _DEPLOY_DONE and not _details(ev).get("check"):
            out.setdefault(ev.model, set()).add(str(ev.version))
    return out
