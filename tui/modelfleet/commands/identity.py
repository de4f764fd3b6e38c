"""``modelfleet identity new|show``: the private key that says who you are (approvals, requests, break-glass).

Standard library only at import time; the work is in ``core/identity.py``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import EXIT_OK

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings

WHERE = ("The key file is governance.identity (modelfleet.toml) or MODELFLEET_GOVERNANCE_IDENTITY, else "
         "$XDG_CONFIG_HOME/modelfleet/identity (~/.config/modelfleet/identity).")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "identity", help="your signing identity: create a key, or show who modelfleet thinks you are",
        description="Approvals and requests are signed with your own ed25519 key. " + WHERE,
    )
    sub = parser.add_subparsers(dest="identity_command", metavar="ACTION", required=True)
    p = sub.add_parser("new", help="create your private key (mode 0600) and print the public line for roles.yaml",
                       description="Create your key unless it exists, then print the line to add to "
                       "policy/roles.yaml as public_key. " + WHERE)
    p.add_argument("--force", action="store_true", help="replace an existing key (your old approvals stay valid "
                   "only while roles.yaml still lists the old public key)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_new)
    p = sub.add_parser("show", help="who you are: the person of roles.yaml holding your key, and their roles")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_show)


def cmd_new(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json
    from modelfleet.core.identity import identity_path, new_identity

    path, public, created = new_identity(identity_path(settings), force=args.force)
    if args.json:
        print_json({"identity_file": str(path), "public_key": public, "created": created})
        return EXIT_OK
    print(("created " if created else "kept the existing key ") + str(path))
    print(f"add yourself to policy/roles.yaml:\n  - name: <you>\n    roles: [<role>]\n    public_key: {public}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json
    from modelfleet.core.governance import trust_for
    from modelfleet.core.identity import current_identity

    identity = current_identity(settings, trust_for(settings))
    if args.json:
        print_json(identity.to_dict())
        return EXIT_OK
    print(f"{identity.name} ({', '.join(identity.person.roles)}), key id {identity.person.key_id}, from "
          f"{identity.path}")
    return EXIT_OK
