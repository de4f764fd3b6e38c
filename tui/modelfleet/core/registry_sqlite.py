"""Resolving a reference straight from an embedded (SQLite) MLflow registry, without importing MLflow.

Importing MLflow's client and its SQLAlchemy store costs ~7 CPU-seconds on a small machine, and a pin of an
already downloaded version needs nothing else from it: which version a reference names now, its source and run.
:func:`resolve_in_sqlite` reads exactly that from the registry database MLflow keeps (tables
``registered_models``, ``model_versions`` and ``registered_model_aliases``), read-only, with the same rules as
MLflow's own store: a version whose stage is ``Deleted_Internal`` does not exist, only the default workspace is
seen (the single-tenant registry modelfleet embeds).

It answers only what it is sure of: a missing database, table or column, a model, version or alias it cannot
find, or another workspace asked for (``MLFLOW_WORKSPACE``) returns ``None``, and the caller asks MLflow's client
(which also words the error that names what exists). A test compares its answers with MLflow's for every reference
form.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from modelfleet.core.reference import ModelRef

DELETED_STAGE = "Deleted_Internal"  # mlflow.entities.model_registry.model_version_stages.STAGE_DELETED_INTERNAL
DEFAULT_WORKSPACE = "default"  # mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME
T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedVersion:
    """What a pin needs of a version: its number, where its model lives, its run and the aliases on it."""

    name: str
    version: int
    source: str
    run_id: str | None
    aliases: tuple[str, ...]
    storage_location: str | None = None  # where the registry keeps the version's files (MLflow 2.13+)
    tags: dict[str, str] = field(default_factory=dict)  # the version's tags when it was resolved

    def local_files(self) -> Path | None:
        """The version's model folder when the registry keeps it on this machine (``file://``, with MLmodel)."""
        location = self.storage_location or ""
        if not location.startswith("file://"):
            return None
        from urllib.parse import unquote, urlparse

        folder = Path(unquote(urlparse(location).path))
        return folder if (folder / "MLmodel").is_file() else None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (None for any other URI, memory or URI-style options)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or "?" in uri or ":memory:" in uri:
        return None
    return Path(uri[len(prefix):])


def _workspace_filter(conn: sqlite3.Connection, table: str) -> tuple[str, tuple[str, ...]]:
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if not columns:
        raise LookupError(f"no table {table}")
    return ("AND workspace = ?", (DEFAULT_WORKSPACE,)) if "workspace" in columns else ("", ())


def resolve_in_sqlite(db: Path, ref: ModelRef) -> ResolvedVersion | None:
    """The version ``ref`` names now in the MLflow registry database ``db``, or None when unsure (see module)."""
    return _read(db, lambda conn: _resolve(conn, ref), timeout_s=5.0)


def _read(db: Path, read: Callable[[sqlite3.Connection], T | None], *, timeout_s: float) -> T | None:
    """``read(connection)`` on ``db`` opened read-only; None when it is not a registry database of the default
    workspace that can be read."""
    if os.environ.get("MLFLOW_WORKSPACE", DEFAULT_WORKSPACE) != DEFAULT_WORKSPACE or not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error:
        return None
    try:
        return read(conn)
    except (sqlite3.Error, LookupError, TypeError, ValueError):
        return None
    finally:
        conn.close()


def _resolve(conn: sqlite3.Connection, ref: ModelRef) -> ResolvedVersion | None:
    ws_model, ws_args = _workspace_filter(conn, "registered_models")
    if conn.execute(f"SELECT 1 FROM registered_models WHERE name = ? {ws_model}", (ref.name, *ws_args)).fetchone() \
            is None:
        return None
    ws_version, ws_vargs = _workspace_filter(conn, "model_versions")
    ws_alias, ws_aargs = _workspace_filter(conn, "registered_model_aliases")
    live = f"name = ? AND current_stage != ? {ws_version}"
    live_args = (ref.name, DELETED_STAGE, *ws_vargs)
    if ref.version is not None:
        version = ref.version
    elif ref.is_latest:
        row = conn.execute(f"SELECT MAX(version) FROM model_versions WHERE {live}", live_args).fetchone()
        if row is None or row[0] is None:
            return None
        version = int(row[0])
    else:
        row = conn.execute(f"SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ? {ws_alias}",
                           (ref.name, ref.alias, *ws_aargs)).fetchone()
        if row is None:
            return None
        version = int(row[0])
    columns = {r[1] for r in conn.execute("PRAGMA table_info(model_versions)")}
    location = "storage_location" if "storage_location" in columns else "NULL"
    row = conn.execute(f"SELECT version, source, run_id, {location} FROM model_versions WHERE {live} AND version = ?",
                       (*live_args, version)).fetchone()
    if row is None:
        return None
    aliases = tuple(sorted(a for (a,) in conn.execute(
        f"SELECT alias FROM registered_model_aliases WHERE name = ? AND version = ? {ws_alias}",
        (ref.name, version, *ws_aargs))))
    ws_tag, ws_targs = _workspace_filter(conn, "model_version_tags")
    tags = {str(k): str(v) for k, v in conn.execute(
        f"SELECT key, value FROM model_version_tags WHERE name = ? AND version = ? {ws_tag}",
        (ref.name, version, *ws_targs))}
    return ResolvedVersion(name=ref.name, version=int(row[0]), source=str(row[1] or ""), run_id=row[2] or None,
                           aliases=aliases, storage_location=row[3] or None, tags=tags)


@dataclass(frozen=True)
class CatalogEntry:
    """A registered model's name, its aliases and its live version numbers (newest first)."""

    name: str
    aliases: dict[str, int]
    versions: tuple[int, ...]


def catalog_in_sqlite(db: Path, *, versions_per_model: int = 20) -> list[CatalogEntry] | None:
    """Every registered model with its aliases and newest versions, read-only from the registry database; None
    when the database cannot be read as one (the caller then knows nothing, it does not guess)."""
    return _read(db, lambda conn: _catalog(conn, versions_per_model), timeout_s=1.0)


def _catalog(conn: sqlite3.Connection, versions_per_model: int) -> list[CatalogEntry]:
    ws_model, ws_args = _workspace_filter(conn, "registered_models")
    ws_version, ws_vargs = _workspace_filter(conn, "model_versions")
    ws_alias, ws_aargs = _workspace_filter(conn, "registered_model_aliases")
    names = [n for (n,) in conn.execute(f"SELECT name FROM registered_models WHERE 1=1 {ws_model} ORDER BY name",
                                        ws_args)]
    aliases: dict[str, dict[str, int]] = {}
    for name, alias, version in conn.execute(
            f"SELECT name, alias, version FROM registered_model_aliases WHERE 1=1 {ws_alias}", ws_aargs):
        aliases.setdefault(name, {})[alias] = int(version)
    versions: dict[str, list[int]] = {}
    for name, version in conn.execute(
            f"SELECT name, version FROM model_versions WHERE current_stage != ? {ws_version} "
            "ORDER BY name, version DESC", (DELETED_STAGE, *ws_vargs)):
        kept = versions.setdefault(name, [])
        if len(kept) < versions_per_model:
            kept.append(int(version))
    return [CatalogEntry(n, aliases.get(n, {}), tuple(versions.get(n, ()))) for n in names]
