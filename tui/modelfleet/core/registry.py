"""MLflow model registry access: models, versions, aliases, run metrics; pinning and artifact download.

``Registry(settings)`` talks to the tracking/registry URIs from the settings (the embedded SQLite registry by
default, or an ``mlflow server``). MLflow is imported lazily, on the first call that needs it. Pinning turns a
reference (``credit-risk@champion``, ``credit-risk/7``, ``credit-risk@latest``) into a :class:`PinnedVersion`:
a fixed version number plus the sha256 digest of its artifact tree, downloaded once into the content-addressed
cache (see :mod:`modelfleet.core.artifact_cache`). Moving an alias later does not change a pin.

Every failure is a :mod:`modelfleet.core.errors` error naming the object and the fix: an unreachable server
fails within ``registry.timeout_s`` as :class:`RegistryUnavailable`; unknown names, versions and aliases are
:class:`ModelNotFound` / :class:`VersionNotFound` listing what exists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse, urlunparse

from modelfleet.core.artifact_cache import ArtifactCache, CachedTree
from modelfleet.core.errors import (
    ArtifactError,
    ModelfleetError,
    ModelNotFound,
    RegistryError,
    RegistryUnavailable,
    VersionNotFound,
)
from modelfleet.core.reference import FORMS_HINT, ModelRef, parse_ref, validate_model_name
from modelfleet.core.registry_sqlite import ResolvedVersion, resolve_in_sqlite, sqlite_path

if TYPE_CHECKING:
    import pandas as pd

    from modelfleet.core.config import Settings

# Version tag naming the run artifact that holds the reference data sample (inputs the model was trained on).
REFERENCE_SAMPLE_TAG = "modelfleet.reference_sample"
DEFAULT_REFERENCE_SAMPLE = "reference/reference.csv"

_UNREACHABLE_MARKERS = (
    "max retries exceeded", "connection refused", "failed to establish a new connection", "timed out",
    "name or service not known", "connection aborted", "connection reset", "no route to host",
    "temporary failure in name resolution", "remote end closed connection",
)


# -- typed results ---------------------------------------------------------------------------------------------


def _ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000.0, UTC) if ms else None


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    latest_version: int | None
    aliases: dict[str, int]
    tags: dict[str, str]
    created: datetime | None
    updated: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: int
    aliases: tuple[str, ...]
    tags: dict[str, str]
    run_id: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    created: datetime | None
    source: str
    status: str
    description: str

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PinnedVersion:
    """A reference resolved once: version and content digest are fixed from here on."""

    name: str
    version: int
    digest: str  # sha256 hex of the artifact tree
    source: str
    run_id: str | None
    aliases: tuple[str, ...]  # aliases pointing at this version when it was pinned
    ref: str  # the reference as given, e.g. "credit-risk@champion"
    registry_uri: str
    pinned_at: datetime
    path: Path  # the artifact tree in the local cache (the MLflow model directory)
    cached: bool = field(default=False, compare=False)  # True when the tree came from the cache
    tags: dict[str, str] = field(default_factory=dict)  # the version's tags as pinned (thresholds, group column)

    @property
    def digest12(self) -> str:
        return self.digest[:12]

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


# -- helpers -----------------------------------------------------------------------------------------------


def redact_uri(uri: str) -> str:
    """``uri`` without a password, for messages."""
    parsed = urlparse(uri)
    if parsed.password:
        netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
        return urlunparse(parsed._replace(netloc=netloc))
    return uri


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _looks_unreachable(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if isinstance(current, (ConnectionError, TimeoutError, socket.gaierror)) or name in {
            "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError", "NewConnectionError",
        }:
            return True
        if any(marker in str(current).lower() for marker in _UNREACHABLE_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_backend_error(exc: BaseException) -> bool:
    """Errors from MLflow, its HTTP client or its database layer (not bugs in our code)."""
    module = type(exc).__module__.split(".")[0]
    return module in {"mlflow", "requests", "urllib3", "sqlalchemy", "alembic"} or isinstance(exc, OSError)


def read_input_example(model_dir: Path) -> dict[str, Any]:
    """The model's input example as ``{"columns": [...], "data": [[...], ...]}`` (MLflow's split orient)."""
    for name in ("input_example.json", "serving_input_example.json"):
        path = model_dir / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "dataframe_split" in data:
                data = data["dataframe_split"]
            if isinstance(data, dict) and "columns" in data and "data" in data:
                return {"columns": list(data["columns"]), "data": list(data["data"])}
            raise ArtifactError(f"{path}: input example is not in split orient", hint="re-log the model")
    raise ArtifactError(
        f"model at {model_dir} has no input example", hint="log the model with input_example=..."
    )


def input_example_frame(model_dir: Path) -> pd.DataFrame:
    """The model's input example as a DataFrame."""
    import pandas as pd

    example = read_input_example(model_dir)
    return pd.DataFrame(example["data"], columns=example["columns"])


def read_signature(model_dir: Path) -> dict[str, Any] | None:
    """The ``signature`` of the MLmodel file as ``{"inputs": [...], "outputs": [...]}``, or None."""
    import yaml

    path = model_dir / "MLmodel"
    if not path.is_file():
        raise ArtifactError(f"{model_dir} is not an MLflow model (no MLmodel file)", hint="pin the version again")
    meta = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    sig = meta.get("signature")
    if not isinstance(sig, dict):
        return None
    return {k: json.loads(v) if isinstance(v, str) else v for k, v in sig.items() if v is not None}


# -- the registry --------------------------------------------------------------------------------------------


class Registry:
    """The MLflow registry named by ``settings.registry``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tracking_uri = settings.registry.tracking_uri
        self.registry_uri = settings.effective_registry_uri
        self.page_size = settings.registry.page_size
        self.timeout_s = settings.registry.timeout_s
        self.cache = ArtifactCache(settings.registry.cache_dir)
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings)

    @property
    def is_local(self) -> bool:
        """True for the embedded (SQLite / file) registry."""
        return urlparse(self.tracking_uri).scheme in {"sqlite", "file", ""}

    # -- connection ----------------------------------------------------------------------------------------

    def _unavailable(self, uri: str, reason: str) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"MLflow registry at {redact_uri(uri)} is unreachable: {reason}",
            hint="start the tracking server (mlflow server ...) or point registry.tracking_uri "
            "(MODELFLEET_REGISTRY_TRACKING_URI) at a running one",
        )

    def _precheck(self, uri: str) -> None:
        parsed = urlparse(uri)
        if parsed.scheme in {"http", "https"}:
            host = parsed.hostname or "localhost"
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                with socket.create_connection((host, port), timeout=self.timeout_s):
                    pass
            except OSError as exc:
                reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
                raise self._unavailable(uri, f"{reason} (after at most {self.timeout_s:g}s)") from None
        elif parsed.scheme == "sqlite" and uri.startswith("sqlite:///") and ":memory:" not in uri:
            db = Path(uri[len("sqlite:///"):])
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryUnavailable(
                    f"cannot create the registry folder {db.parent}: {exc.strerror}",
                    hint="set registry.tracking_uri (MODELFLEET_REGISTRY_TRACKING_URI) to a writable location",
                ) from None

    def _prepare_environment(self) -> None:
        # MLflow reads these per request; a down server must fail in seconds, not after minutes of retries.
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(self.timeout_s)))
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        for name in ("mlflow", "alembic", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)

    @property
    def client(self) -> Any:
        """The ``mlflow.MlflowClient`` (created on first use, after a reachability check)."""
        with self._lock:
            if self._client is None:
                self._prepare_environment()
                self._precheck(self.tracking_uri)
                if self.registry_uri != self.tracking_uri:
                    self._precheck(self.registry_uri)
                from mlflow.tracking import MlflowClient

                for name in ("mlflow", "alembic"):
                    logging.getLogger(name).setLevel(logging.WARNING)
                self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            return self._client

    @contextlib.contextmanager
    def _guard(
        self,
        what: str,
        missing: Callable[[], ModelfleetError] | None = None,
        error: type[RegistryError] = RegistryError,
    ) -> Iterator[None]:
        """Translate MLflow / HTTP / database failures inside the block into modelfleet errors."""
        try:
            yield
        except ModelfleetError:
            raise
        except Exception as exc:
            if not _is_backend_error(exc):
                raise
            if _looks_unreachable(exc):
                raise self._unavailable(self.registry_uri, _first_line(exc)) from None
            code = getattr(exc, "error_code", None)
            if code == "RESOURCE_DOES_NOT_EXIST" and missing is not None:
                raise missing() from None
            raise error(
                f"MLflow registry at {redact_uri(self.registry_uri)} failed {what}: {_first_line(exc)}",
                hint="check the registry URI, its permissions and the server log",
            ) from None

    def _pages(self, call: Callable[[int, str | None], Any], limit: int | None = None) -> Iterator[Any]:
        """Items of a paginated MLflow search, following page tokens; at most ``limit`` items."""
        token: str | None = None
        count = 0
        while True:
            size = self.page_size if limit is None else max(1, min(self.page_size, limit - count))
            page = call(size, token)
            for item in page:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield item
            token = getattr(page, "token", None)
            if not token or (limit is not None and count >= limit):
                return

    def check(self) -> None:
        """Raise RegistryUnavailable / RegistryError unless the registry answers a search."""
        with self._guard("a health check"):
            self.client.search_registered_models(max_results=1)

    # -- models --------------------------------------------------------------------------------------------

    @staticmethod
    def _summary(rm: Any) -> ModelSummary:
        latest = [int(v.version) for v in (rm.latest_versions or [])]
        return ModelSummary(
            name=rm.name,
            description=rm.description or "",
            latest_version=max(latest) if latest else None,
            aliases={str(k): int(v) for k, v in (rm.aliases or {}).items()},
            tags=dict(rm.tags or {}),
            created=_ts(rm.creation_timestamp),
            updated=_ts(rm.last_updated_timestamp),
        )

    def list_models(self) -> list[ModelSummary]:
        """Every registered model, by name (all pages)."""
        with self._guard("listing registered models"):
            items = self._pages(
                lambda size, token: self.client.search_registered_models(
                    max_results=size, order_by=["name ASC"], page_token=token
                )
            )
            return [self._summary(rm) for rm in items]

    def _model_names(self, limit: int = 8) -> str:
        """A short list of existing model names for error messages (one small page, never all pages)."""
        try:
            with self._guard("listing registered models"):
                page = self.client.search_registered_models(max_results=limit + 1, order_by=["name ASC"])
        except ModelfleetError:
            return ""
        names = [rm.name for rm in page]
        if not names:
            return "the registry has no models"
        more = " ..." if len(names) > limit or getattr(page, "token", None) else ""
        return "known models: " + ", ".join(names[:limit]) + more

    def get_model(self, name: str) -> ModelSummary:
        validate_model_name(name)

        def missing() -> ModelfleetError:
            known = self._model_names()
            return ModelNotFound(
                f"no registered model named {name!r} in {redact_uri(self.registry_uri)}"
                + (f"; {known}" if known else ""),
                hint="check the name (modelfleet registry list) or seed the demo (modelfleet demo seed)",
            )

        with self._guard(f"reading model {name!r}", missing):
            return self._summary(self.client.get_registered_model(name))

    # -- versions ------------------------------------------------------------------------------------------

    def _run_data(self, run_id: str | None, cache: dict[str, tuple[dict[str, float], dict[str, str]]]) -> Any:
        if not run_id:
            return {}, {}
        if run_id not in cache:
            try:
                with self._guard(f"reading run {run_id}", missing=lambda: RegistryError("run gone")):
                    run = self.client.get_run(run_id)
                cache[run_id] = (dict(run.data.metrics), dict(run.data.params))
            except RegistryUnavailable:
                raise
            except RegistryError:
                cache[run_id] = ({}, {})  # a deleted run: the version stays listable
        return cache[run_id]

    def _info(
        self, mv: Any, aliases: dict[str, int], run_cache: dict[str, Any], with_runs: bool = True
    ) -> ModelVersionInfo:
        version = int(mv.version)
        metrics, params = self._run_data(mv.run_id, run_cache) if with_runs else ({}, {})
        return ModelVersionInfo(
            name=mv.name,
            version=version,
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            tags=dict(mv.tags or {}),
            run_id=mv.run_id or None,
            metrics=metrics,
            params=params,
            created=_ts(mv.creation_timestamp),
            source=mv.source or "",
            status=str(mv.status or ""),
            description=mv.description or "",
        )

    def list_versions(
        self, name: str, limit: int | None = None, *, with_runs: bool = True
    ) -> list[ModelVersionInfo]:
        """Versions of ``name``, newest first (all pages, or the first ``limit``), with aliases and run data."""
        model = self.get_model(name)
        run_cache: dict[str, Any] = {}
        with self._guard(f"listing versions of {name!r}"):
            items = self._pages(
                lambda size, token: self.client.search_model_versions(
                    filter_string=f"name = '{name}'",
                    max_results=size,
                    order_by=["version_number DESC"],
                    page_token=token,
                ),
                limit=limit,
            )
            return [self._info(mv, model.aliases, run_cache, with_runs) for mv in items]

    def get_version(self, name: str, version: int, *, model: ModelSummary | None = None) -> ModelVersionInfo:
        model = model or self.get_model(name)

        def missing() -> ModelfleetError:
            latest = model.latest_version
            return VersionNotFound(
                f"model {name!r} has no version {version}"
                + (f"; its versions go up to {latest}" if latest else "; it has no versions"),
                hint=f"list them with: modelfleet registry versions {name}",
            )

        with self._guard(f"reading {name}/{version}", missing):
            mv = self.client.get_model_version(name, str(version))
        return self._info(mv, model.aliases, {})

    def resolve(self, ref: ModelRef | str) -> ModelVersionInfo:
        """The version a reference points at now (aliases and ``latest`` are looked up once)."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        model = self.get_model(ref.name)
        if ref.version is not None:
            return self.get_version(ref.name, ref.version, model=model)
        if ref.is_latest:
            newest = self.list_versions(ref.name, limit=1, with_runs=False)
            if not newest:
                raise VersionNotFound(
                    f"model {ref.name!r} has no versions, so {ref} resolves to nothing",
                    hint="register a version first (modelfleet demo seed for the demo model)",
                )
            return self.get_version(ref.name, newest[0].version, model=model)
        assert ref.alias is not None
        if ref.alias not in model.aliases:
            known = ", ".join(f"{a} -> {v}" for a, v in sorted(model.aliases.items())) or "none"
            raise VersionNotFound(
                f"model {ref.name!r} has no alias {ref.alias!r}; its aliases: {known}",
                hint=f"use one of those, a version ({ref.name}/{model.latest_version or 1}) or {ref.name}@latest",
            )
        return self.get_version(ref.name, model.aliases[ref.alias], model=model)

    # -- pinning and download ------------------------------------------------------------------------------

    def _cache_key(self, name: str, version: int) -> str:
        return f"{self.registry_uri}#{name}/{version}"

    def _download_version(self, name: str, version: int, files: Path | None = None) -> Callable[[Path], Path]:
        def fetch(tmp: Path) -> Path:
            if files is not None:  # the embedded registry's own folder: a copy is what MLflow would download
                import shutil

                return Path(shutil.copytree(files, tmp / files.name, symlinks=False))
            import mlflow.artifacts

            with self._guard(f"downloading {name}/{version}", error=ArtifactError):
                uri = self.client.get_model_version_download_uri(name, str(version))
                local = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=uri, dst_path=str(tmp), tracking_uri=self.tracking_uri
                    )
                )
            return local if local.is_dir() else tmp

        return fetch

    def _tree(self, name: str, version: int, expected: str | None = None, files: Path | None = None) -> CachedTree:
        return self.cache.get(self._cache_key(name, version), self._download_version(name, version, files), expected)

    def _resolve_embedded(self, ref: ModelRef) -> ResolvedVersion | None:
        """The embedded registry's answer read from its database without importing MLflow (None: ask MLflow)."""
        db = sqlite_path(self.registry_uri)
        if db is None or self._client is not None:
            return None
        return resolve_in_sqlite(db, ref)

    def pin(self, ref: ModelRef | str) -> PinnedVersion:
        """Resolve ``ref`` once, download its artifact (or reuse the cache) and fix the version and digest."""
        text = str(ref)
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        info: ModelVersionInfo | ResolvedVersion | None = self._resolve_embedded(parsed)
        if info is None:
            info = self.resolve(parsed)
        files = info.local_files() if isinstance(info, ResolvedVersion) else None
        tree = self._tree(info.name, info.version, files=files)
        return PinnedVersion(
            name=info.name,
            version=info.version,
            digest=tree.digest,
            source=info.source,
            run_id=info.run_id,
            aliases=info.aliases,
            ref=text,
            registry_uri=self.registry_uri,
            pinned_at=datetime.now(UTC),
            path=tree.path,
            cached=not tree.downloaded,
            tags=dict(info.tags),
        )

    def fetch(self, pinned: PinnedVersion) -> Path:
        """The local tree of a pinned version with exactly its digest (re-downloaded if the cache lost it)."""
        return self._tree(pinned.name, pinned.version, expected=pinned.digest).path

    # -- run artifacts -------------------------------------------------------------------------------------

    def reference_sample_path(self, name: str, version: int) -> Path:
        """Local path of the version's reference data sample (a run artifact, CSV or Parquet)."""
        info = self.get_version(name, version)
        rel = info.tags.get(REFERENCE_SAMPLE_TAG, DEFAULT_REFERENCE_SAMPLE)
        return self.run_artifact_path(info, rel, tag=REFERENCE_SAMPLE_TAG, what="reference sample")

    def run_artifact_path(self, info: ModelVersionInfo, rel: str, *, tag: str, what: str) -> Path:
        """Local path of the file ``rel`` logged in the version's run (cached by run and path).

        ``tag`` is the version tag that names the file; messages name it as the way to point elsewhere."""
        name, version = info.name, info.version
        rel = rel.strip("/")
        if not info.run_id:
            raise ArtifactError(
                f"{name}/{version} has no run, so no {what}",
                hint=f"register versions from a run that logs a {what}",
            )
        run_id = info.run_id

        def fetch(tmp: Path) -> Path:
            import mlflow.artifacts

            def missing() -> ModelfleetError:
                return ArtifactError(
                    f"{name}/{version}: run {run_id} has no artifact {rel}",
                    hint=f"log the {what} as {rel} or set the version tag {tag}",
                )

            with self._guard(f"downloading {rel} of run {run_id}", missing, error=ArtifactError):
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=rel, dst_path=str(tmp), tracking_uri=self.tracking_uri
                )
            path = Path(local)
            if not path.is_file():
                raise missing()
            return path

        return self.cache.store_file(f"{run_id}/{rel}", fetch)

    def load_reference_sample(self, name: str, version: int) -> pd.DataFrame:
        """The reference sample as a DataFrame (includes the group column of the demo)."""
        import pandas as pd

        path = self.reference_sample_path(name, version)
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    # -- writes used by deploys and the demo ---------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> None:
        model = self.get_model(name)
        self.get_version(name, version, model=model)
        with self._guard(f"setting alias {alias!r} of {name!r}"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self.get_version(name, version)
        with self._guard(f"tagging {name}/{version}"):
            self.client.set_model_version_tag(name, str(version), key, value)

    def ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name``; created if missing, storing artifacts under registry.artifact_root
        for the embedded registry (a server chooses its own artifact store)."""
        with self._guard(f"creating experiment {name!r}"):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            location = None
            if self.is_local:
                root = self.settings.registry.artifact_root / name
                root.mkdir(parents=True, exist_ok=True)
                location = root.resolve().as_uri()
            return str(self.client.create_experiment(name, artifact_location=location))


__all__ = [
    "DEFAULT_REFERENCE_SAMPLE",
    "FORMS_HINT",
    "REFERENCE_SAMPLE_TAG",
    "ModelSummary",
    "ModelVersionInfo",
    "PinnedVersion",
    "Registry",
    "input_example_frame",
    "read_input_example",
    "read_signature",
    "redact_uri",
]
