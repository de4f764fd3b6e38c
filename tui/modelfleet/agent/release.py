"""Loading a release directory, warming it and checking its probe.

A release (what a node's ``current`` symlink points to) holds ``manifest.json`` (+ ``manifest.sig``, verified by
the deployer, not here), the model and optionally ``profile.json``:

- ``model/`` — an MLflow model directory (``MLmodel``) with the scikit-learn flavour, loaded natively (skops,
  pickle or cloudpickle serialisation); a model without that flavour is refused with a message naming its
  flavours and the fix;
- or ``model.joblib`` at the release root;
- a directory that is itself an MLflow model (``MLmodel`` at its root) is accepted too, with no manifest.

The agent never imports mlflow (an import-linter contract in pyproject.toml holds it to that): nodes get only the
agent's runtime dependencies from the controller's wheelhouse (``runners/wheelhouse.py``), and MLflow is not one.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.agent.scoring import (
    BadRequest,
    ColumnSpec,
    Parsed,
    build_frame,
    decode,
    parse_request,
    parse_signature,
    to_jsonable,
    with_thresholds,
)
from modelfleet.core.errors import BundleError, CheckFailed

RELEASE_FORMAT = "modelfleet-release/1"


@dataclass
class Release:
    """A loaded model version, ready to predict."""

    path: Path
    name: str
    version: str
    digest: str | None
    model: Any
    flavor: str
    schema: list[ColumnSpec] | None
    probe: dict[str, Any] | None
    warm_request: dict[str, Any] | None
    profile: Any = None  # ReferenceProfile | None
    profile_error: str | None = None
    classes: list[Any] | None = None
    load_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)
    manifest: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "version": self.version, "digest": self.digest, "flavor": self.flavor,
                "release": str(self.path), "loaded_at": self.loaded_at,
                "load_seconds": round(self.load_seconds, 4)}

    def parse(self, body: bytes | dict[str, Any], max_rows: int) -> Parsed:
        payload = decode(body) if isinstance(body, (bytes, bytearray, str)) else body
        return parse_request(payload, self.schema, max_rows)

    def predict_parsed(self, parts: list[Parsed]) -> Any:
        return self.model.predict(build_frame(parts))

    def score(self, request: dict[str, Any], max_rows: int = 1_000_000) -> list[Any]:
        """Score one request the way the server does (parse, enforce, predict, serialise)."""
        parsed = self.parse(request, max_rows)
        return to_jsonable(self.predict_parsed([parsed]))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise BundleError(f"{what} {path} cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise BundleError(f"{what} {path} is not valid JSON: {exc}",
                          hint="the release is corrupt; redeploy it") from exc


def _load_sklearn(model_dir: Path, flavor: dict[str, Any]) -> Any:
    fname = flavor.get("pickled_model", "model.pkl")
    fmt = flavor.get("serialization_format", "cloudpickle")
    path = model_dir / str(fname)
    if not path.is_file():
        raise BundleError(f"the MLflow model in {model_dir} names {fname} but the file is missing")
    if fmt == "skops":
        import skops.io

        trusted = flavor.get("skops_trusted_types") or None
        return skops.io.load(str(path), trusted=trusted)
    if fmt in ("pickle", "cloudpickle"):
        # the release was signature-checked by the deployer before the switch; pickles are trusted here
        with path.open("rb") as fh:
            return pickle.load(fh)
    raise BundleError(f"unknown sklearn serialization_format {fmt!r} in {model_dir / 'MLmodel'}")


def _not_sklearn(model_dir: Path, flavors: dict[str, Any]) -> BundleError:
    named = ", ".join(sorted(flavors)) or "none"
    return BundleError(
        f"the MLflow model in {model_dir} has no sklearn flavour (its flavours: {named}); the agent serves "
        "scikit-learn models only",
        hint="log the model with mlflow.sklearn.log_model (a scikit-learn estimator or Pipeline), register that "
        "version and deploy it",
    )


def _first_example(model_dir: Path) -> dict[str, Any] | None:
    for name in ("serving_input_example.json",):
        p = model_dir / name
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def load_release(path: Path, *, default_name: str | None = None, default_version: str | None = None,
                 group_column: str | None = None) -> Release:
    """Load the release at ``path`` (symlinks resolved). Raises BundleError naming what is wrong."""
    import yaml

    started = time.perf_counter()
    try:
        root = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise BundleError(f"release {path} does not exist", hint="deploy a release first") from exc
    if not root.is_dir():
        raise BundleError(f"release {root} is not a directory")
    manifest: dict[str, Any] | None = None
    if (root / "manifest.json").is_file():
        manifest = _read_json(root / "manifest.json", "manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != RELEASE_FORMAT:
            raise BundleError(f"manifest {root / 'manifest.json'} is not a {RELEASE_FORMAT} manifest")
    model_dir: Path | None = None
    if (root / "model" / "MLmodel").is_file():
        model_dir = root / "model"
    elif (root / "MLmodel").is_file():
        model_dir = root
    schema: list[ColumnSpec] | None = None
    warm: dict[str, Any] | None = None
    mlmodel: dict[str, Any] = {}
    if model_dir is not None:
        try:
            mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BundleError(f"{model_dir / 'MLmodel'} cannot be read: {exc}") from exc
        if not isinstance(mlmodel, dict):
            raise BundleError(f"{model_dir / 'MLmodel'} is not an MLmodel file")
        flavors = mlmodel.get("flavors") or {}
        signature = mlmodel.get("signature") or {}
        schema = parse_signature(signature.get("inputs") if isinstance(signature, dict) else None)
        warm = _first_example(model_dir)
        try:
            if "sklearn" not in flavors:
                raise _not_sklearn(model_dir, flavors)
            model = _load_sklearn(model_dir, flavors["sklearn"])
            flavor = "sklearn"
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(f"the model in {model_dir} failed to load: {type(exc).__name__}: {exc}") from exc
    elif (root / "model.joblib").is_file():
        import joblib

        try:
            model = joblib.load(root / "model.joblib")
        except Exception as exc:
            raise BundleError(f"{root / 'model.joblib'} failed to load: {type(exc).__name__}: {exc}") from exc
        flavor = "joblib"
    else:
        raise BundleError(f"no model in release {root}", hint="expected model/MLmodel or model.joblib")
    if not callable(getattr(model, "predict", None)):
        raise BundleError(f"the object loaded from {root} has no predict method")
    thresholds = (manifest or {}).get("thresholds")
    if thresholds is not None:
        try:
            model = with_thresholds(model, thresholds)
        except ValueError as exc:
            raise BundleError(f"release {root}: its per-group thresholds cannot be applied: {exc}") from exc

    name = str((manifest or {}).get("model") or default_name or root.parent.parent.name or "model")
    version = (manifest or {}).get("version") or default_version or mlmodel.get("model_uuid") or "unknown"
    classes = getattr(model, "classes_", None)
    release = Release(
        path=root, name=name, version=str(version), digest=(manifest or {}).get("digest"), model=model,
        flavor=flavor, schema=schema, probe=(manifest or {}).get("probe"), warm_request=warm,
        classes=list(classes.tolist() if hasattr(classes, "tolist") else classes) if classes is not None else None,
        manifest=manifest,
    )
    _attach_profile(release, root, manifest, group_column)
    release.load_seconds = time.perf_counter() - started
    return release


def _attach_profile(release: Release, root: Path, manifest: dict[str, Any] | None,
                    group_column: str | None) -> None:
    from modelfleet.core.drift import ReferenceProfile

    ref = (manifest or {}).get("profile")
    if ref is None and (root / "profile.json").is_file() and manifest is None:
        ref = "profile.json"
    if not ref:
        release.profile_error = "this version was registered without a reference sample (no profile in the release)"
        return
    p = (root / str(ref)).resolve()
    if root not in p.parents:
        release.profile_error = f"profile path {ref!r} leaves the release directory"
        return
    try:
        release.profile = ReferenceProfile.from_json(p.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        release.profile_error = f"the release profile {ref} cannot be read: {type(exc).__name__}: {exc}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            fa, fb = float(a), float(b)
        except (TypeError, ValueError):
            return False
        return (math.isnan(fa) and math.isnan(fb)) or math.isclose(fa, fb, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def warm_and_probe(release: Release) -> str:
    """Warm the model and check the manifest's probe; returns a verdict line, raises CheckFailed."""
    probe = release.probe
    if probe:
        request = probe.get("request") if isinstance(probe, dict) else None
        expected = (probe.get("expected") or {}) if isinstance(probe, dict) else {}
        if not isinstance(request, dict):
            raise CheckFailed(f"release {release.version}: the manifest probe has no request")
        try:
            got = release.score(request)
        except BadRequest as exc:
            raise CheckFailed(f"release {release.version}: the probe request was refused: {exc.message}") from exc
        except Exception as exc:
            raise CheckFailed(f"release {release.version}: the model failed on its probe: "
                              f"{type(exc).__name__}: {exc}") from exc
        want = expected.get("predictions") if isinstance(expected, dict) else None
        if want is not None and not _same(got, want):
            raise CheckFailed(f"release {release.version}: the probe answered {_short(got)}, "
                              f"expected {_short(want)}")
        for _ in range(3):  # warm caches beyond the first call
            release.score(request)
        return f"probe ok: {len(got)} prediction(s) as expected"
    if release.warm_request:
        try:
            for _ in range(3):
                release.score(release.warm_request)
        except Exception as exc:
            raise CheckFailed(f"release {release.version}: the model failed on its input example: "
                              f"{type(exc).__name__}: {exc}") from exc
        return "no probe in the release; warmed on the model's input example"
    return "no probe in the release and no input example; not warmed"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
