"""Model references: ``name@alias``, ``name/7`` and ``name@latest`` (optionally prefixed ``models:/``).

Parsing is strict and offline: a malformed reference is a :class:`UsageError` naming the reference and the
accepted forms, before anything talks to the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelfleet.core.errors import UsageError

LATEST = "latest"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")
_ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,254}")
FORMS_HINT = "write NAME@ALIAS, NAME/VERSION or NAME@latest, e.g. credit-risk@champion or credit-risk/2"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set (``alias == "latest"`` for latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if (self.version is None) == (self.alias is None):
            raise ValueError("ModelRef needs exactly one of version and alias")

    @property
    def is_latest(self) -> bool:
        return self.alias == LATEST

    @property
    def kind(self) -> str:
        """``"version"``, ``"alias"`` or ``"latest"``."""
        if self.version is not None:
            return "version"
        return "latest" if self.is_latest else "alias"

    def __str__(self) -> str:
        return f"{self.name}/{self.version}" if self.version is not None else f"{self.name}@{self.alias}"


def validate_model_name(name: str, *, ref: str | None = None) -> str:
    """Return ``name`` if it is a valid registered-model name, else raise UsageError."""
    shown = ref if ref is not None else name
    if not name:
        raise UsageError(f"model reference {shown!r} has no model name", hint=FORMS_HINT)
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"model name {name!r} in {shown!r} is not valid: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)",
            hint=FORMS_HINT,
        )
    return name


def validate_alias(alias: str, *, ref: str | None = None) -> str:
    """Return ``alias`` if it is a valid alias (or ``latest``), else raise UsageError."""
    shown = ref if ref is not None else alias
    if not alias:
        raise UsageError(f"model reference {shown!r} has an empty alias", hint=FORMS_HINT)
    if "@" in alias:
        raise UsageError(f"model reference {shown!r} has more than one '@'", hint=FORMS_HINT)
    if not _ALIAS_RE.fullmatch(alias):
        raise UsageError(
            f"alias {alias!r} in {shown!r} is not valid: use letters, digits, '_' and '-' (not starting with a digit)",
            hint=FORMS_HINT,
        )
    return alias


def parse_ref(text: str) -> ModelRef:
    """Parse ``name@alias``, ``name/7`` or ``name@latest``; raise UsageError naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty model reference", hint=FORMS_HINT)
    raw = text.strip()
    body = raw[len("models:/"):] if raw.startswith("models:/") else raw
    if any(ch.isspace() for ch in body):
        raise UsageError(f"model reference {raw!r} contains whitespace", hint=FORMS_HINT)
    if "@" in body:
        name, _, alias = body.partition("@")
        validate_model_name(name, ref=raw)
        validate_alias(alias, ref=raw)
        return ModelRef(name=name, alias=alias)
    if "/" in body:
        name, _, version = body.partition("/")
        validate_model_name(name, ref=raw)
        if not version.isascii() or not version.isdigit() or int(version) < 1:
            raise UsageError(
                f"model reference {raw!r}: version {version!r} is not a positive whole number", hint=FORMS_HINT
            )
        return ModelRef(name=name, version=int(version))
    validate_model_name(body, ref=raw)
    raise UsageError(f"model reference {raw!r} names no version or alias", hint=FORMS_HINT)
