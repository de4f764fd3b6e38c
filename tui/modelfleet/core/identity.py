"""Who is acting: the private key the user holds, matched against the people of ``policy/roles.yaml``.

The key lives in one file per user, never in the project:

1. ``governance.identity`` (modelfleet.toml) or ``MODELFLEET_GOVERNANCE_IDENTITY`` (tests, CI, switching to a
   demo identity), a path (relative paths from the project folder);
2. otherwise ``$XDG_CONFIG_HOME/modelfleet/identity``, i.e. ``~/.config/modelfleet/identity``.

It is an ed25519 private key in PKCS#8 PEM, mode 0600 (``modelfleet identity new`` creates it and prints the
public line to add to roles.yaml). Whoever holds a person's private key acts as that person; a name in
``MODELFLEET_ACTOR`` or on the command line proves nothing and is never consulted here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet.core.approvals import Person, Signed, Trust, public_key_text, sign_record
from modelfleet.core.errors import IdentityError
from modelfleet.core.signing import create_private_key, key_id, load_private_key

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings

IDENTITY_FILE = "identity"


def identity_path(settings: Settings) -> Path:
    """Where this user's private key is (see the module docstring)."""
    configured = settings.governance.identity.strip()
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else (settings.project_dir / path)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "modelfleet" / IDENTITY_FILE


@dataclass(frozen=True)
class Identity:
    """The person whose private key this user holds."""

    person: Person
    private_key: Ed25519PrivateKey
    path: Path

    @property
    def name(self) -> str:
        return self.person.name

    def sign(self, record: dict[str, Any]) -> Signed:
        return sign_record(self.private_key, {**record, "by": self.person.name, "key_id": self.person.key_id})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.person.name, "roles": list(self.person.roles), "key_id": self.person.key_id,
                "identity_file": str(self.path)}


def load_key(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        raise IdentityError(
            f"no identity: {path} does not exist, so modelfleet cannot tell who you are",
            hint="create your key with `modelfleet identity new` and add its public line to policy/roles.yaml, "
            "or point MODELFLEET_GOVERNANCE_IDENTITY at your key (demo keys: .modelfleet/demo/identities/)")
    return load_private_key(path, what="identity key", error=IdentityError)


def current_identity(settings: Settings, trust: Trust) -> Identity:
    """The person of ``trust`` whose public key matches the key this user holds; IdentityError otherwise."""
    path = identity_path(settings)
    key = load_key(path)
    kid = key_id(key.public_key())
    person = trust.by_key_id(kid)
    if person is None:
        raise IdentityError(
            f"your key {path} (key id {kid}) belongs to no person in the roles file",
            hint=f"add yourself to policy/roles.yaml with public_key: {public_key_text(key.public_key())}")
    return Identity(person, key, path)


def new_identity(path: Path, *, force: bool = False) -> tuple[Path, str, bool]:
    """Create a key at ``path`` unless one exists; returns (path, public line, created)."""
    created = False
    if path.exists() and force:
        path.unlink()
    if not path.exists():
        create_private_key(path)
        created = True
    key = load_key(path)
    return path, public_key_text(key.public_key()), created
