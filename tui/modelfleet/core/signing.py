"""Release signing keys: ed25519 via ``cryptography``.

The controller keeps its key pair under ``<state_dir>/keys/``:

- ``release.key``  PKCS#8 PEM private key, mode 0600, folder mode 0700; it never leaves the controller;
- ``release.pub``  SubjectPublicKeyInfo PEM public key; this is what nodes get.

The key id (``key_id`` in a manifest) is the first 16 hex digits of sha256 over the raw 32-byte public key.
Signatures are raw ed25519 signatures, base64 text. Standard library + cryptography only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelfleet.core.errors import BundleError, ModelfleetError

PRIVATE_KEY_NAME = "release.key"
PUBLIC_KEY_NAME = "release.pub"


def key_paths(state_dir: Path) -> tuple[Path, Path]:
    """(private, public) key paths under ``<state_dir>/keys/``."""
    keys = Path(state_dir) / "keys"
    return keys / PRIVATE_KEY_NAME, keys / PUBLIC_KEY_NAME


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_signing_key(state_dir: Path) -> Ed25519PrivateKey | None:
    """The controller's signing key, or None when there is none (BundleError when it is unreadable)."""
    private_path, _ = key_paths(state_dir)
    if not private_path.exists():
        return None
    return load_private_key(private_path)


def load_or_create_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    """The controller's signing key, generated on first use (safe when two processes race to create it)."""
    private_path, public_path = key_paths(state_dir)
    if not private_path.exists():
        create_private_key(private_path)
    key = load_private_key(private_path)
    pub = public_pem(key.public_key())
    if not public_path.exists() or public_path.read_bytes() != pub:
        tmp_pub = public_path.with_name(f".{PUBLIC_KEY_NAME}.{os.getpid()}.tmp")
        tmp_pub.write_bytes(pub)
        os.chmod(tmp_pub, 0o644)
        os.replace(tmp_pub, public_path)
    return key


def create_private_key(path: Path) -> None:
    """Generate an ed25519 key into ``path`` (PKCS#8 PEM, mode 0600, folder 0700); a key already there wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # never overwrites: the first creator wins
    finally:
        tmp.unlink(missing_ok=True)


def load_private_key(path: Path, *, what: str = "signing key",
                     error: type[ModelfleetError] = BundleError) -> Ed25519PrivateKey:
    """An ed25519 private key from a PEM file only its owner can read; ``error`` names ``what`` it is."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise error(f"{path}: private {what} is readable by others (mode {mode:o})", hint=f"chmod 600 {path}")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except ValueError:
        raise error(f"{path}: not a PEM private key", hint="move it away to generate a new key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise error(f"{path}: not an ed25519 private key")
    return key


def load_public_key(source: Path | str | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    """A public key from a PEM file path, PEM bytes, or an existing key object."""
    if isinstance(source, Ed25519PublicKey):
        return source
    name = "public key"
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path}: cannot read the release public key: {exc.strerror}",
                              hint="copy release.pub from the controller's keys/ folder") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise BundleError(f"{name}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{name}: not an ed25519 public key")
    return key


def sign(private_key: Ed25519PrivateKey, data: bytes) -> str:
    """Base64 text of the raw ed25519 signature over ``data``."""
    return base64.b64encode(private_key.sign(data)).decode("ascii") + "\n"


def verify_signature(public_key: Ed25519PublicKey, data: bytes, signature_text: str | bytes) -> bool:
    """True when ``signature_text`` (base64) is a valid signature of ``data`` by ``public_key``."""
    try:
        raw = base64.b64decode(signature_text.strip(), validate=True)
        public_key.verify(raw, data)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
