"""Governance of a deploy, checked while it is prepared (``DeployRequest.prepare``), before any node is touched.

::

    targets -> each node's environment (inventory: modelfleet_environment, else its staging/production group)
            -> the protected ones (policy/approvals.yaml) -> core/governance.check_deploy per environment
            -> refused: GovernanceError (exit 1) naming, per environment, what is missing and the command that fixes it
            -> cleared: the clearance documents (one per protected environment) travel with the run as
               <state_dir>/runs/<run id>/clearance.json (extra var ``modelfleet_clearance``); every node verifies the
               one for its own environment again, against its own trust file, before it changes anything

``--break-glass "reason"`` (ops only) clears an environment whose approvals are missing with a signed break-glass
record; the record is written to the ledger (``break_glass``, loud) and MLflow (``modelfleet.break_glass.<env>``)
when the run is launched, not when it is prepared, so a previewed run that never starts leaves none behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import ConfigError, GovernanceError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.approvals import Trust
    from modelfleet.core.config import Settings
    from modelfleet.core.deploy import Release
    from modelfleet.core.fleet import Node
    from modelfleet.core.governance import DeployClearance
    from modelfleet.core.ledger import Ledger

CLEARANCE_FILE = "clearance.json"
CLEARANCE_VAR = "modelfleet_clearance"


@dataclass(frozen=True)
class DeployGovernance:
    """How each environment a deploy targets is cleared, and what travels with the run."""

    hosts_by_environment: Mapping[str, tuple[str, ...]]  # "" for hosts in no environment
    clearances: tuple[DeployClearance, ...] = ()  # one per protected environment of the run
    configured: bool = True  # False: the project has no policy/approvals.yaml (nothing is protected)
    notes: tuple[str, ...] = ()
    _pending: tuple[DeployClearance, ...] = field(default=(), repr=False)  # break-glass records to write at launch

    @property
    def break_glass(self) -> tuple[DeployClearance, ...]:
        return self._pending

    def documents_json(self) -> str:
        """The clearance file: a list of documents, one per protected environment (nodes pick their own)."""
        return json.dumps([c.document for c in self.clearances], indent=2, sort_keys=True) + "\n"

    def extra_vars(self, path: Path) -> dict[str, Any]:
        return {CLEARANCE_VAR: str(path)} if self.clearances else {}

    def details(self) -> dict[str, Any]:
        """What run_start records: per environment, its hosts and how it was cleared."""
        by_env = {c.subject.environment: c for c in self.clearances}
        out: dict[str, Any] = {}
        for env, hosts in sorted(self.hosts_by_environment.items()):
            clearance = by_env.get(env)
            entry: dict[str, Any] = {"hosts": list(hosts), "mode": clearance.mode if clearance else "unprotected"}
            if clearance is not None:
                entry["people"] = [{"name": n, "role": r} for n, r in clearance.people]
                entry["expires_at"] = clearance.expires_at
                request = clearance.document.get("request") or {}
                if request:
                    entry["request_id"] = (request.get("record") or {}).get("id")
            out[env or "-"] = entry
        return {"environments": out, **({} if self.configured else {"configured": False}),
                **({"notes": list(self.notes)} if self.notes else {})}

    def record(self, ledger: Ledger, settings: Settings, run_id: str) -> list[int]:
        """At launch: the break-glass records this run uses, to the ledger and MLflow (returns their ledger seqs)."""
        if not self._pending:
            return []
        from modelfleet.core.governance import record_break_glass
        from modelfleet.core.registry import Registry

        registry = Registry(settings)
        return [record_break_glass(c, ledger=ledger, registry=registry, run_id=run_id).seq for c in self._pending]


def _environments(nodes: list[Node]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for node in nodes:
        out.setdefault(node.environment or "", []).append(node.name)
    return {env: tuple(hosts) for env, hosts in out.items()}


def _check_groups(nodes: list[Node], trust: Trust) -> None:
    """A node in a group named like a protected environment must be in that environment: a group ``prod`` whose
    nodes lack ``modelfleet_environment: prod`` would otherwise deploy there unprotected."""
    wrong = [(n, g) for n in nodes for g in n.groups
             if trust.requirement(g) is not None and n.environment != g]
    if wrong:
        node, group = wrong[0]
        raise ConfigError(
            f"inventory: {', '.join(n.name for n, _ in wrong)} in group {group!r} (a protected environment of "
            f"policy/approvals.yaml) but {node.name}'s environment is {node.environment or 'none'!r}",
            hint=f"set modelfleet_environment: {group} for the group (group_vars/{group}.yml), then provision the "
                 "nodes again so they verify deploys for it")


def govern_deploy(settings: Settings, release: Release, nodes: list[Node], *, break_glass: str | None = None,
                  check: bool = False, limit: str | None = None) -> DeployGovernance:
    """Clear a deploy of ``release`` to ``nodes`` (see the module docstring); GovernanceError when refused."""
    from modelfleet.core.governance import check_deploy, enforced_trust, policy_dir

    if break_glass is not None and check:
        raise UsageError("--break-glass with --check: a dry run does not break glass",
                         hint="run --check without --break-glass to see what is missing, or drop --check to deploy")
    if break_glass is not None and not break_glass.strip():
        raise UsageError("break-glass needs a reason", hint='pass --break-glass "what is on fire"')
    by_env = _environments(nodes)
    trust = enforced_trust(settings)
    configured = (policy_dir(settings) / "approvals.yaml").exists()
    _check_groups(nodes, trust)
    protected = sorted(env for env in by_env if trust.requirement(env) is not None)
    if not protected:
        notes = ("--break-glass not used: no target node is in a protected environment",) if break_glass else ()
        return DeployGovernance(by_env, configured=configured, notes=notes)
    clearances: list[DeployClearance] = []
    pending: list[DeployClearance] = []
    refused: list[tuple[str, GovernanceError]] = []
    for env in protected:
        try:
            clearances.append(check_deploy(settings, model=release.model, version=release.version,
                                           digest=release.digest, environment=env,
                                           thresholds_sha256=release.thresholds_sha256))
        except GovernanceError as exc:
            if break_glass is None:
                refused.append((env, exc))
                continue
            glass = _break_glass(settings, trust, release, env, break_glass)
            clearances.append(glass)
            pending.append(glass)
    if refused:
        raise _refusal(release, by_env, refused, limit)
    notes = ()
    if break_glass is not None and not pending:
        notes = ("--break-glass not used: the approvals are in place",)
    return DeployGovernance(by_env, tuple(clearances), configured, notes, tuple(pending))


def _break_glass(settings: Settings, trust: Trust, release: Release, environment: str,
                 reason: str) -> DeployClearance:
    from modelfleet.core.approvals import Subject
    from modelfleet.core.governance import sign_break_glass
    from modelfleet.core.identity import current_identity

    subject = Subject(release.model, release.version, release.digest, environment, release.thresholds_sha256)
    return sign_break_glass(settings, current_identity(settings, trust), subject, reason, trust=trust)


def _refusal(release: Release, by_env: Mapping[str, tuple[str, ...]], refused: list[tuple[str, GovernanceError]],
             limit: str | None) -> GovernanceError:
    parts: list[str] = []
    missing: list[str] = []
    excluded: list[str] = []
    for env, exc in refused:
        items = exc.missing or (exc.message,)
        missing.extend(f"{env}: {item}" for item in items)
        parts.append(f"{env} ({', '.join(by_env[env])}) needs: " + "; ".join(items))
        excluded.extend(f"!{host}" for host in by_env[env])
    hint = ("run the commands named above, then deploy again; an ops person may deploy anyway with "
            "--break-glass \"reason\" (recorded in the ledger, approvals due after the fact)")
    if any(env not in {e for e, _ in refused} for env in by_env):
        hint += "; or leave those nodes out: --limit '" + ",".join(([limit] if limit else []) + excluded) + "'"
    return GovernanceError(f"deploy of {release.model}/{release.version} ({release.digest[:12]}) refused: "
                           + " | ".join(parts), hint=hint, missing=tuple(missing))
