"""Governance check of a deploy: ``python -m modelfleet.governance_verify``. Standard library + cryptography on nodes.

A node runs this before it changes anything for a deploy (the ``modelfleet_release`` module calls it), with its
own view of three things, so that a deploy which skipped the controller's check (a plain ``ansible-playbook``
run, ``--skip-tags governance``, a playbook of one's own around the role) still changes nothing here without
the approvals:

- ``--trust FILE``: the trust document (people, public keys, required roles per environment), installed on the
  node at provisioning as ``<root>/etc/governance/trust.json`` (``core/approvals.py`` documents it);
- ``--environment ENV``: the node's environment (``<root>/etc/governance/environment``, installed at provisioning);
- the release: ``--release-dir DIR``, ``--manifest FILE`` or ``--bundle TAR`` (its ``manifest.json``: digest
  and per-group thresholds come from there), or ``--digest`` [``--thresholds-sha256``];

and one thing that travels with the deploy: ``--clearance FILE`` (``-``: standard input), the signed request and
approvals (or an ops break-glass record) that ``modelfleet clearance -o`` / the run pipeline writes: one
document, or a list of them, one per environment. Without a clearance only an unprotected environment passes.

    python -m modelfleet.governance_verify --trust etc/governance/trust.json --environment prod \\
        --release-dir models/credit-risk/releases/2-fc51742088b3 --clearance /tmp/clearance.json

Prints one JSON object: ``{"ok": true, "mode": "approvals"|"break_glass"|"unprotected", "environment",
"people": [{"name", "role"}]}`` or ``{"ok": false, "environment", "error": "..."}``. Exit 0 cleared, 1 refused,
2 usage or configuration error.

On the controller (``playbooks/deploy.yml``'s first play, before any node is touched), two more options:
``--policy [DIR]`` compiles the trust from the policy files (DIR, default ``governance.policy_dir`` of the
modelfleet settings in effect; a folder without approvals.yaml protects nothing) instead of ``--trust``, and
``--targets JSON`` checks every environment of a run's hosts at once instead of ``--environment``:
``{"hosts": [...], "environments": [<modelfleet_environment or "">, ...], "groups": [[<group names>], ...]}``
(each host's environment by the inventory rule, ``core/fleet.environment_of``). Then the answer is
``{"ok", "model", "version", "release", "environments": {ENV: {"ok", "hosts", "mode" | "error", ...}},
"error": "<what is missing and how to fix it>" (when refused)}``. ``--bundle`` reads the manifest without checking
the bundle's signature (the nodes do, before they unpack it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.approvals import Trust


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet.governance_verify",
        description="Check that a release may run in an environment (signed approvals or break-glass, verified "
        "against a trust file): on a node before it changes anything, or on the controller for every environment "
        "of a run.",
    )
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--trust", type=Path, metavar="JSON", help="the trust file (a node's own copy)")
    trust.add_argument("--policy", nargs="?", const="", metavar="DIR",
                       help="controller: compile the trust from the policy files (default: governance.policy_dir)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--environment", metavar="ENV", help="this node's environment")
    where.add_argument("--targets", metavar="JSON",
                       help='controller: {"hosts": [...], "environments": [...], "groups": [[...], ...]}')
    release = parser.add_mutually_exclusive_group(required=True)
    release.add_argument("--release-dir", type=Path, metavar="DIR", help="the release folder (reads manifest.json)")
    release.add_argument("--manifest", type=Path, metavar="JSON", help="the release's manifest.json")
    release.add_argument("--bundle", type=Path, metavar="TAR_GZ", help="the release bundle (reads its manifest.json)")
    release.add_argument("--digest", metavar="SHA256", help="the artifact digest (with --thresholds-sha256)")
    parser.add_argument("--thresholds-sha256", metavar="SHA256",
                        help="with --digest: the sha256 of the release's per-group thresholds (omit for none)")
    parser.add_argument("--clearance", metavar="JSON",
                        help="the clearance that came with the deploy (a file, or - for standard input)")
    parser.add_argument("--now", metavar="YYYY-MM-DDTHH:MM:SSZ", help="judge at this time (tests)")
    return parser


@dataclass(frozen=True)
class ReleaseFacts:
    """What the check binds of a release: digest and thresholds sha256 (model and version when known)."""

    digest: str
    thresholds_sha256: str | None
    model: str | None = None
    version: str | None = None

    @property
    def label(self) -> str:
        name = f"{self.model}/{self.version}" if self.model else "release"
        return f"{name} ({self.digest[:12]})"


def _parse_json(text: str, what: str) -> Any:
    from modelfleet.core.errors import GovernanceError

    try:
        return json.loads(text)
    except ValueError as exc:
        raise GovernanceError(f"{what} is not valid JSON: {exc}") from None


def read_json(path: Path | str, what: str) -> Any:
    from modelfleet.core.errors import GovernanceError

    if str(path) == "-":
        text = sys.stdin.read()
        return _parse_json(text, f"{what} (standard input)") if text.strip() else None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GovernanceError(f"{what} {path} cannot be read: {exc.strerror}") from None
    return _parse_json(text, f"{what} {path}")


def _bundle_manifest(path: Path) -> Any:
    import tarfile

    from modelfleet.core.errors import GovernanceError

    try:
        with tarfile.open(path, "r:gz") as tar:
            stream = tar.extractfile("manifest.json")
            if stream is None:
                raise KeyError("manifest.json")
            return _parse_json(stream.read().decode("utf-8"), f"manifest.json of {path}")
    except (OSError, KeyError, tarfile.TarError, UnicodeDecodeError) as exc:
        raise GovernanceError(f"release bundle {path} has no readable manifest.json ({exc})",
                              hint="pass the signed bundle `modelfleet bundle MODEL@REF --json` names") from None


def _release(args: argparse.Namespace) -> ReleaseFacts:
    from modelfleet.core.approvals import thresholds_digest
    from modelfleet.core.errors import GovernanceError

    if args.digest:
        return ReleaseFacts(args.digest, args.thresholds_sha256)
    if args.bundle is not None:
        manifest, path = _bundle_manifest(args.bundle), args.bundle
    else:
        path = args.manifest if args.manifest is not None else args.release_dir / "manifest.json"
        manifest = read_json(path, "release manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("digest"), str):
        raise GovernanceError(f"release manifest {path} names no digest")
    return ReleaseFacts(manifest["digest"], thresholds_digest(manifest.get("thresholds")),
                        str(manifest.get("model") or "") or None, str(manifest.get("version") or "") or None)


def _trust(args: argparse.Namespace) -> Trust:
    from modelfleet.core.approvals import Trust

    if args.trust is not None:
        return Trust.from_dict(read_json(args.trust, "trust file"))
    from modelfleet.core.config import load_settings
    from modelfleet.core.roles import load_enforced_trust

    settings = load_settings()
    folder = Path(args.policy) if args.policy else Path(settings.governance.policy_dir)
    return load_enforced_trust(folder, state_dir=Path(settings.state_dir))


def _environments(raw: str) -> dict[str, list[str]]:
    """environment -> hosts from ``--targets`` ("" for hosts in no environment)."""
    from modelfleet.core.errors import UsageError
    from modelfleet.core.fleet import environment_of

    targets = _parse_json(raw, "--targets")
    if not isinstance(targets, Mapping) or not isinstance(targets.get("hosts"), list):
        raise UsageError('--targets must be {"hosts": [...], "environments": [...], "groups": [[...], ...]}')
    hosts = [str(h) for h in targets["hosts"]]
    variables = list(targets.get("environments") or [None] * len(hosts))
    groups = list(targets.get("groups") or [[]] * len(hosts))
    if not len(variables) == len(groups) == len(hosts):
        raise UsageError("--targets: hosts, environments and groups must have the same length")
    out: dict[str, list[str]] = {}
    for host, variable, names in zip(hosts, variables, groups, strict=True):
        out.setdefault(environment_of(variable, names if isinstance(names, list) else []) or "", []).append(host)
    return out


def _fix(release: ReleaseFacts, environment: str) -> str:
    ref = f"{release.model}/{release.version}" if release.model and release.version else "MODEL/VERSION"
    return (f"get the gate passed and the approvals for {environment} (modelfleet gate {ref} --env {environment}; "
            f"modelfleet request {ref} --env {environment} --reason ...; modelfleet approve ID) and deploy with "
            f"`modelfleet deploy`, or write the clearance (modelfleet clearance {ref} --env {environment} -o "
            "clearance.json) and pass -e modelfleet_clearance=clearance.json; an ops person may break glass "
            "(modelfleet deploy ... --break-glass \"reason\")")


def check_targets(trust: Trust, release: ReleaseFacts, by_environment: Mapping[str, list[str]], clearance: Any,
                  now: datetime) -> dict[str, Any]:
    """The controller's check of every environment a run targets (one answer, ``ok`` False when any refuses)."""
    from modelfleet.core.approvals import select_clearance, verify_clearance
    from modelfleet.core.errors import GovernanceError
    from modelfleet.core.release_names import release_name

    answers: dict[str, Any] = {}
    refused: list[str] = []
    for environment, hosts in sorted(by_environment.items()):
        try:
            verdict = verify_clearance(trust, select_clearance(clearance, environment) or {},
                                       environment=environment, digest=release.digest,
                                       thresholds_sha256=release.thresholds_sha256, now=now)
        except GovernanceError as exc:
            answers[environment or "-"] = {"ok": False, "hosts": hosts, "error": exc.message}
            refused.append(f"{environment} ({', '.join(hosts)}): {exc.message}; fix: {_fix(release, environment)}")
            continue
        answers[environment or "-"] = {**verdict.to_dict(), "hosts": hosts}
    out: dict[str, Any] = {"ok": not refused, "model": release.model, "version": release.version,
                           "digest": release.digest, "thresholds_sha256": release.thresholds_sha256,
                           "release": release_name(release.version or "", release.digest, release.thresholds_sha256)
                           if release.version else None, "environments": answers}
    if refused:
        out["error"] = f"deploy of {release.label} refused for " + " | ".join(refused)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.thresholds_sha256 and not args.digest:
        parser.error("--thresholds-sha256 goes with --digest")
    from modelfleet.core.approvals import parse_time, select_clearance, verify_clearance
    from modelfleet.core.errors import ModelfleetError

    try:
        now = parse_time(args.now, "--now") if args.now else datetime.now(UTC)
        trust = _trust(args)
        release = _release(args)
        clearance = read_json(args.clearance, "clearance") if args.clearance is not None else None
        if args.targets is not None:
            answer = check_targets(trust, release, _environments(args.targets), clearance, now)
            sys.stdout.write(json.dumps(answer) + "\n")
            if not answer["ok"]:
                sys.stderr.write(f"governance_verify: {answer['error']}\n")
            return 0 if answer["ok"] else 1
        verdict = verify_clearance(trust, select_clearance(clearance, args.environment) or {},
                                   environment=args.environment, digest=release.digest,
                                   thresholds_sha256=release.thresholds_sha256, now=now)
    except ModelfleetError as exc:
        sys.stdout.write(json.dumps({"ok": False, "environment": args.environment, "error": exc.message}) + "\n")
        sys.stderr.write(f"governance_verify: {exc.message}\n" + (f"  fix: {exc.hint}\n" if exc.hint else ""))
        return exc.exit_code
    sys.stdout.write(json.dumps(verdict.to_dict()) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
