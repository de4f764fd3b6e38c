"""Node-side governance check: ``python -m modelfleet.governance_verify``. Standard library + cryptography only.

A node runs this before it switches to a release, with its own view of three things, so that a deploy which
skipped the controller's check (a plain ``ansible-playbook`` run, a ``--limit`` that skips the controller play)
still changes nothing here without the approvals:

- ``--trust FILE``: the trust document (people, public keys, required roles per environment), installed on the
  node at provisioning (``modelfleet clearance ... --trust FILE`` writes it; ``core/approvals.py`` documents it);
- ``--environment ENV``: the node's environment (its inventory group variable, installed at provisioning);
- the release: ``--release-dir DIR`` or ``--manifest FILE`` (its verified ``manifest.json``: digest and
  per-group thresholds come from there), or ``--digest`` [``--thresholds-sha256``];

and one thing that travels with the deploy: ``--clearance FILE``, the signed request and approvals (or an ops
break-glass record) that ``modelfleet clearance -o`` / the deploy pipeline writes. Without ``--clearance`` only
an unprotected environment passes.

    python -m modelfleet.governance_verify --trust etc/governance/trust.json --environment prod \\
        --release-dir models/credit-risk/releases/2-fc51742088b3 --clearance /tmp/clearance.json

Prints one JSON object: ``{"ok": true, "mode": "approvals"|"break_glass"|"unprotected", "environment",
"people": [{"name", "role"}]}`` or ``{"ok": false, "error": "..."}``. Exit 0 cleared, 1 refused, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet.governance_verify",
        description="Check on a node that a release may run in this node's environment (signed approvals or "
        "break-glass, verified against the node's own trust file).",
    )
    parser.add_argument("--trust", required=True, type=Path, metavar="JSON", help="the node's trust file")
    parser.add_argument("--environment", required=True, metavar="ENV", help="this node's environment")
    release = parser.add_mutually_exclusive_group(required=True)
    release.add_argument("--release-dir", type=Path, metavar="DIR", help="the release folder (reads manifest.json)")
    release.add_argument("--manifest", type=Path, metavar="JSON", help="the release's manifest.json")
    release.add_argument("--digest", metavar="SHA256", help="the artifact digest (with --thresholds-sha256)")
    parser.add_argument("--thresholds-sha256", metavar="SHA256",
                        help="with --digest: the sha256 of the release's per-group thresholds (omit for none)")
    parser.add_argument("--clearance", type=Path, metavar="JSON", help="the clearance that came with the deploy")
    parser.add_argument("--now", metavar="YYYY-MM-DDTHH:MM:SSZ", help="judge at this time (tests)")
    return parser


def _json(path: Path, what: str) -> Any:
    from modelfleet.core.errors import GovernanceError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GovernanceError(f"{what} {path} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise GovernanceError(f"{what} {path} is not valid JSON: {exc}") from None


def _release(args: argparse.Namespace) -> tuple[str, str | None]:
    from modelfleet.core.approvals import thresholds_digest
    from modelfleet.core.errors import GovernanceError

    if args.digest:
        return args.digest, args.thresholds_sha256
    path = args.manifest if args.manifest is not None else args.release_dir / "manifest.json"
    manifest = _json(path, "release manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("digest"), str):
        raise GovernanceError(f"release manifest {path} names no digest")
    return manifest["digest"], thresholds_digest(manifest.get("thresholds"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.thresholds_sha256 and not args.digest:
        parser.error("--thresholds-sha256 goes with --digest")
    from modelfleet.core.approvals import Trust, parse_time, verify_clearance
    from modelfleet.core.errors import ModelfleetError

    try:
        now = parse_time(args.now, "--now") if args.now else datetime.now(UTC)
        trust = Trust.from_dict(_json(args.trust, "trust file"))
        digest, thresholds = _release(args)
        clearance = _json(args.clearance, "clearance") if args.clearance is not None else None
        verdict = verify_clearance(trust, clearance or {}, environment=args.environment, digest=digest,
                                   thresholds_sha256=thresholds, now=now)
    except ModelfleetError as exc:
        sys.stdout.write(json.dumps({"ok": False, "environment": args.environment, "error": exc.message}) + "\n")
        sys.stderr.write(f"governance_verify: {exc.message}\n" + (f"  fix: {exc.hint}\n" if exc.hint else ""))
        return 1
    sys.stdout.write(json.dumps(verdict.to_dict()) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
