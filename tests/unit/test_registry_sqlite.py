"""The embedded registry's references resolved from its database without MLflow: the same answers as MLflow's
client for every reference form, ``None`` (ask MLflow) whenever unsure, and a pin of a cached version that never
imports MLflow."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet.core.errors import ModelNotFound, VersionNotFound
from modelfleet.core.reference import parse_ref
from modelfleet.core.registry import Registry
from modelfleet.core.registry_sqlite import resolve_in_sqlite, sqlite_path
from tests.unit.registry_support import make_settings, seeded_project

REPO = Path(__file__).resolve().parents[2]
SIDE_MODEL = "sqlite-fastpath"


@pytest.fixture(scope="module")
def project() -> Path:
    return seeded_project()[0]


@pytest.fixture(scope="module")
def registry(project: Path) -> Registry:
    """The seeded registry, plus a model whose newest version was deleted and whose alias points at version 1."""
    registry = Registry(make_settings(project))
    client = registry.client
    if SIDE_MODEL not in {m.name for m in registry.list_models()}:
        source = client.get_model_version_download_uri("credit-risk", "1")
        client.create_registered_model(SIDE_MODEL)
        for _ in range(3):
            client.create_model_version(SIDE_MODEL, source=source)
        client.delete_model_version(SIDE_MODEL, "3")
        client.set_registered_model_alias(SIDE_MODEL, "stable", "1")
    return registry


def _db(registry: Registry) -> Path:
    db = sqlite_path(registry.registry_uri)
    assert db is not None and db.is_file()
    return db


@pytest.mark.parametrize("ref", ["credit-risk/1", "credit-risk/2", "credit-risk/3", "credit-risk@champion",
                                 "credit-risk@challenger", "credit-risk@latest", f"{SIDE_MODEL}@latest",
                                 f"{SIDE_MODEL}@stable", f"{SIDE_MODEL}/2"])
def test_same_answer_as_mlflow(registry: Registry, ref: str) -> None:
    fast = resolve_in_sqlite(_db(registry), parse_ref(ref))
    slow = registry.resolve(ref)
    assert fast is not None
    assert (fast.name, fast.version, fast.source, fast.run_id, fast.aliases) == (
        slow.name, slow.version, slow.source, slow.run_id, slow.aliases)


def test_deleted_newest_version_is_skipped_by_latest(registry: Registry) -> None:
    fast = resolve_in_sqlite(_db(registry), parse_ref(f"{SIDE_MODEL}@latest"))
    assert fast is not None and fast.version == 2


@pytest.mark.parametrize(("ref", "error"), [("no-such-model/1", ModelNotFound), ("credit-risk/99", VersionNotFound),
                                            ("credit-risk@nope", VersionNotFound),
                                            (f"{SIDE_MODEL}/3", VersionNotFound)])
def test_unknown_answers_none_and_the_pin_names_what_exists(project: Path, registry: Registry, ref: str,
                                                            error: type[Exception]) -> None:
    assert resolve_in_sqlite(_db(registry), parse_ref(ref)) is None
    with pytest.raises(error):
        Registry(make_settings(project)).pin(ref)


def test_another_workspace_is_left_to_mlflow(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    assert resolve_in_sqlite(_db(registry), parse_ref("credit-risk/1")) is None
    monkeypatch.setenv("MLFLOW_WORKSPACE", "default")
    assert resolve_in_sqlite(_db(registry), parse_ref("credit-risk/1")) is not None


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    assert resolve_in_sqlite(db, parse_ref("credit-risk/1")) is None
    assert not db.exists()


def test_a_database_that_is_not_a_registry_answers_none(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE registered_models (name TEXT)")
        conn.execute("INSERT INTO registered_models VALUES ('credit-risk')")
    assert resolve_in_sqlite(db, parse_ref("credit-risk@champion")) is None
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    assert resolve_in_sqlite(tmp_path / "garbage.db", parse_ref("credit-risk/1")) is None


def test_other_uris_are_not_read() -> None:
    assert sqlite_path("postgresql://u@db/mlflow") is None
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("sqlite:////tmp/x.db") == Path("/tmp/x.db")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_copied_files_have_the_digest_of_mlflows_download(project: Path, tmp_path: Path, version: int) -> None:
    fast = Registry(make_settings(project, MODELFLEET_REGISTRY_CACHE_DIR=str(tmp_path / "fast")))
    slow = Registry(make_settings(project, MODELFLEET_REGISTRY_CACHE_DIR=str(tmp_path / "slow")))
    assert slow.client is not None  # a registry whose client is up asks MLflow (resolve and download)
    a, b = fast.pin(f"credit-risk/{version}"), slow.pin(f"credit-risk/{version}")
    assert not a.cached and not b.cached
    assert fast._client is None  # resolved and copied without MLflow (a silent fallback would hide a regression)
    assert a.digest == b.digest and (a.source, a.run_id, a.aliases) == (b.source, b.run_id, b.aliases)
    assert sorted(p.name for p in a.path.iterdir()) == sorted(p.name for p in b.path.iterdir())


def test_pin_never_imports_mlflow(project: Path, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from tests.unit.registry_support import make_settings; "
            "from modelfleet.core.registry import Registry; "
            f"r = Registry(make_settings(Path({str(project)!r}), MODELFLEET_REGISTRY_CACHE_DIR={str(tmp_path)!r})); "
            "a = r.pin('credit-risk@champion'); b = r.pin('credit-risk@champion'); "
            "print(a.version, a.cached, b.cached, a.digest == b.digest, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": f"{REPO}:{REPO / 'tui'}", "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["2", "False", "True", "True", "False"]
