"""``modelfleet request|approve|reject|approvals|clearance|trust``: approvals by role (seed 002).

Who acts is the person whose private key you hold (``governance.identity`` / ``MODELFLEET_GOVERNANCE_IDENTITY``,
default ``~/.config/modelfleet/identity``), matched against ``policy/roles.yaml``; ``MODELFLEET_ACTOR`` proves
nothing. Standard library only at import time; the work is in ``core/governance.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import EXIT_OK, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.governance import RequestView

WHO = ("You act as the person whose private key you hold: governance.identity or MODELFLEET_GOVERNANCE_IDENTITY "
       "(default ~/.config/modelfleet/identity), matched against policy/roles.yaml.")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "request", help="ask for approval to deploy a pinned version to a protected environment (data scientist)",
        description="Pin MODEL@REF and record a signed request for its digest (and per-group thresholds) in ENV. "
        + WHO, epilog="example:\n  modelfleet request credit-risk@champion --env prod --reason \"quarterly retrain\"",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ref", metavar="MODEL@ALIAS|MODEL/VERSION")
    p.add_argument("--env", required=True, metavar="ENV", help="a protected environment (policy/approvals.yaml)")
    p.add_argument("--reason", required=True, help="why this version should go there")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_request)

    for name, verb in (("approve", "approve"), ("reject", "reject")):
        p = subparsers.add_parser(
            name, help=f"{verb} an approval request (manager or QA, never your own request)",
            description=f"Sign and record your decision to {verb} request ID (the first characters are enough). "
            "The approval binds the request's digest, thresholds and environment, attests the passed gate and "
            "expires after the environment's ttl. " + WHO,
        )
        p.add_argument("request_id", metavar="ID", help="request id (from modelfleet approvals)")
        p.add_argument("--reason", required=name == "reject", default="",
                       help="why" + (" (required)" if name == "reject" else " (optional)"))
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=cmd_decide, decision=verb)

    p = subparsers.add_parser(
        "approvals", help="list approval requests with their state (pending, approved, rejected, expired)",
        description="Requests and decisions folded from the ledger and checked against policy/roles.yaml now.",
    )
    p.add_argument("--all", action="store_true", help="also approved, rejected, expired and invalid requests")
    p.add_argument("--model", help="only requests for this model")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser(
        "clearance", help="may MODEL@REF deploy to ENV now? (gate + approvals); write the clearance for the nodes",
        description="Run the deploy check: exit 0 and (with -o) write the clearance document nodes verify, or "
        "exit 1 listing what is missing. --trust writes the trust file nodes verify against.",
        epilog="examples:\n  modelfleet clearance credit-risk@champion --env prod\n"
        "  modelfleet clearance credit-risk@champion --env prod -o clearance.json --trust trust.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ref", metavar="MODEL@ALIAS|MODEL/VERSION")
    p.add_argument("--env", required=True, metavar="ENV")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the clearance document to FILE")
    p.add_argument("--trust", type=Path, metavar="FILE", help="write the trust file (people, keys, requirements)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_clearance)

    p = subparsers.add_parser(
        "trust", help="write the trust file nodes verify deploys against (compiled from policy/)",
        description="Compile policy/roles.yaml and policy/approvals.yaml into the trust file (modelfleet-trust/1: "
        "people, public keys, protected environments) that provisioning installs on every node as "
        "<root>/etc/governance/trust.json. A policy folder without approvals.yaml protects nothing.",
        epilog="examples:\n  modelfleet trust                       # print it\n"
        "  modelfleet trust -o .modelfleet/governance/trust.json --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write it to FILE (only when it changed)")
    p.add_argument("--json", action="store_true", help="with -o: print {path, changed, protected} as JSON")
    p.set_defaults(func=cmd_trust)


def _context(settings: Settings, *, need_identity: bool = True) -> tuple[Any, Any, Any, Any]:
    from modelfleet.core.governance import trust_for
    from modelfleet.core.identity import current_identity
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.registry import Registry

    trust = trust_for(settings)
    identity = current_identity(settings, trust) if need_identity else None
    return trust, identity, Ledger.from_settings(settings), Registry(settings)


def _show(view: RequestView) -> str:
    d = view.to_dict()
    text = f"request {d['id']} ({d['status']}): {d['model']}/{d['version']} ({str(d['digest'])[:12]}) for " \
           f"{d['environment']}, requested by {d['requested_by']}"
    if d["approved_by"]:
        text += "; approved by " + ", ".join(f"{a['name']} ({a['role']})" for a in d["approved_by"])
    if d["missing_roles"] and d["status"] == "pending":
        text += "; needs " + ", ".join(d["missing_roles"])
    if d["rejected_by"]:
        text += f"; rejected by {d['rejected_by']}"
    if d["expires_at"] and d["status"] == "approved":
        text += f"; valid until {d['expires_at']}"
    return text


def cmd_request(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json
    from modelfleet.core.governance import current_policy_sha256, gate_problem, request_approval, subject_for

    trust, identity, ledger, registry = _context(settings)
    with ledger:
        subject = subject_for(registry, args.ref, args.env)
        view, created = request_approval(settings, identity, subject, args.reason, ledger=ledger,
                                         registry=registry, trust=trust)
        gate = gate_problem(ledger, subject, current_policy_sha256(settings), args.ref)
    if args.json:
        print_json({**view.to_dict(), "created": created, "gate_problem": gate})
        return EXIT_OK
    print(("recorded " if created else "already pending: ") + _show(view))
    if gate:
        print(f"note: approvers cannot approve yet: {gate}")
    return EXIT_OK


def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json
    from modelfleet.core.governance import decide

    trust, identity, ledger, registry = _context(settings)
    with ledger:
        view = decide(settings, identity, args.request_id, args.decision, args.reason, ledger=ledger,
                      registry=registry, trust=trust)
    if args.json:
        print_json(view.to_dict())
        return EXIT_OK
    print(f"{identity.name} {args.decision}d: " + _show(view))
    return EXIT_OK


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, print_table
    from modelfleet.core.governance import list_requests, trust_for
    from modelfleet.core.ledger import Ledger

    trust = trust_for(settings)
    with Ledger.from_settings(settings) as ledger:
        views = list_requests(ledger, trust, model=args.model)
    if not args.all:
        views = [v for v in views if v.status == "pending"]
    rows = [v.to_dict() for v in views]
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print("no pending approval requests" if not args.all else "no approval requests")
        return EXIT_OK
    print_table(["ID", "STATUS", "MODEL", "DIGEST", "ENV", "REQUESTED BY", "APPROVED BY", "NEEDS", "UNTIL", "REASON"],
                [(r["id"], r["status"], f"{r['model']}/{r['version']}", str(r["digest"])[:12], r["environment"],
                  r["requested_by"], ", ".join(f"{a['name']} ({a['role']})" for a in r["approved_by"]) or None,
                  ", ".join(r["missing_roles"]) or None, r["expires_at"], (r["reason"] or "")[:40])
                 for r in rows])
    return EXIT_OK


def cmd_clearance(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from modelfleet.commands._output import print_json
    from modelfleet.core.governance import check_deploy, subject_for, trust_document
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.registry import Registry

    for out in (args.output, args.trust):
        if out is not None and out.is_dir():
            raise UsageError(f"{out} is a folder", hint="name a file, e.g. clearance.json")
    subject = subject_for(Registry(settings), args.ref, args.env)
    with Ledger.from_settings(settings) as ledger:
        clearance = check_deploy(settings, model=subject.model, version=subject.version, digest=subject.digest,
                                 environment=subject.environment, thresholds_sha256=subject.thresholds_sha256,
                                 ledger=ledger)
    try:
        if args.output is not None:
            args.output.write_text(clearance.document_json(), encoding="utf-8")
        if args.trust is not None:
            args.trust.write_text(json.dumps(trust_document(settings), indent=2, sort_keys=True) + "\n",
                                  encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename}: {exc.strerror}") from None
    if args.json:
        print_json(clearance.to_dict())
        return EXIT_OK
    who = ", ".join(f"{n} ({r})" for n, r in clearance.people) or "-"
    print(f"cleared: {subject.label} ({clearance.mode}; {who}"
          + (f"; until {clearance.expires_at}" if clearance.expires_at else "") + ")")
    return EXIT_OK


def cmd_trust(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json
    from modelfleet.core.governance import enforced_trust

    trust = enforced_trust(settings)
    for why in trust.left_out:
        print(f"modelfleet: warning: {why}", file=sys.stderr)
    text = trust.to_json()
    if args.output is None:
        print(text, end="")
        return EXIT_OK
    if args.output.is_dir():
        raise UsageError(f"{args.output} is a folder", hint="name a file, e.g. trust.json")
    try:
        changed = not args.output.exists() or args.output.read_text(encoding="utf-8") != text
        if changed:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    protected = sorted(e for e in trust.environments if trust.requirement(e))
    if args.json:
        print_json({"path": str(args.output), "changed": changed, "protected": protected,
                    "people": len(trust.people)})
    else:
        print(f"{'wrote' if changed else 'unchanged'} {args.output}: protected {', '.join(protected) or 'none'}, "
              f"{len(trust.people)} people")
    return EXIT_OK
