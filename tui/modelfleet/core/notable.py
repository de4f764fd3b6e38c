"""Which ledger events need an operator's attention: the one classification behind the console's Events view.

:func:`classify` asks each rule of :data:`RULES` in turn; the first that recognises an event says what it is
(:class:`Notable`: a kind, a severity and one line). An event no rule recognises is routine (a node deployed, a
run started) and is not notable. Adding a kind of event (a new ledger action, say a drift alert written by the
monitoring loop) is one rule function appended to :data:`RULES` with :func:`rule`; nothing else changes.

Kinds (``Notable.kind``):

================== ========= =====================================================================================
kind               severity  events
================== ========= =====================================================================================
unreachable        critical  a node event whose outcome is ``unreachable``
failed             critical  a node event whose outcome is ``failed``
reverted           critical  a deploy's health gate failed on a node and it went back to its previous release
interrupted        warning   a node was mid-step when its run was cancelled or timed out
rollback           warning   a rollback run switched a node back (``rolled_back``)
run_failed         critical  ``run_end`` with outcome ``failed``
run_incomplete     warning   ``run_end`` with outcome ``incomplete`` (cancelled, timed out, controller died)
gate_failed        warning   a policy gate verdict that did not pass
approval_rejected  warning   an approval decision that rejected a request
approval_requested info      a request for the approvals a protected environment needs
break_glass        critical  a production deploy without the required approvals
alert              warning   any event whose action names drift, an alert or a breach (whatever its exact name),
                             unless its outcome is ``ok``; ``details["severity"]`` overrides the severity
================== ========= =====================================================================================

Pure: no database, no network; the ledger's :class:`~modelfleet.core.ledger.Event` in, :class:`Notable` out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelfleet.core.ledger import Event

SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Notable:
    kind: str
    severity: str  # critical | warning | info
    title: str  # one line, e.g. "edge-cpu-02 unreachable in deploy credit-risk v3"
    event: Event


Rule = Callable[[Event], Notable | None]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    """Append ``fn`` to :data:`RULES` (rules are asked in the order they were added)."""
    RULES.append(fn)
    return fn


def classify(event: Event) -> Notable | None:
    """What ``event`` is, if it needs attention; None for routine events."""
    for check in RULES:
        found = check(event)
        if found is not None:
            return found
    return None


def notable(events: Iterable[Event], *, limit: int | None = None) -> list[Notable]:
    """The notable ones among ``events``, newest first (by sequence number)."""
    found = [n for n in (classify(e) for e in sorted(events, key=lambda e: e.seq, reverse=True)) if n is not None]
    return found[:limit] if limit is not None else found


def _what(e: Event) -> str:
    """``deploy credit-risk v3`` from the event's kind, model and version (what the event was part of)."""
    kind = str(e.details.get("kind") or e.action.removeprefix("node_").removeprefix("run_"))
    model = f" {e.model}" if e.model else ""
    version = f" v{e.version}" if e.version else ""
    return f"{kind}{model}{version}"


_NODE_OUTCOMES = {
    "unreachable": ("unreachable", "critical", "unreachable in"),
    "failed": ("failed", "critical", "failed"),
    "reverted": ("reverted", "critical", "reverted to its previous release after"),
    "interrupted": ("interrupted", "warning", "interrupted during"),
    "rolled_back": ("rollback", "warning", "rolled back by"),
}


@rule
def node_outcome(e: Event) -> Notable | None:
    if not e.action.startswith("node_") or e.outcome not in _NODE_OUTCOMES:
        return None
    kind, severity, verb = _NODE_OUTCOMES[e.outcome]
    return Notable(kind, severity, f"{e.node or '?'} {verb} {_what(e)}", e)


@rule
def run_end(e: Event) -> Notable | None:
    if e.action != "run_end" or e.outcome not in ("failed", "incomplete"):
        return None
    problem = e.details.get("problem") or e.details.get("reason")
    tail = f": {problem}" if problem else ""
    if e.outcome == "failed":
        return Notable("run_failed", "critical", f"{_what(e)} failed{tail}", e)
    return Notable("run_incomplete", "warning", f"{_what(e)} incomplete{tail}", e)


@rule
def governance(e: Event) -> Notable | None:
    subject = f"{e.model or '?'} v{e.version or '?'}" + (f" for {e.target}" if e.target else "")
    if e.action == "gate" and e.outcome != "ok":
        failed = e.details.get("failed") or []
        names = f": {', '.join(str(f) for f in failed)}" if failed else ""
        return Notable("gate_failed", "warning", f"gate not passed by {subject}{names}", e)
    if e.action == "approval_decision" and e.outcome == "rejected":
        return Notable("approval_rejected", "warning", f"{e.actor} rejected {subject}", e)
    if e.action == "approval_request":
        return Notable("approval_requested", "info", f"{e.actor} asks approval of {subject}", e)
    if e.action == "break_glass":
        return Notable("break_glass", "critical", f"break-glass by {e.actor}: {subject} without approvals", e)
    return None


_ALERT = re.compile(r"drift|alert|breach", re.IGNORECASE)


@rule
def alert(e: Event) -> Notable | None:
    if not _ALERT.search(e.action) or e.outcome == "ok":
        return None
    severity = str(e.details.get("severity") or "warning").lower()
    if severity not in SEVERITIES:
        severity = "warning"
    about = " ".join(p for p in (e.model and f"{e.model}" + (f" v{e.version}" if e.version else ""), e.node) if p)
    summary = e.details.get("summary") or e.details.get("reason") or e.outcome or ""
    return Notable("alert", severity, f"{e.action.replace('_', ' ')}"
                   + (f" on {about}" if about else "") + (f": {summary}" if summary else ""), e)
