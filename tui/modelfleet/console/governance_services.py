"""The console's door to governance (docs/governance.md): who the user is, approval requests and decisions, each
version's gate verdicts and open break-glass deploys, and the check before a deploy to a protected environment.
Headless (no Textual import); mixed into :class:`~modelfleet.console.services.ConsoleServices`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelfleet.console.services_base import ServicesBase
from modelfleet.core.errors import ModelfleetError

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime

    from modelfleet.core.approvals import Trust
    from modelfleet.core.governance import RequestView
    from modelfleet.core.registry import ModelVersionInfo


@dataclass(frozen=True)
class Who:
    """The person whose private key this user holds (``core/identity.py``), or why there is none."""

    name: str | None
    roles: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class ApprovalRow:
    """One approval request with what the current user may do about it."""

    view: RequestView
    gate_problem: str | None  # why an approval would be refused now (no passed gate), None when the gate passed
    may_decide: bool
    you: str  # "as manager", "your own request", "needs qa", ...


@dataclass(frozen=True)
class ApprovalsData:
    who: Who
    rows: tuple[ApprovalRow, ...]
    protected: Mapping[str, tuple[str, ...]]  # environment -> roles it requires


@dataclass(frozen=True)
class GateMark:
    """The newest gate verdict of a version for one environment (``""``: a gate run without --env)."""

    environment: str
    verdict: str  # passed | failed
    seq: int | None = None  # its ledger event (None: known from the MLflow tag only)
    when: datetime | None = None
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class BreakGlassMark:
    """A break-glass deploy of a version not yet followed by approvals (the console's red mark)."""

    environment: str
    actor: str
    reason: str
    seq: int
    when: datetime


@dataclass(frozen=True)
class VersionGovernance:
    gates: tuple[GateMark, ...] = ()
    approvals: Mapping[str, str] = field(default_factory=dict)  # environment -> modelfleet.approval.<env> tag
    break_glass: tuple[BreakGlassMark, ...] = ()


class GovernanceServices(ServicesBase):
    def _trust(self) -> Trust:
        from modelfleet.core.governance import trust_for

        return trust_for(self.settings)

    def who(self, trust: Trust | None = None) -> Who:
        """Who this user is: the person of policy/roles.yaml whose key they hold."""
        from modelfleet.core.identity import current_identity

        try:
            identity = current_identity(self.settings, trust or self._trust())
        except ModelfleetError as exc:
            return Who(None, problem=exc.message + (f" (fix: {exc.hint})" if exc.hint else ""))
        return Who(identity.name, identity.person.roles)

    def approvals(self) -> ApprovalsData:
        """Every approval request (pending first, then newest first), with what the current user may do."""
        from modelfleet.core.governance import current_policy_sha256, gate_problem, list_requests

        trust = self._trust()
        who = self.who(trust)
        views = list_requests(self.ledger, trust)
        policy_sha = current_policy_sha256(self.settings)
        rows = []
        for view in sorted(views, key=lambda v: (v.status != "pending", -v.seq)):
            gate = None
            if view.status == "pending" and view.problem is None:
                subject = view.subject
                gate = gate_problem(self.ledger, subject, policy_sha, f"{subject.model}/{subject.version}")
            requirement = trust.requirement(str(view.request.record.get("environment")))
            may, you = _may_decide(who, view, requirement.require if requirement else ())
            rows.append(ApprovalRow(view, gate, may, you))
        protected = {e: r.require for e in sorted(trust.environments) if (r := trust.requirement(e)) is not None}
        return ApprovalsData(who, tuple(rows), protected)

    def decide(self, request_id: str, decision: str, reason: str) -> RequestView:
        """Approve or reject as the current user (``core/governance.decide``: signed, recorded, MLflow tags)."""
        from modelfleet.core.governance import decide
        from modelfleet.core.identity import current_identity

        trust = self._trust()
        identity = current_identity(self.settings, trust)
        return decide(self.settings, identity, request_id, decision, reason, ledger=self.ledger,
                      registry=self.registry, trust=trust)

    def version_governance(self, model: str, versions: list[ModelVersionInfo]) -> dict[str, VersionGovernance]:
        """Per version: the newest gate verdict per environment (the ledger's ``gate`` events; the MLflow tags
        ``modelfleet.gate.<env>`` for environments the ledger has none of), the approval tags, and the break-glass
        deploys still open (``governance.open_break_glass``)."""
        from modelfleet.core.approvals import Subject
        from modelfleet.core.governance import APPROVAL_TAG, GATE_TAG, open_break_glass

        gates: dict[str, dict[str, GateMark]] = {}
        for e in self.ledger.events(model=model, action="gate"):  # oldest first: the newest verdict wins
            gates.setdefault(str(e.version), {})[e.target or ""] = GateMark(
                e.target or "", "passed" if e.outcome == "ok" else "failed", e.seq, e.ts,
                tuple(e.details.get("failed") or ()))
        glass: dict[str, list[BreakGlassMark]] = {}
        seen: set[tuple[str, str, str]] = set()
        for e in self.ledger.events(model=model, action="break_glass"):
            subject = (str(e.version), e.digest or "", e.target or "")
            if subject in seen or not e.digest or not e.target:
                continue
            seen.add(subject)
            for still in open_break_glass(self.ledger, Subject(model, str(e.version), e.digest, e.target)):
                glass.setdefault(str(still.version), []).append(BreakGlassMark(
                    still.target or "", still.actor, str(still.details.get("reason") or ""), still.seq, still.ts))
        out: dict[str, VersionGovernance] = {}
        for v in versions:
            key = str(v.version)
            marks = dict(gates.get(key, {}))
            approvals: dict[str, str] = {}
            for tag, value in v.tags.items():
                if tag.endswith(".detail"):
                    continue
                if tag == GATE_TAG or tag.startswith(GATE_TAG + "."):
                    env = tag[len(GATE_TAG) + 1:]
                    marks.setdefault(env, GateMark(env, value))
                elif tag.startswith(APPROVAL_TAG + "."):
                    approvals[tag[len(APPROVAL_TAG) + 1:]] = value
            if marks or approvals or key in glass:
                out[key] = VersionGovernance(tuple(marks[e] for e in sorted(marks)), approvals,
                                             tuple(sorted(glass.get(key, []), key=lambda b: b.seq)))
        return out


def _may_decide(who: Who, view: RequestView, require: tuple[str, ...]) -> tuple[bool, str]:
    """Whether ``who`` may approve or reject ``view`` now, and why (core/governance.decide has the last word)."""
    record = view.request.record
    if view.status != "pending" or view.problem:
        return False, view.status
    if who.name is None:
        return False, "no identity"
    if who.name == record.get("by"):
        return False, "your own request"
    if any(d.record.get("by") == who.name for d in view.decisions):
        return False, "you decided"
    roles = sorted(set(who.roles) & set(require))
    if not roles:
        return False, "needs " + " or ".join(require)
    return True, "as " + ", ".join(roles)
