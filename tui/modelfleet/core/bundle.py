"""Signed release bundles: build on the controller, verify and unpack on the nodes.

Layout of an unpacked release (the edge agent reads exactly this)::

    manifest.json   {"format": "modelfleet-release/1", "model", "version", "digest", "created",
                     "files": {"model/MLmodel": "<sha256>", ...every file but manifest.json/manifest.sig},
                     "signature": <MLflow model signature dict or null>,
                     "probe": {"request": {...}, "expected": {"predictions": [...]}, "source": "input_example"} or null,
                     "profile": "profile.json" or null,
                     "requires": {"arch": [...], "accelerator": null | "nvidia"}, "key_id": "<key id>",
                     "thresholds": {"column", "thresholds": {group: p}, "default", ...}  (only when attached)}
    manifest.sig    base64 raw ed25519 signature over the exact bytes of manifest.json
    model/          the MLflow model directory
    profile.json    optional reference profile

The bundle file ``<model>-<version>-<digest12>.tar.gz`` is deterministic (sorted regular-file entries, mtime 0,
uid/gid 0, mode 0644, gzip mtime 0 and no file name), so the same inputs (``created`` included) give the same
bytes; it is cached under ``<state_dir>/bundles/``. Verification checks, in this order, the signature, every
listed file's sha256, then that no unlisted file exists; tarballs with absolute paths, ``..``, links or special
files are refused. Every refusal is a :class:`BundleError` naming the file and the problem.

Importing this module needs only the standard library and ``cryptography`` (nodes run it); PyYAML and MLflow
are imported inside the controller-side functions that need them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelfleet.core.errors import BundleError
from modelfleet.core.signing import key_id, load_or_create_signing_key, load_public_key, sign, verify_signature

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.fairness import GroupThresholds

FORMAT = "modelfleet-release/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MODEL_DIR = "model"
PROFILE = "profile.json"
DEFAULT_ARCH = ("x86_64", "aarch64")
ACCELERATORS = (None, "nvidia")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

PublicKeyLike = Path | str | bytes | Ed25519PublicKey


@dataclass(frozen=True)
class Manifest:
    model: str
    version: str
    digest: str
    created: str
    files: dict[str, str]
    key_id: str
    signature: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    profile: str | None = None
    requires: dict[str, Any] = field(default_factory=lambda: {"arch": list(DEFAULT_ARCH), "accelerator": None})
    format: str = FORMAT
    thresholds: dict[str, Any] | None = None  # per-group thresholds the agent applies (core/fairness.py)

    @property
    def release_name(self) -> str:
        """The node's release folder name: ``<version>-<digest12>[-t<thresholds8>]`` (core/release_names.py)."""
        from modelfleet.core.release_names import release_name

        return release_name(self.version, self.digest, self.thresholds_sha256)

    @property
    def thresholds_sha256(self) -> str | None:
        """What approvals bind of this release's thresholds (None when it has none)."""
        from modelfleet.core.approvals import thresholds_digest

        return thresholds_digest(self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": self.format, "model": self.model, "version": self.version, "digest": self.digest,
            "created": self.created, "files": dict(sorted(self.files.items())), "signature": self.signature,
            "probe": self.probe, "profile": self.profile, "requires": self.requires, "key_id": self.key_id,
        }
        if self.thresholds is not None:  # absent otherwise: manifests without thresholds keep their bytes
            out["thresholds"] = self.thresholds
        return out

    def to_bytes(self) -> bytes:
        """The exact bytes written as manifest.json (and signed)."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleError(f"{MANIFEST}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise BundleError(f"{MANIFEST}: not a JSON object")
        if raw.get("format") != FORMAT:
            raise BundleError(f"{MANIFEST}: unsupported format {raw.get('format')!r} (expected {FORMAT})",
                              hint="upgrade modelfleet on this node")
        files = raw.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _HEX64.match(v) for k, v in files.items()
        ):
            raise BundleError(f"{MANIFEST}: 'files' must map file names to sha256 hex digests")
        for name in files:
            safe_name(name)
            if name in (MANIFEST, SIGNATURE):
                raise BundleError(f"{MANIFEST}: lists {name}, which cannot be part of 'files'")
        for key in ("model", "version", "digest", "created", "key_id"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise BundleError(f"{MANIFEST}: '{key}' is missing or not a string")
        profile = raw.get("profile")
        if profile is not None and profile not in files:
            raise BundleError(f"{MANIFEST}: profile {profile!r} is not among the listed files")
        probe = raw.get("probe")
        if probe is not None and not (isinstance(probe, dict) and isinstance(probe.get("request"), dict)
                                      and isinstance(probe.get("expected"), dict)):
            raise BundleError(f"{MANIFEST}: 'probe' must have a 'request' and an 'expected' object")
        thresholds = raw.get("thresholds")
        if thresholds is not None and not (isinstance(thresholds, dict) and isinstance(thresholds.get("column"), str)
                                           and isinstance(thresholds.get("thresholds"), dict)):
            raise BundleError(f"{MANIFEST}: 'thresholds' must have a 'column' and a 'thresholds' object")
        return cls(model=raw["model"], version=raw["version"], digest=raw["digest"], created=raw["created"],
                   files=dict(files), key_id=raw["key_id"], signature=raw.get("signature"), probe=probe,
                   profile=profile, requires=raw.get("requires") or {}, format=FORMAT, thresholds=thresholds)


@dataclass(frozen=True)
class Bundle:
    """A built bundle: its path, manifest, the sha256 of the .tar.gz itself, and whether it came from cache."""

    path: Path
    manifest: Manifest
    sha256: str
    cached: bool


# -- names and hashing ------------------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A release-relative POSIX path, refused when absolute, escaping (``..``), empty or odd."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"{name!r}: absolute or malformed path refused")
    parts = PurePosixPath(name).parts
    if any(p in ("..", "") for p in parts) or name.split("/")[0] == "..":
        raise BundleError(f"{name}: path traversal refused")
    clean = "/".join(p for p in parts if p != ".")
    if not clean:
        raise BundleError(f"{name!r}: empty path refused")
    return clean


def bundle_name(model: str, version: str, digest: str) -> str:
    return f"{model}-{version}-{digest[:12]}.tar.gz"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_stream(stream: IO[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        h.update(chunk)
    return h.hexdigest()


# -- building (controller) ---------------------------------------------------------------------------------------


def read_model_signature(model_dir: Path) -> dict[str, Any] | None:
    """The ``signature`` block of an MLflow model's MLmodel file (as MLflow stores it), or None."""
    import yaml

    try:
        meta = yaml.safe_load((Path(model_dir) / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BundleError(f"{model_dir}/MLmodel: cannot read: {exc}") from None
    sig = meta.get("signature") if isinstance(meta, dict) else None
    return dict(sig) if isinstance(sig, dict) else None


def _model_files(artifact_dir: Path) -> list[tuple[str, Path]]:
    if not (artifact_dir / "MLmodel").is_file():
        raise BundleError(f"{artifact_dir}: no MLmodel file; not an MLflow model directory",
                          hint="pass the folder the model version was downloaded into")
    out: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(artifact_dir):
        dirs.sort()
        for name in sorted([*files, *(d for d in dirs if os.path.islink(os.path.join(root, d)))]):
            path = Path(root) / name
            rel = path.relative_to(artifact_dir).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"{path}: symlink in the model artifact refused",
                                  hint="re-download the artifact; bundles carry regular files only")
            if not stat.S_ISREG(mode):
                raise BundleError(f"{path}: not a regular file")
            out.append((f"{MODEL_DIR}/{rel}", path))
    return out


def _check_inputs(model: str, version: str, digest: str) -> None:
    if not _NAME_RE.match(model):
        raise BundleError(f"model name {model!r} cannot name a bundle", hint="use letters, digits, . _ -")
    if not _NAME_RE.match(version):
        raise BundleError(f"version {version!r} cannot name a bundle", hint="use letters, digits, . _ -")
    if not _HEX64.match(digest):
        raise BundleError(f"digest {digest!r} is not a sha256 hex digest", hint="pin the version first")


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_deterministic_tar(dest: Path, entries: Mapping[str, bytes | Path]) -> None:
    """Write ``entries`` (name -> bytes or file path) as a reproducible .tar.gz, atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") as raw,
              gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
              tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar):
            for name in sorted(entries):
                content = entries[name]
                if isinstance(content, bytes):
                    tar.addfile(_tarinfo(name, len(content)), io.BytesIO(content))
                else:
                    with open(content, "rb") as fh:
                        tar.addfile(_tarinfo(name, os.fstat(fh.fileno()).st_size), fh)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _created(created: datetime | str | None) -> str:
    if isinstance(created, str):
        return created
    if created is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        created = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_bundle(
    *,
    model: str,
    version: str | int,
    digest: str,
    artifact_dir: Path,
    state_dir: Path,
    private_key: Ed25519PrivateKey | None = None,
    profile: Mapping[str, Any] | None = None,
    probe_request: Mapping[str, Any] | None = None,
    probe_expected: Mapping[str, Any] | None = None,
    probe_source: str | None = None,
    requires_arch: list[str] | None = None,
    accelerator: str | None = None,
    created: datetime | str | None = None,
    force: bool = False,
    thresholds: GroupThresholds | None = None,
) -> Bundle:
    """Build (or reuse from ``<state_dir>/bundles/``) the signed bundle of one pinned model version.

    ``private_key`` defaults to the controller key under ``<state_dir>/keys/`` (created on first use). A probe
    request without ``probe_expected`` gets its expected answer from the model itself (MLflow, lazily), with
    ``thresholds`` applied when given (then ``probe_expected`` must have been computed with them too).
    A cached bundle is reused when it verifies with the same key and names the same model/version/digest and
    thresholds.
    """
    version = str(version)
    _check_inputs(model, version, digest)
    artifact_dir = Path(artifact_dir)
    if accelerator not in ACCELERATORS:
        raise BundleError(f"accelerator {accelerator!r} is not supported", hint="use none or 'nvidia'")
    key = private_key or load_or_create_signing_key(Path(state_dir))
    public = key.public_key()
    dest = Path(state_dir) / "bundles" / bundle_name(model, version, digest)
    if not force:
        cached = cached_bundle(state_dir, model, version, digest, public,
                               thresholds_sha256=thresholds.sha256 if thresholds else None)
        if cached is not None:
            return cached
    files = _model_files(artifact_dir)
    entries: dict[str, bytes | Path] = dict(files)
    if profile is not None:
        entries[PROFILE] = (json.dumps(profile, indent=2, sort_keys=True, default=str) + "\n").encode()
    probe: dict[str, Any] | None = None
    if probe_request is not None:
        expected = probe_expected if probe_expected is not None else expected_response(artifact_dir, probe_request,
                                                                                       thresholds)
        probe = {"request": json.loads(json.dumps(probe_request)), "expected": json.loads(json.dumps(expected))}
        if probe_source:
            probe["source"] = probe_source  # where the request came from: input_example, reference_sample
    manifest = Manifest(
        model=model, version=version, digest=digest, created=_created(created),
        files={name: (hashlib.sha256(v).hexdigest() if isinstance(v, bytes) else sha256_file(v))
               for name, v in entries.items()},
        key_id=key_id(public), signature=read_model_signature(artifact_dir), probe=probe,
        profile=PROFILE if profile is not None else None,
        requires={"arch": list(requires_arch or DEFAULT_ARCH), "accelerator": accelerator},
        thresholds=thresholds.to_dict() if thresholds else None,
    )
    body = manifest.to_bytes()
    entries[MANIFEST] = body
    entries[SIGNATURE] = sign(key, body).encode("ascii")
    write_deterministic_tar(dest, entries)
    return Bundle(dest, manifest, sha256_file(dest), cached=False)


def cached_bundle(state_dir: Path, model: str, version: str | int, digest: str,
                  public_key: PublicKeyLike, *, thresholds_sha256: str | None = None) -> Bundle | None:
    """The bundle of this pinned version in ``<state_dir>/bundles/`` when it verifies with ``public_key`` and
    names the same model, version, digest and thresholds (``thresholds_sha256``, None for none); ``None``
    otherwise (see :func:`find_cached_bundle` for why)."""
    return find_cached_bundle(state_dir, model, version, digest, public_key, thresholds_sha256=thresholds_sha256)[0]


def find_cached_bundle(state_dir: Path, model: str, version: str | int, digest: str, public_key: PublicKeyLike,
                       *, thresholds_sha256: str | None = None) -> tuple[Bundle | None, str | None]:
    """``(bundle, None)`` for a cached bundle that verifies; ``(None, why)`` when the cached file is damaged,
    signed by another key or names another release (it must be rebuilt, and the operator told); ``(None, None)``
    when there is none, or when it was built with other thresholds (an older build of the same version)."""
    dest = Path(state_dir) / "bundles" / bundle_name(model, str(version), digest)
    if not dest.exists():
        return None, None
    try:
        manifest = verify_bundle(dest, load_public_key(public_key))
    except BundleError as exc:
        return None, f"the cached bundle {dest.name} does not verify ({exc.message})"
    if (manifest.model, manifest.version, manifest.digest) != (model, str(version), digest):
        return None, (f"the cached bundle {dest.name} holds {manifest.model}/{manifest.version} "
                      f"{manifest.digest[:12]}, not {model}/{version} {digest[:12]}")
    if manifest.thresholds_sha256 != thresholds_sha256:
        return None, None
    return Bundle(dest, manifest, sha256_file(dest), cached=True), None


# -- probe (controller) ------------------------------------------------------------------------------------------


def _first_rows(request: dict[str, Any], rows: int) -> dict[str, Any]:
    out = dict(request)
    if isinstance(out.get("dataframe_split"), dict) and isinstance(out["dataframe_split"].get("data"), list):
        out["dataframe_split"] = {**out["dataframe_split"], "data": out["dataframe_split"]["data"][:rows]}
    for key in ("dataframe_records", "instances", "inputs"):
        if isinstance(out.get(key), list):
            out[key] = out[key][:rows]
    return out


def _request_from_example(model_dir: Path) -> dict[str, Any] | None:
    import yaml

    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    info = meta.get("saved_input_example_info") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        return None
    serving = info.get("serving_input_path")
    if serving and (model_dir / serving).is_file():
        data = json.loads((model_dir / serving).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    artifact = info.get("artifact_path")
    if not artifact or not (model_dir / artifact).is_file():
        return None
    example = json.loads((model_dir / artifact).read_text(encoding="utf-8"))
    if info.get("type") == "dataframe":
        orient = info.get("pandas_orient", "split")
        if orient == "split" and isinstance(example, dict):
            example.pop("index", None)
        return {f"dataframe_{orient}": example}
    return {"inputs": example}


def _request_from_sample(sample: Any, rows: int) -> dict[str, Any]:
    if hasattr(sample, "to_json") and hasattr(sample, "head"):  # a pandas DataFrame
        split = json.loads(sample.head(rows).to_json(orient="split", index=False))
        return {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    if isinstance(sample, list):
        return {"dataframe_records": sample[:rows]}
    if isinstance(sample, dict) and "columns" in sample and "data" in sample:
        return {"dataframe_split": {"columns": sample["columns"], "data": list(sample["data"])[:rows]}}
    raise BundleError(f"reference sample of type {type(sample).__name__} cannot make a probe request",
                      hint="pass a DataFrame, a list of records or {'columns': [...], 'data': [...]}")


def expected_response(model_dir: Path, request: Mapping[str, Any],
                      thresholds: GroupThresholds | None = None) -> dict[str, Any]:
    """Score ``request`` (MLflow scoring JSON) with the model itself, as the serving agent would: with
    ``thresholds``, the agent's per-group thresholds on the positive-class probability."""
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, predictions_to_json

    try:
        loaded = mlflow.pyfunc.load_model(str(model_dir))
        data = infer_and_parse_data(dict(request), loaded.metadata.get_input_schema())
        if isinstance(data, tuple):  # some MLflow versions return (data, params)
            data = data[0]
        out = io.StringIO()
        if thresholds is not None:
            import mlflow.sklearn

            from modelfleet.core.fairness import ThresholdedClassifier

            predictor: Any = ThresholdedClassifier(mlflow.sklearn.load_model(str(model_dir)), thresholds)
        else:
            predictor = loaded
        predictions_to_json(predictor.predict(data), out)
    except Exception as exc:  # MLflow raises many types; the probe is best effort, named clearly
        raise BundleError(f"{model_dir}: cannot compute the probe's expected answer: {exc}",
                          hint="check that the input example matches the model signature") from None
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def make_probe(model_dir: Path, sample: Any = None, rows: int = 3,
               thresholds: GroupThresholds | None = None) -> dict[str, Any] | None:
    """A probe case ``{"request", "expected"}`` from the model's input example (else ``sample``'s first rows).

    The expected answer applies ``thresholds`` as the agent will (the release's per-group thresholds).
    Returns None when the version has neither; the caller should warn that deploys get no functional gate.
    """
    model_dir = Path(model_dir)
    request = _request_from_example(model_dir)
    if request is None and sample is not None:
        request = _request_from_sample(sample, rows)
    if request is None:
        return None
    request = _first_rows(request, rows)
    return {"request": request, "expected": expected_response(model_dir, request, thresholds)}


# -- verification (nodes and controller) -------------------------------------------------------------------------


def _check_signature(body: bytes, sig: bytes, public: Ed25519PublicKey) -> Manifest:
    if not verify_signature(public, body, sig):
        trusted = key_id(public)
        try:
            claimed = json.loads(body.decode("utf-8")).get("key_id")
        except (UnicodeDecodeError, ValueError, AttributeError):
            claimed = None
        if isinstance(claimed, str) and claimed != trusted:
            raise BundleError(f"{MANIFEST}: signed by another key (key_id {claimed}; this node trusts {trusted})",
                              hint="sign with the controller key whose release.pub the nodes have")
        raise BundleError(f"{MANIFEST}: signature does not verify with key {trusted} "
                          "(the manifest was altered after signing, or the signature is corrupt)")
    manifest = Manifest.from_bytes(body)
    return manifest


def _check_files(manifest: Manifest, actual: Mapping[str, str | None]) -> None:
    """``actual`` maps every file found (except manifest/sig) to its sha256 (None: could not be read)."""
    for name, expected in sorted(manifest.files.items()):
        if name not in actual:
            raise BundleError(f"{name}: missing file (listed in the manifest)")
        if actual[name] != expected:
            raise BundleError(f"{name}: sha256 mismatch (file tampered with or corrupt)")
    for name in sorted(actual):
        if name not in manifest.files:
            raise BundleError(f"{name}: unknown file (not listed in the manifest)")


def verify_release_dir(path: Path, public_key: PublicKeyLike) -> Manifest:
    """Verify an unpacked release folder; return its manifest or raise BundleError naming the problem."""
    public = load_public_key(public_key)
    root = Path(path)
    if root.is_symlink() or not root.is_dir():
        raise BundleError(f"{root}: not a release folder")
    found: dict[str, Path] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in sorted([*dirs, *files]):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"{rel}: symlink refused in a release")
            if stat.S_ISREG(mode):
                found[rel] = full
            elif not stat.S_ISDIR(mode):
                raise BundleError(f"{rel}: not a regular file")
    for special in (MANIFEST, SIGNATURE):
        if special not in found:
            raise BundleError(f"{special}: missing file in {root}")
    manifest = _check_signature(found.pop(MANIFEST).read_bytes(), found.pop(SIGNATURE).read_bytes(), public)
    _check_files(manifest, {rel: sha256_file(p) for rel, p in found.items()})
    return manifest


def _members(tar: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    seen: set[str] = set()
    for member in tar:
        name = safe_name(member.name)
        if member.issym() or member.islnk():
            raise BundleError(f"{name}: link in bundle refused")
        if member.isdir():
            continue
        if not member.isreg():
            raise BundleError(f"{name}: special file in bundle refused")
        if name in seen:
            raise BundleError(f"{name}: appears twice in the bundle")
        seen.add(name)
        yield name, member


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """The bundle as a streaming tar; on a clean exit the gzip trailer (CRC, length) is checked too."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise BundleError(f"{path}: bundle not found") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the bundle: {exc.strerror}") from None
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        try:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                yield tar
            while gz.read(_CHUNK):
                pass
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise BundleError(f"{path}: not a readable .tar.gz bundle ({exc})") from None


def verify_bundle(tar_path: Path, public_key: PublicKeyLike) -> Manifest:
    """Verify a bundle file without unpacking it; return its manifest or raise BundleError."""
    public = load_public_key(public_key)
    path = Path(tar_path)
    body = sig = None
    actual: dict[str, str | None] = {}
    with _open_tar(path) as tar:
        try:
            for name, member in _members(tar):
                stream = tar.extractfile(member)
                if stream is None:
                    raise BundleError(f"{name}: cannot be read from the bundle")
                if name == MANIFEST:
                    body = stream.read()
                elif name == SIGNATURE:
                    sig = stream.read()
                else:
                    actual[name] = _sha256_stream(stream)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError(f"{path}: damaged bundle ({exc})") from None
    if body is None or sig is None:
        raise BundleError(f"{MANIFEST if body is None else SIGNATURE}: missing file in bundle {path.name}")
    manifest = _check_signature(body, sig, public)
    _check_files(manifest, actual)
    return manifest


def install_bundle(tar_path: Path, dest: Path, public_key: PublicKeyLike,
                   check: Callable[[Manifest], None] | None = None) -> tuple[Manifest, bool]:
    """Verify, then unpack into a temp folder beside ``dest`` and rename it into place atomically.

    Returns (manifest, changed). An existing ``dest`` holding this very release is kept (changed False); one
    that differs or does not verify is refused, never overwritten. A failed verify leaves no ``dest``.
    ``check(manifest)`` runs on the verified manifest before anything is written (it raises to refuse).
    """
    public = load_public_key(public_key)
    manifest = verify_bundle(tar_path, public)
    if check is not None:
        check(manifest)
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        return _existing(dest, manifest, public), False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.unpack-"))
    try:
        with _open_tar(Path(tar_path)) as tar:
            for name, member in _members(tar):
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                stream = tar.extractfile(member)
                if stream is None:
                    raise BundleError(f"{name}: cannot be read from the bundle")
                with open(target, "wb") as out:
                    shutil.copyfileobj(stream, out, _CHUNK)
                os.chmod(target, 0o644)
        for dirpath, dirs, _ in os.walk(tmp):
            for d in dirs:
                os.chmod(Path(dirpath) / d, 0o755)
        os.chmod(tmp, 0o755)
        unpacked = verify_release_dir(tmp, public)  # the bytes on disk, not just the ones read earlier
        if unpacked != manifest:
            raise BundleError(f"{tar_path}: bundle changed while it was being unpacked")
        try:
            os.rename(tmp, dest)
        except OSError:
            if dest.exists():  # another process unpacked the same release first
                return _existing(dest, manifest, public), False
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest, True


def _existing(dest: Path, manifest: Manifest, public: Ed25519PublicKey) -> Manifest:
    try:
        there = verify_release_dir(dest, public)
    except BundleError as exc:
        raise BundleError(f"{dest} exists and does not verify ({exc})",
                          hint=f"remove {dest} and unpack again") from None
    if there != manifest:
        raise BundleError(f"{dest} exists and holds another release ({there.model} {there.version} "
                          f"{there.digest[:12]})", hint=f"remove {dest} or unpack elsewhere")
    return there


def unpack_bundle(tar_path: Path, dest: Path, public_key: PublicKeyLike) -> Manifest:
    """Verify ``tar_path`` and unpack it atomically to ``dest``; see :func:`install_bundle`."""
    return install_bundle(tar_path, dest, public_key)[0]
