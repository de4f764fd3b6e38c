"""The console's door to governance (docs/governance.md): who the user is, approval requests and decisions, each
version's gate verdicts and open break-glass deploys, and the check before a deploy to a protected environment.
Headless (no Textual import); mixed into :class:`~modelfleet.console.services.ConsoleServices`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelfleet.console.services_base import ServicesBase
from modelfleet.core.errors import GovernanceError, ModelfleetError

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime

    from modelfleet.core.approvals import Trust
    from modelfleet.core.fleet import Node
    from modelfleet.core.governance import RequestView
    from modelfleet.core.registry import ModelVersionInfo
    from modelfleet.runners.requests import PreparedRun


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

    def check_governance(self, prepared: PreparedRun) -> None:
        """Refuse a deploy to a protected environment that lacks its passed gate or approvals: GovernanceError
        whose ``missing`` lists each missing piece, per environment (``governance.check_deploy``).

        The console calls this right after :meth:`prepare` (app._prepare), until the run pipeline's prepare calls
        check_deploy itself; then delete this method and that one call: the console shows the GovernanceError
        the pipeline raises in the same way. A check-mode deploy changes nothing and is not checked."""
        if prepared.kind != "deploy" or prepared.check or not (prepared.model and prepared.version
                                                               and prepared.digest):
            return
        from modelfleet.core.fleet import Inventory
        from modelfleet.core.governance import check_deploy, policy_dir
        from modelfleet.core.roles import APPROVALS_FILE

        if not (policy_dir(self.settings) / APPROVALS_FILE).is_file():
            return  # no approvals policy: no environment is protected (a broken one is reported below)
        trust = self._trust()
        inventory = Inventory.load(prepared.inventory, default_agent_port=self.settings.fleet.agent_port)
        environments = protected_environments([inventory.node(h) for h in prepared.hosts], trust)
        if not environments:
            return
        thresholds = self._thresholds_sha256(prepared)
        missing: list[str] = []
        messages: list[str] = []
        for env in environments:
            try:
                check_deploy(self.settings, model=prepared.model, version=prepared.version, digest=prepared.digest,
                             environment=env, thresholds_sha256=thresholds, ledger=self.ledger)
            except GovernanceError as exc:
                messages.append(exc.message)
                missing += [f"{env}: {m}" for m in exc.missing or (exc.message,)]
        if missing:
            raise GovernanceError("; ".join(messages), missing=tuple(missing),
                                  hint="fix each missing piece, or an ops person may --break-glass \"reason\"")

    def _thresholds_sha256(self, prepared: PreparedRun) -> str | None:
        """What approvals bind of the release's per-group thresholds: from the signed bundle that will be deployed
        (its verified manifest), else from the version's tag."""
        if prepared.release is not None:
            from modelfleet.core.bundle import verify_bundle

            return verify_bundle(prepared.release.bundle, prepared.release.public_key).thresholds_sha256
        from modelfleet.core.evaluation import attached_thresholds

        thresholds = attached_thresholds(self.registry.get_version(str(prepared.model), int(str(prepared.version))))
        return thresholds.sha256 if thresholds else None


def protected_environments(nodes: list[Node], trust: Trust) -> list[str]:
    """The protected environments (policy/approvals.yaml) these nodes are in: a node's ``modelfleet_environment``
    variable (a group variable names it), else its environment group, and any group of it that the policy names."""
    out: set[str] = set()
    for node in nodes:
        named = node.vars.get("modelfleet_environment") or node.environment
        for env in {str(named) if named else "", *node.groups}:
            if env and trust.requirement(env) is not None:
                out.add(env)
    return sorted(out)


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
