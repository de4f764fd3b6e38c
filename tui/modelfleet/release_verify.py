"""Node-side release verifier: ``python -m modelfleet.release_verify``. Standard library + cryptography only.

    python -m modelfleet.release_verify --public-key release.pub --bundle B.tar.gz
    python -m modelfleet.release_verify --public-key release.pub --bundle B.tar.gz --dest releases/2-abcdef123456
    python -m modelfleet.release_verify --public-key release.pub --release-dir releases/2-abcdef123456

With ``--trust FILE --environment ENV [--clearance FILE|-]`` the verified release must also be cleared for ENV
(``modelfleet.governance_verify``'s rule, on the digest and thresholds of the verified manifest) before anything
is unpacked: a deploy checks governance a second time, on the bytes it is about to install.

Prints one JSON object on stdout (for Ansible ``changed_when``/``failed_when``):
``{"ok": true, "changed": bool, "model", "version", "digest", "release", "key_id", "path"}`` (plus
``"governance": {...}`` when checked) or ``{"ok": false, "error": "..."}`` (with ``"damaged": true`` when an
unpacked ``--release-dir`` itself does not verify). Exit codes: 0 verified (and unpacked), 1 refused, 2 usage
error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet.release_verify",
        description="Verify a signed modelfleet release bundle (and unpack it atomically with --dest).",
    )
    parser.add_argument("--public-key", required=True, type=Path, metavar="PEM",
                        help="the controller's release.pub")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--bundle", type=Path, metavar="TAR_GZ", help="a release bundle file")
    what.add_argument("--release-dir", type=Path, metavar="DIR", help="an unpacked release folder")
    parser.add_argument("--dest", type=Path, metavar="DIR",
                        help="unpack the verified bundle into DIR (atomic; kept when already there)")
    parser.add_argument("--trust", type=Path, metavar="JSON",
                        help="with --environment: the node's trust file; the release must be cleared for ENV")
    parser.add_argument("--environment", metavar="ENV", help="with --trust: the node's environment")
    parser.add_argument("--clearance", metavar="JSON", help="with --trust: the clearance (a file, or - for stdin)")
    return parser


def _governance(args: argparse.Namespace) -> tuple[Callable[[Any], None], dict[str, Any]]:
    """A check of a verified manifest against the clearance for ``--environment`` (raises BundleError)."""
    from datetime import UTC, datetime

    from modelfleet.core.approvals import Trust, select_clearance, verify_clearance
    from modelfleet.core.errors import BundleError, ModelfleetError
    from modelfleet.governance_verify import read_json

    answer: dict[str, Any] = {}

    def check(manifest: Any) -> None:
        try:
            trust = Trust.from_dict(read_json(args.trust, "trust file"))
            raw = read_json(args.clearance, "clearance") if args.clearance is not None else None
            verdict = verify_clearance(trust, select_clearance(raw, args.environment) or {},
                                       environment=args.environment, digest=manifest.digest,
                                       thresholds_sha256=manifest.thresholds_sha256, now=datetime.now(UTC))
        except ModelfleetError as exc:
            raise BundleError(f"{manifest.release_name} is not cleared for {args.environment}: {exc.message}",
                              hint=exc.hint) from None
        answer.update(verdict.to_dict())

    return check, answer


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dest is not None and args.bundle is None:
        parser.error("--dest needs --bundle")
    if (args.trust is None) != (args.environment is None) or (args.clearance is not None and args.trust is None):
        parser.error("--trust and --environment go together (and --clearance with them)")
    from modelfleet.core.bundle import install_bundle, verify_bundle, verify_release_dir
    from modelfleet.core.errors import BundleError

    changed = False
    damaged = False  # the unpacked release itself does not verify (not a clearance refusal)
    check, governance = _governance(args) if args.trust is not None else (None, {})
    try:
        if args.release_dir is not None:
            damaged = True
            manifest = verify_release_dir(args.release_dir, args.public_key)
            damaged = False
            path = args.release_dir
            if check is not None:
                check(manifest)
        elif args.dest is not None:
            manifest, changed = install_bundle(args.bundle, args.dest, args.public_key, check=check)
            path = args.dest
        else:
            manifest = verify_bundle(args.bundle, args.public_key)
            path = args.bundle
            if check is not None:
                check(manifest)
    except BundleError as exc:
        sys.stdout.write(json.dumps({"ok": False, "error": exc.message, **({"damaged": True} if damaged else {})})
                         + "\n")
        sys.stderr.write(f"release_verify: {exc.message}\n" + (f"  fix: {exc.hint}\n" if exc.hint else ""))
        return 1
    sys.stdout.write(json.dumps({
        "ok": True, "changed": changed, "model": manifest.model, "version": manifest.version,
        "digest": manifest.digest, "release": manifest.release_name, "key_id": manifest.key_id,
        "path": str(path), **({"governance": governance} if governance else {}),
    }) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
