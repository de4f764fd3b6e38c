"""Governance workflow: gate verdicts, approval requests and decisions, break-glass, and the deploy check.

Storage: every step is an event of the deployment ledger (``core/ledger.py``: the same SQLAlchemy engine, SQLite
by default, PostgreSQL for teams), and the signed record is the event's ``details``::

    gate              target=<env>  outcome ok|failed    details {verdict, policy_sha256, thresholds_sha256, ...}
    approval_request  target=<env>  outcome started      details {request: {record, signature}}
    approval_decision target=<env>  outcome approved|rejected  details {request_id, decision: {record, signature}}
    break_glass       target=<env>  outcome changed      details {break_glass: {record, signature}, reason}
    thresholds_attach               outcome changed      details {thresholds, sha256, before, after}

The state of a request (pending, approved, rejected, expired) is folded from these events whenever it is read;
nothing is ever updated in place. So the audit trail is the ledger itself (hash-chained: an edited or deleted
approval breaks ``modelfleet ledger verify``), each record is signed by its author (a database administrator
cannot forge one), and one storage path serves SQLite and PostgreSQL alike. MLflow version tags mirror the state
(``modelfleet.gate.<env>``, ``modelfleet.approval.<env>``, ``modelfleet.break_glass.<env>``) so that MLflow's UI
shows it; the ledger stays the source of truth.

Enforcement seams (called by the run pipeline, the playbook's first tasks and the node module):

- :func:`check_deploy` -> :class:`DeployClearance` or :class:`GovernanceError` listing what is missing;
- :func:`break_glass` -> :class:`DeployClearance` (ops only; loud ledger event and MLflow tag);
- :func:`trust_document` -> the JSON nodes verify against (``python -m modelfleet.governance_verify``).
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.approvals import (
    APPROVAL_FORMAT,
    BREAK_GLASS_FORMAT,
    BREAK_GLASS_ROLES,
    CLEARANCE_FORMAT,
    REQUEST_FORMAT,
    REQUEST_ROLES,
    ApprovalState,
    Signed,
    Subject,
    Trust,
    evaluate,
    format_time,
    signer,
    verify_clearance,
)
from modelfleet.core.errors import GovernanceError, UsageError
from modelfleet.core.roles import GATES_FILE, load_enforced_trust, load_trust

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.evaluation import GateReport
    from modelfleet.core.identity import Identity
    from modelfleet.core.ledger import Event, Ledger
    from modelfleet.core.registry import Registry

GATE_TAG = "modelfleet.gate"
APPROVAL_TAG = "modelfleet.approval"
BREAK_GLASS_TAG = "modelfleet.break_glass"
Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def actor_label() -> str:
    """Who runs a step that needs no authority (a gate): ``MODELFLEET_ACTOR`` or the login. A label only."""
    try:
        return os.environ.get("MODELFLEET_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def policy_dir(settings: Settings) -> Path:
    return Path(settings.governance.policy_dir)


def gates_path(settings: Settings) -> Path:
    return policy_dir(settings) / GATES_FILE


def trust_for(settings: Settings) -> Trust:
    return load_trust(policy_dir(settings), state_dir=Path(settings.state_dir))


def enforced_trust(settings: Settings) -> Trust:
    """What deploys are checked against: :func:`trust_for`, or no protected environment at all when the policy
    folder has no approvals.yaml (governance not set up in this project)."""
    return load_enforced_trust(policy_dir(settings), state_dir=Path(settings.state_dir))


def trust_document(settings: Settings) -> dict[str, Any]:
    """The trust file nodes verify clearances against (people, public keys, per-environment requirements)."""
    return enforced_trust(settings).to_dict()


def tag_key(base: str, environment: str | None) -> str:
    return f"{base}.{environment}" if environment else base


def _set_tags(registry: Registry | None, model: str, version: str, tags: dict[str, str]) -> None:
    if registry is None:
        return
    for key, value in tags.items():
        registry.set_version_tag(model, int(version), key, value[:4900])


# -- gate verdicts --------------------------------------------------------------------------------------------


def record_gate(report: GateReport, *, ledger: Ledger, registry: Registry | None, manifest_sha256: str | None,
                actor: str | None = None, now: datetime | None = None) -> Event:
    """Write a gate verdict to the ledger (``gate``) and as MLflow tags ``modelfleet.gate.<env>``."""
    env = report.environment
    failed = [r.gate.name for r in report.failed]
    event = ledger.append(
        "gate", actor=actor or actor_label(), model=report.model, version=report.version, digest=report.digest,
        target=env, outcome="ok" if report.passed else "failed",
        details={"verdict": report.verdict, "environment": env, "policy": report.policy.name,
                 "policy_sha256": report.policy.sha256, "thresholds_sha256": report.thresholds_sha256,
                 "evaluation_sha256": report.evaluation_sha256, "manifest_sha256": manifest_sha256,
                 "failed": failed, "warnings": [r.gate.name for r in report.warnings],
                 "explanations": {r.gate.name: r.explanation for r in report.failed}},
        ts=now)
    when = format_time(event.ts)
    detail = f"digest {report.digest[:12]}, policy {report.policy.sha256[:12]}, {when}, ledger #{event.seq}"
    if failed:
        detail += "; failed: " + "; ".join(f"{r.gate.name} ({r.explanation})" for r in report.failed)
    _set_tags(registry, report.model, report.version, {tag_key(GATE_TAG, env): report.verdict,
                                                        tag_key(GATE_TAG, env) + ".detail": detail})
    return event


def latest_gate(ledger: Ledger, subject: Subject) -> Event | None:
    """The newest gate verdict recorded for exactly this artifact, thresholds and environment."""
    for event in reversed(ledger.events(model=subject.model, action="gate")):
        if (event.digest == subject.digest and event.target == subject.environment
                and event.details.get("thresholds_sha256") == subject.thresholds_sha256):
            return event
    return None


def gate_problem(ledger: Ledger, subject: Subject, policy_sha256: str, ref_hint: str) -> str | None:
    """None when the newest gate verdict for ``subject`` passed under the current policy; else what is wrong."""
    event = latest_gate(ledger, subject)
    fix = f"modelfleet gate {ref_hint} --env {subject.environment}"
    if event is None:
        return f"no gate verdict for {subject.label} (run: {fix})"
    if event.details.get("policy_sha256") != policy_sha256:
        return f"the gate verdict for {subject.label} was for another version of the policy (run: {fix})"
    if event.outcome != "ok":
        return (f"the gate failed for {subject.label} (ledger #{event.seq}: "
                + ", ".join(event.details.get("failed") or []) + ")")
    return None


def current_policy_sha256(settings: Settings) -> str:
    from modelfleet.core.policy import load_gate_policy

    return load_gate_policy(gates_path(settings)).sha256


# -- requests and decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestView:
    """A request with its decisions and state, as folded from the ledger."""

    request: Signed
    seq: int
    decisions: tuple[Signed, ...]
    state: ApprovalState | None
    status: str  # pending | approved | rejected | expired | invalid
    problem: str | None = None

    @property
    def id(self) -> str:
        return str(self.request.record.get("id"))

    @property
    def subject(self) -> Subject:
        r = self.request.record
        return Subject(str(r["model"]), str(r["version"]), str(r["digest"]), str(r["environment"]),
                       r.get("thresholds_sha256"))

    def to_dict(self) -> dict[str, Any]:
        r = self.request.record
        state = self.state
        return {
            "id": self.id, "status": self.status, "model": r.get("model"), "version": r.get("version"),
            "digest": r.get("digest"), "environment": r.get("environment"),
            "thresholds_sha256": r.get("thresholds_sha256"), "requested_by": r.get("by"),
            "requested_at": r.get("issued_at"), "reason": r.get("reason"), "ledger_seq": self.seq,
            "approved_by": [{"name": n, "role": role} for n, role in (state.counted if state else ())],
            "missing_roles": list(state.missing_roles) if state else [],
            "not_counted": list(state.set_aside) if state else [],
            "rejected_by": state.rejected_by if state else None,
            "expires_at": format_time(state.earliest_expiry) if state and state.earliest_expiry else None,
            "decisions": [{"by": d.record.get("by"), "decision": d.record.get("decision"),
                           "reason": d.record.get("reason"), "at": d.record.get("issued_at")}
                          for d in self.decisions],
            "problem": self.problem,
        }


def _status(state: ApprovalState, decisions: Iterable[Signed], now: datetime) -> str:
    if state.rejected_by:
        return "rejected"
    if state.satisfied:
        return "approved"
    if any(d.record.get("decision") == "approve" and str(d.record.get("expires_at", "")) <= format_time(now)
           for d in decisions):
        return "expired"
    return "pending"


def list_requests(ledger: Ledger, trust: Trust, *, now: datetime | None = None, model: str | None = None,
                  ) -> list[RequestView]:
    """Every request (oldest first) with its decisions and state under ``trust`` at ``now``."""
    now = now or _now()
    decisions: dict[str, list[Signed]] = {}
    for event in ledger.events(action="approval_decision", model=model):
        try:
            decision = Signed.from_dict(event.details.get("decision"), f"ledger event {event.seq}")
        except GovernanceError:
            continue
        decisions.setdefault(str(event.details.get("request_id")), []).append(decision)
    views: list[RequestView] = []
    for event in ledger.events(action="approval_request", model=model):
        try:
            request = Signed.from_dict(event.details.get("request"), f"ledger event {event.seq}")
        except GovernanceError as exc:
            views.append(RequestView(Signed({"id": f"#{event.seq}"}, ""), event.seq, (), None, "invalid",
                                     exc.message))
            continue
        mine = tuple(decisions.get(str(request.record.get("id")), ()))
        try:
            state = evaluate(trust, request, mine, now)
        except GovernanceError as exc:
            views.append(RequestView(request, event.seq, mine, None, "invalid", exc.message))
            continue
        views.append(RequestView(request, event.seq, mine, state, _status(state, mine, now)))
    return views


def find_request(ledger: Ledger, trust: Trust, request_id: str, *, now: datetime | None = None) -> RequestView:
    """The request whose id starts with ``request_id`` (at least 4 characters, unique)."""
    wanted = request_id.strip().lower()
    if len(wanted) < 4:
        raise UsageError(f"request id {request_id!r} is too short", hint="give at least 4 characters of the id "
                         "(modelfleet approvals lists them)")
    found = [v for v in list_requests(ledger, trust, now=now) if v.id.startswith(wanted)]
    if not found:
        raise UsageError(f"no approval request {request_id!r}", hint="list them: modelfleet approvals")
    if len(found) > 1:
        raise UsageError(f"request id {request_id!r} matches {len(found)} requests",
                         hint="give more characters: " + ", ".join(v.id for v in found))
    return found[0]


def _approval_tags(view: RequestView) -> dict[str, str]:
    env = view.subject.environment
    state = view.state
    if view.status == "approved" and state is not None:
        detail = ", ".join(f"{n} ({r})" for n, r in state.counted)
        if state.earliest_expiry:
            detail += f"; until {format_time(state.earliest_expiry)}"
    elif view.status == "rejected" and state is not None:
        detail = f"rejected by {state.rejected_by}"
    else:
        detail = "needs " + ", ".join(state.missing_roles) if state and state.missing_roles else view.status
    detail += f"; request {view.id} by {view.request.record.get('by')}, digest {view.subject.digest[:12]}"
    return {tag_key(APPROVAL_TAG, env): view.status, tag_key(APPROVAL_TAG, env) + ".detail": detail}


def request_approval(settings: Settings, identity: Identity, subject: Subject, reason: str, *, ledger: Ledger,
                     registry: Registry | None, trust: Trust, now: datetime | None = None,
                     ) -> tuple[RequestView, bool]:
    """Record a signed request for ``subject`` by a data scientist; returns (view, created).

    A pending request for the same subject is returned instead of a second one (created False)."""
    now = now or _now()
    if not identity.person.has(REQUEST_ROLES):
        raise GovernanceError(f"{identity.name} holds none of the roles {', '.join(REQUEST_ROLES)}, so may not "
                              "request approval", hint="a data scientist requests; managers and QA approve")
    if trust.requirement(subject.environment) is None:
        raise UsageError(f"environment {subject.environment!r} requires no approvals",
                         hint=f"protected environments are listed in {policy_dir(settings) / 'approvals.yaml'}: "
                         + (", ".join(e for e in trust.environments if trust.requirement(e)) or "none"))
    if not reason.strip():
        raise UsageError("a request needs a reason", hint='pass --reason "why this version should go to ..."')
    for view in list_requests(ledger, trust, now=now, model=subject.model):
        if view.status == "pending" and view.problem is None and view.subject == subject:
            return view, False
    record = {"format": REQUEST_FORMAT, "id": secrets.token_hex(4), **subject.to_dict(), "reason": reason.strip(),
              "issued_at": format_time(now)}
    signed = identity.sign(record)
    signer(trust, signed, "request")  # the key is the one roles.yaml names
    event = ledger.append("approval_request", actor=identity.name, model=subject.model, version=subject.version,
                          digest=subject.digest, target=subject.environment, outcome="started",
                          details={"request": signed.to_dict()}, ts=now)
    view = RequestView(signed, event.seq, (), evaluate(trust, signed, (), now), "pending")
    _set_tags(registry, subject.model, subject.version, _approval_tags(view))
    return view, True


def decide(settings: Settings, identity: Identity, request_id: str, decision: str, reason: str, *, ledger: Ledger,
           registry: Registry | None, trust: Trust, now: datetime | None = None) -> RequestView:
    """Approve or reject a request as ``identity``; GovernanceError when this person may not (and why)."""
    if decision not in ("approve", "reject"):
        raise UsageError(f"decision {decision!r} is not approve or reject")
    now = now or _now()
    view = find_request(ledger, trust, request_id, now=now)
    subject = view.subject
    requirement = trust.requirement(subject.environment)
    if view.problem:
        raise GovernanceError(f"request {view.id} is not valid: {view.problem}")
    if requirement is None:
        raise GovernanceError(f"{subject.environment} no longer requires approvals; request {view.id} needs none")
    if identity.name == view.request.record.get("by"):
        raise GovernanceError(f"self-approval refused: {identity.name} made request {view.id}",
                              hint="another person holding " + " or ".join(requirement.require) + " decides")
    roles = sorted(set(identity.person.roles) & set(requirement.require))
    if not roles:
        raise GovernanceError(f"{identity.name} ({', '.join(identity.person.roles)}) may not decide on "
                              f"{subject.environment}: it requires {', '.join(requirement.require)}",
                              hint="ask a person holding one of those roles")
    if view.status in ("rejected", "approved"):
        raise GovernanceError(f"request {view.id} is already {view.status}",
                              hint="a new version or new thresholds need a new request")
    if any(d.record.get("by") == identity.name for d in view.decisions):
        raise GovernanceError(f"{identity.name} already decided on request {view.id}; a person counts once")
    gate: dict[str, Any] = {}
    if decision == "approve":
        policy_sha = current_policy_sha256(settings)
        problem = gate_problem(ledger, subject, policy_sha, f"{subject.model}/{subject.version}")
        if problem:
            raise GovernanceError(f"cannot approve request {view.id}: {problem}",
                                  hint="approvals attest a passed gate; run the gate first")
        gate_event = latest_gate(ledger, subject)
        gate = {"policy_sha256": policy_sha, "verdict": "passed", "ledger_seq": gate_event.seq if gate_event else None}
    elif not reason.strip():
        raise UsageError("a rejection needs a reason", hint='pass --reason "what must change"')
    record = {"format": APPROVAL_FORMAT, "request_id": view.id, **subject.to_dict(), "decision": decision,
              "reason": reason.strip(), "issued_at": format_time(now),
              "expires_at": format_time(now + timedelta(seconds=requirement.ttl_s)), "gate": gate}
    signed = identity.sign(record)
    signer(trust, signed, decision)
    ledger.append("approval_decision", actor=identity.name, model=subject.model, version=subject.version,
                  digest=subject.digest, target=subject.environment,
                  outcome="approved" if decision == "approve" else "rejected",
                  details={"request_id": view.id, "roles": roles, "decision": signed.to_dict()}, ts=now)
    updated = find_request(ledger, trust, view.id, now=now)
    tags = _approval_tags(updated)
    if updated.status == "approved":
        tags.update(_resolve_break_glass(ledger, subject, updated, now, actor=identity.name))
    _set_tags(registry, subject.model, subject.version, tags)
    return updated


# -- the deploy check ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployClearance:
    """A deploy of ``subject`` may go ahead: how (``approvals``, ``break_glass``, ``unprotected``), by whom, and the
    clearance document that travels to the nodes (write it as JSON; nodes verify it themselves)."""

    subject: Subject
    mode: str
    people: tuple[tuple[str, str], ...]
    document: dict[str, Any]
    gate_seq: int | None = None
    expires_at: str | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, **self.subject.to_dict(), "people": [{"name": n, "role": r} for n, r in self.people],
                "gate_ledger_seq": self.gate_seq, "expires_at": self.expires_at, "notes": list(self.notes)}

    def document_json(self) -> str:
        return json.dumps(self.document, indent=2, sort_keys=True) + "\n"


def _document(subject: Subject, mode: str, request: Signed | None = None, approvals: Iterable[Signed] = (),
              glass: Signed | None = None) -> dict[str, Any]:
    return {"format": CLEARANCE_FORMAT, **subject.to_dict(), "mode": mode,
            "request": request.to_dict() if request else None, "approvals": [a.to_dict() for a in approvals],
            "break_glass": glass.to_dict() if glass else None}


def check_deploy(settings: Settings, *, model: str, version: str | int, digest: str, environment: str,
                 thresholds_sha256: str | None = None, ledger: Ledger | None = None,
                 now: datetime | None = None) -> DeployClearance:
    """May this exact release (artifact ``digest`` + ``thresholds_sha256``) be deployed to ``environment`` now?

    Unprotected environment (policy/approvals.yaml lists no roles for it): cleared, mode ``unprotected``.
    Protected: the newest gate verdict for this digest, thresholds and environment passed under the current
    gates policy, and a request for the same subject holds unexpired approvals that fill every required role by
    distinct people other than the requester. Otherwise :class:`GovernanceError` (exit 1) whose ``missing`` lists
    each missing piece with the command that fixes it. Raises PolicyError (exit 2) for bad policy files.
    """
    from modelfleet.core.ledger import Ledger

    now = now or _now()
    trust = trust_for(settings)
    subject = Subject(model, str(version), digest, environment, thresholds_sha256)
    if trust.requirement(environment) is None:
        return DeployClearance(subject, "unprotected", (), _document(subject, "unprotected"))
    own = ledger is None
    ledger = ledger or Ledger.from_settings(settings)
    try:
        policy_sha = current_policy_sha256(settings)
        missing: list[str] = []
        problem = gate_problem(ledger, subject, policy_sha, f"{model}/{version}")
        if problem:
            missing.append(problem)
        views = [v for v in list_requests(ledger, trust, now=now, model=model) if v.subject == subject]
        approved = [v for v in views if v.status == "approved"]
        if not approved:
            missing.append(_approval_problem(views, subject))
        if missing:
            raise GovernanceError(f"deploy of {subject.label} refused: " + "; ".join(missing),
                                  hint="fix each missing piece, or an ops person may --break-glass \"reason\"",
                                  missing=tuple(missing))
        view = approved[-1]
        approvals = [d for d in view.decisions if d.record.get("decision") == "approve"]
        document = _document(subject, "approvals", view.request, approvals)
        verdict = verify_clearance(trust, document, environment=environment, digest=digest,
                                   thresholds_sha256=thresholds_sha256, now=now)  # the nodes' own rule
        gate = latest_gate(ledger, subject)
        state = view.state
        return DeployClearance(subject, verdict.mode, verdict.people, document, gate.seq if gate else None,
                               format_time(state.earliest_expiry) if state and state.earliest_expiry else None)
    finally:
        if own:
            ledger.close()


def _approval_problem(views: list[RequestView], subject: Subject) -> str:
    fix = f"modelfleet request {subject.model}/{subject.version} --env {subject.environment} --reason ..."
    live = [v for v in views if v.status == "pending"]
    if live:
        v = live[-1]
        needs = ", ".join(v.state.missing_roles) if v.state else "approvals"
        return f"request {v.id} still needs approval by {needs} (modelfleet approve {v.id})"
    if any(v.status == "expired" for v in views):
        return f"the approvals for {subject.label} expired (request again: {fix})"
    if any(v.status == "rejected" for v in views):
        return f"{subject.label} was rejected (a new version or thresholds need a new request: {fix})"
    return f"no approval request for {subject.label} (the data scientist runs: {fix})"


# -- break-glass ---------------------------------------------------------------------------------------------------


def sign_break_glass(settings: Settings, identity: Identity, subject: Subject, reason: str, *,
                     trust: Trust | None = None, now: datetime | None = None) -> DeployClearance:
    """Sign an ops break-glass record for ``subject`` and return the clearance it makes; writes nothing (the run
    pipeline records it with :func:`record_break_glass` when the run starts, so a previewed run that never
    starts leaves no break-glass behind). GovernanceError when ``identity`` does not hold the ops role."""
    now = now or _now()
    trust = trust or trust_for(settings)
    if not identity.person.has(BREAK_GLASS_ROLES):
        raise GovernanceError(f"break-glass refused: {identity.name} holds none of the roles "
                              f"{', '.join(BREAK_GLASS_ROLES)}", hint="only ops may break glass")
    if not reason.strip():
        raise UsageError("break-glass needs a reason", hint='pass --break-glass "what is on fire"')
    record = {"format": BREAK_GLASS_FORMAT, "id": secrets.token_hex(4), **subject.to_dict(),
              "reason": reason.strip(), "issued_at": format_time(now),
              "expires_at": format_time(now + timedelta(seconds=trust.break_glass_ttl_s))}
    signed = identity.sign(record)
    document = _document(subject, "break_glass", glass=signed)
    verdict = verify_clearance(trust, document, environment=subject.environment, digest=subject.digest,
                               thresholds_sha256=subject.thresholds_sha256, now=now)
    return DeployClearance(subject, verdict.mode, verdict.people, document,
                           expires_at=str(record["expires_at"]),
                           notes=("break-glass: approvals are due after the fact",))


def record_break_glass(clearance: DeployClearance, *, ledger: Ledger, registry: Registry | None,
                       run_id: str | None = None, now: datetime | None = None) -> Event:
    """The loud part of a break-glass: a ``break_glass`` ledger event and the MLflow tag
    ``modelfleet.break_glass.<env>`` (OPEN until approvals for the same subject arrive after the fact)."""
    signed = Signed.from_dict(clearance.document.get("break_glass"), "break-glass record")
    subject, by, reason = clearance.subject, str(signed.record.get("by")), str(signed.record.get("reason"))
    event = ledger.append("break_glass", actor=by, model=subject.model, version=subject.version,
                          digest=subject.digest, target=subject.environment, run_id=run_id, outcome="changed",
                          details={"break_glass": signed.to_dict(), "reason": reason,
                                   "warning": "deployed WITHOUT the required approvals"}, ts=now)
    _set_tags(registry, subject.model, subject.version, {
        tag_key(BREAK_GLASS_TAG, subject.environment):
            f"OPEN: {by} {format_time(event.ts)} ledger #{event.seq}: {reason}"})
    return event


def break_glass(settings: Settings, identity: Identity, subject: Subject, reason: str, *, ledger: Ledger,
                registry: Registry | None, trust: Trust | None = None, now: datetime | None = None,
                ) -> DeployClearance:
    """Clear a deploy without approvals: ops only, with a reason; a loud ledger event and an MLflow tag that stay
    open until the approvals for the same subject arrive after the fact (:func:`sign_break_glass` then
    :func:`record_break_glass`)."""
    clearance = sign_break_glass(settings, identity, subject, reason, trust=trust, now=now)
    record_break_glass(clearance, ledger=ledger, registry=registry, now=now)
    return clearance


def open_break_glass(ledger: Ledger, subject: Subject) -> list[Event]:
    """Break-glass events for ``subject`` not yet followed by approvals (the console's red mark)."""
    opened = [e for e in ledger.events(model=subject.model, action="break_glass")
              if e.digest == subject.digest and e.target == subject.environment]
    resolved = {int(e.details.get("break_glass_seq", 0))
                for e in ledger.events(model=subject.model, action="break_glass_resolved")}
    return [e for e in opened if e.seq not in resolved]


def _resolve_break_glass(ledger: Ledger, subject: Subject, view: RequestView, now: datetime, *, actor: str,
                         ) -> dict[str, str]:
    tags: dict[str, str] = {}
    for event in open_break_glass(ledger, subject):
        who = ", ".join(f"{n} ({r})" for n, r in (view.state.counted if view.state else ()))
        ledger.append("break_glass_resolved", actor=actor, model=subject.model,
                      version=subject.version, digest=subject.digest, target=subject.environment, outcome="ok",
                      details={"break_glass_seq": event.seq, "request_id": view.id, "approved_by": who}, ts=now)
        tags[tag_key(BREAK_GLASS_TAG, subject.environment)] = (
            f"resolved: approved after the fact by {who} (request {view.id}); break-glass ledger #{event.seq}")
    return tags


# -- running a gate, attaching thresholds ------------------------------------------------------------------------


@dataclass(frozen=True)
class GateRun:
    report: GateReport
    manifest: dict[str, Any]
    event: Event | None


def run_gate(settings: Settings, ref: str, *, policy_path: Path | None = None, environment: str | None = None,
             registry: Registry | None = None, ledger: Ledger | None = None, record: bool = True,
             progress: Callable[[str], None] | None = None, now: datetime | None = None) -> GateRun:
    """Judge ``ref`` (pinned once) against the gates policy for ``environment``; record the verdict.

    The policy is read and checked before anything else (PolicyError, exit 2, names file and line); a bad
    reference is a UsageError / VersionNotFound (exit 2). The verdict goes to the ledger and MLflow tags unless
    ``record`` is False."""
    import hashlib

    from modelfleet.core import evaluation as ev
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.policy import check_environment_name, load_gate_policy
    from modelfleet.core.reference import parse_ref
    from modelfleet.core.registry import Registry

    say = progress or (lambda _m: None)
    policy = load_gate_policy(policy_path or gates_path(settings))
    if environment is not None:
        check_environment_name(environment)
    parse_ref(ref)
    registry = registry or Registry(settings)
    pinned = registry.pin(ref)
    say(f"pinned {ref} -> {pinned.name}/{pinned.version} digest {pinned.digest12}")
    info = registry.get_version(pinned.name, pinned.version)
    thresholds = ev.attached_thresholds(info)
    evaluation, why = None, None
    if ev.needs_evaluation(policy, environment):
        say(f"evaluating {pinned.name}/{pinned.version} on its evaluation set"
            + (" with its per-group thresholds" if thresholds else ""))
        evaluation, why = ev.evaluation_or_reason(registry, info, pinned, thresholds, policy)
    report = ev.judge(policy, environment, info, pinned, evaluation, why)
    manifest = ev.build_manifest(report, pinned, evaluation, now)
    event = None
    if record:
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        own = ledger is None
        ledger = ledger or Ledger.from_settings(settings)
        try:
            event = record_gate(report, ledger=ledger, registry=registry, manifest_sha256=digest, now=now)
        finally:
            if own:
                ledger.close()
        manifest["ledger_seq"] = event.seq
    return GateRun(report, manifest, event)


@dataclass(frozen=True)
class FairnessRun:
    """Before/after of per-group thresholds on a version's evaluation set."""

    model: str
    version: str
    digest: str
    column: str
    before: Any  # fairness.Outcome
    search: Any  # fairness.ThresholdSearch
    before_thresholds: Any  # GroupThresholds | None
    evaluation_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "digest": self.digest, "group_column": self.column,
                "evaluation_sha256": self.evaluation_sha256,
                "before": {"thresholds": self.before_thresholds.to_dict() if self.before_thresholds else None,
                           **self.before.to_dict()},
                "after": {"thresholds": self.search.thresholds.to_dict(), "sha256": self.search.thresholds.sha256,
                          "target_fpr": round(self.search.target_fpr, 6), "tolerance": self.search.tolerance,
                          "feasible": self.search.feasible, **self.search.after.to_dict()}}


def run_fairness(settings: Settings, ref: str, *, column: str | None, cost_ratio: float, tolerance: float,
                 registry: Registry | None = None, progress: Callable[[str], None] | None = None,
                 ) -> tuple[FairnessRun, Any]:
    """Search per-group thresholds for ``ref`` on its evaluation set; returns (run, pinned version)."""
    from modelfleet.core import evaluation as ev
    from modelfleet.core import fairness
    from modelfleet.core.reference import parse_ref
    from modelfleet.core.registry import Registry

    if cost_ratio <= 0:
        raise UsageError(f"--cost-ratio {cost_ratio:g} must be greater than 0", hint="e.g. --cost-ratio 5 (FN:FP)")
    if not 0 < tolerance < 1:
        raise UsageError(f"--tolerance {tolerance:g} must be between 0 and 1", hint="e.g. --tolerance 0.02")
    parse_ref(ref)
    say = progress or (lambda _m: None)
    registry = registry or Registry(settings)
    pinned = registry.pin(ref)
    info = registry.get_version(pinned.name, pinned.version)
    data = ev.load_evaluation_set(registry, info)
    column = column or data.group
    if not column:
        raise UsageError(f"{pinned.name}/{pinned.version}: which column holds the groups?",
                         hint=f"pass --group COLUMN or tag the version {ev.GROUP_TAG}")
    if column not in data.frame.columns:
        raise UsageError(f"the evaluation set of {pinned.name}/{pinned.version} has no column {column!r}",
                         hint="columns: " + ", ".join(str(c) for c in data.frame.columns))
    say(f"scoring {len(data.frame)} rows of {pinned.name}/{pinned.version}'s evaluation set")
    current = ev.attached_thresholds(info)
    evaluation = ev.evaluate(pinned.path, data, current, cost_ratio=cost_ratio, seed=0)
    groups = data.frame[column].to_numpy()
    before = fairness.outcome(evaluation.y, evaluation.flags, groups, cost_ratio)
    search = fairness.search_thresholds(evaluation.y, evaluation.proba, groups, column=column, cost_ratio=cost_ratio,
                                        tolerance=tolerance)
    return FairnessRun(pinned.name, str(pinned.version), pinned.digest, column, before, search, current,
                       data.sha256), pinned


def attach_thresholds(run: FairnessRun, *, registry: Registry, ledger: Ledger, actor: str | None = None,
                      now: datetime | None = None) -> Event:
    """Attach the searched thresholds to the version (tag ``modelfleet.thresholds``) and record it.

    The release of this version then carries them (the agent applies them and the probe checks them); gate
    verdicts and approvals bind their sha256, so earlier ones no longer apply."""
    from modelfleet.core.evaluation import THRESHOLDS_TAG

    thresholds = run.search.thresholds
    registry.set_version_tag(run.model, int(run.version), THRESHOLDS_TAG, thresholds.to_json())
    return ledger.append("thresholds_attach", actor=actor or actor_label(), model=run.model, version=run.version,
                         digest=run.digest, outcome="changed",
                         details={"thresholds": thresholds.to_dict(), "sha256": thresholds.sha256,
                                  "replaced_sha256": run.before_thresholds.sha256 if run.before_thresholds else None,
                                  "evaluation_sha256": run.evaluation_sha256,
                                  "before": {"expected_cost": round(run.before.cost, 6),
                                             "fpr_gap": round(run.before.fpr_gap.value, 6)},
                                  "after": {"expected_cost": round(run.search.after.cost, 6),
                                            "fpr_gap": round(run.search.after.fpr_gap.value, 6)}},
                         ts=now)


def subject_for(registry: Registry, ref: str, environment: str) -> Subject:
    """Pin ``ref`` once and name what approvals bind: digest, environment, attached thresholds."""
    from modelfleet.core.evaluation import attached_thresholds
    from modelfleet.core.policy import check_environment_name
    from modelfleet.core.reference import parse_ref

    check_environment_name(environment)
    parse_ref(ref)
    pinned = registry.pin(ref)
    thresholds = attached_thresholds(registry.get_version(pinned.name, pinned.version))
    return Subject(pinned.name, str(pinned.version), pinned.digest, environment,
                   thresholds.sha256 if thresholds else None)
