"""Node-side release verifier: ``python -m modelfleet.release_verify``. Standard library + cryptography only.

    python -m modelfleet.release_verify --public-key release.pub --bundle B.tar.gz
    python -m modelfleet.release_verify --public-key release.pub --bundle B.tar.gz --dest releases/2-abcdef123456
    python -m modelfleet.release_verify --public-key release.pub --release-dir releases/2-abcdef123456

Prints one JSON object on stdout (for Ansible ``changed_when``/``failed_when``):
``{"ok": true, "changed": bool, "model", "version", "digest", "release", "key_id", "path"}`` or
``{"ok": false, "error": "..."}``. Exit codes: 0 verified (and unpacked), 1 refused, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dest is not None and args.bundle is None:
        parser.error("--dest needs --bundle")
    from modelfleet.core.bundle import install_bundle, verify_bundle, verify_release_dir
    from modelfleet.core.errors import BundleError

    changed = False
    try:
        if args.release_dir is not None:
            manifest = verify_release_dir(args.release_dir, args.public_key)
            path = args.release_dir
        elif args.dest is not None:
            manifest, changed = install_bundle(args.bundle, args.dest, args.public_key)
            path = args.dest
        else:
            manifest = verify_bundle(args.bundle, args.public_key)
            path = args.bundle
    except BundleError as exc:
        sys.stdout.write(json.dumps({"ok": False, "error": exc.message}) + "\n")
        sys.stderr.write(f"release_verify: {exc.message}\n" + (f"  fix: {exc.hint}\n" if exc.hint else ""))
        return 1
    sys.stdout.write(json.dumps({
        "ok": True, "changed": changed, "model": manifest.model, "version": manifest.version,
        "digest": manifest.digest, "release": manifest.release_name, "key_id": manifest.key_id,
        "path": str(path),
    }) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
