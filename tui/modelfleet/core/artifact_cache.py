"""Content-addressed cache of downloaded model artifacts, and the tree digest that names them.

Layout under ``cache_dir``::

    <digest>/             one artifact tree per content digest (written atomically: temp dir + rename)
    index.json            "<registry uri>#<name>/<version>" -> digest, so a pinned version downloads once
    run-artifacts/<run>/  single run artifacts such as the reference sample
    .tmp/                 downloads in progress

The digest of a tree is the sha256 over the sorted lines ``<relative posix path> NUL <sha256 of content> LF``
of every regular file: independent of timestamps, permissions and download order, so it is stable across
downloads and across machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelfleet.core.errors import ArtifactError

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under ``root`` as (relative posix path, path), sorted by relative path."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def tree_digest(root: Path) -> str:
    """The sha256 content digest of the tree at ``root`` (see the module doc)."""
    files = tree_files(root)
    if not files:
        raise ArtifactError(f"artifact at {root} holds no files", hint="check the model version's source")
    h = hashlib.sha256()
    for rel, path in files:
        h.update(rel.encode("utf-8") + b"\0" + file_sha256(path).encode("ascii") + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class CachedTree:
    digest: str
    path: Path
    downloaded: bool  # False when the tree came from the cache


class ArtifactCache:
    """The cache at ``root``; safe for concurrent processes (index updates under an flock)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths and index -----------------------------------------------------------------------------------

    def path_for(self, digest: str) -> Path:
        return self.root / digest

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def _ensure(self) -> None:
        try:
            (self.root / ".tmp").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(
                f"cannot create the artifact cache {self.root}: {exc.strerror}",
                hint="set registry.cache_dir (MODELFLEET_REGISTRY_CACHE_DIR) to a writable folder",
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure()
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def lookup(self, key: str) -> str | None:
        """The digest recorded for ``key``, if any."""
        entry = self._read_index().get(key)
        return entry.get("digest") if isinstance(entry, dict) else None

    def record(self, key: str, digest: str) -> None:
        with self._locked():
            index = self._read_index()
            index[key] = {"digest": digest, "stored_at": datetime.now(UTC).isoformat(timespec="seconds")}
            tmp = self.index_path.with_name(f".index.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.index_path)

    # -- trees ---------------------------------------------------------------------------------------------

    def verify(self, digest: str) -> bool:
        """True when ``<digest>/`` exists and its content still has that digest."""
        path = self.path_for(digest)
        if not path.is_dir():
            return False
        try:
            return tree_digest(path) == digest
        except ArtifactError:
            return False

    def get(self, key: str, fetch: Callable[[Path], Path], expected: str | None = None) -> CachedTree:
        """The tree for ``key``: from the cache when it verifies, else fetched once and stored.

        ``fetch(tmp_dir)`` downloads into ``tmp_dir`` and returns the root of the artifact tree. When
        ``expected`` is given, a tree with another digest is an :class:`ArtifactError`.
        """
        known = expected or self.lookup(key)
        if known and self.verify(known):
            if self.lookup(key) != known:
                self.record(key, known)
            return CachedTree(known, self.path_for(known), downloaded=False)
        digest, path = self.store(fetch)
        if expected and digest != expected:
            raise ArtifactError(
                f"{key}: downloaded artifact has digest {digest[:12]}, but {expected[:12]} was pinned",
                hint="the artifact changed in the registry since it was pinned; pin the version again",
            )
        self.record(key, digest)
        return CachedTree(digest, path, downloaded=True)

    def store(self, fetch: Callable[[Path], Path]) -> tuple[str, Path]:
        """Fetch into a temporary folder, digest it, and move it to ``<digest>/`` atomically."""
        self._ensure()
        tmp = Path(tempfile.mkdtemp(prefix="dl-", dir=self.root / ".tmp"))
        try:
            tree = fetch(tmp)
            digest = tree_digest(tree)
            target = self.path_for(digest)
            if target.is_dir():
                if self.verify(digest):
                    return digest, target
                shutil.rmtree(target, ignore_errors=True)  # corrupt copy: replace it
            try:
                os.rename(tree, target)
            except OSError:
                if not self.verify(digest):  # a concurrent writer may have won the race
                    raise
            return digest, target
        except OSError as exc:
            raise ArtifactError(
                f"cannot store artifact in {self.root}: {exc.strerror or exc}",
                hint="check free space and permissions of registry.cache_dir",
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def store_file(self, rel_path: str, fetch: Callable[[Path], Path]) -> Path:
        """A single run artifact at ``run-artifacts/<rel_path>``, fetched once (temp file + rename)."""
        target = self.root / "run-artifacts" / rel_path
        if target.is_file():
            return target
        self._ensure()
        tmp = Path(tempfile.mkdtemp(prefix="file-", dir=self.root / ".tmp"))
        try:
            got = fetch(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, target)
            return target
        except OSError as exc:
            raise ArtifactError(
                f"cannot store {rel_path} in {self.root}: {exc.strerror or exc}",
                hint="check free space and permissions of registry.cache_dir",
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
