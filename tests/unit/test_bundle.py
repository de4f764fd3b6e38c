"""Release bundles: build, sign, verify, refuse tampering, unpack atomically, probe from an input example."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet.core.bundle import (
    FORMAT,
    Bundle,
    build_bundle,
    install_bundle,
    make_probe,
    unpack_bundle,
    verify_bundle,
    verify_release_dir,
    write_deterministic_tar,
)
from modelfleet.core.errors import BundleError
from modelfleet.core.signing import key_id, key_paths, load_or_create_signing_key, public_pem
from tests.conftest import REPO_ROOT

DIGEST = "3f" * 32
CREATED = "2024-05-01T12:00:00Z"


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A small MLflow-shaped model folder (no MLflow needed to bundle it)."""
    model = tmp_path / "artifact"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
        "signature:\n  inputs: '[{\"type\": \"double\", \"name\": \"income\"}]'\n"
        "  outputs: '[{\"type\": \"long\"}]'\n"
    )
    (model / "model.pkl").write_bytes(bytes(range(256)) * 4)
    (model / "sub" / "extra.txt").write_text("hello\n")
    return model


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _build(artifact: Path, state: Path, **kw: object) -> Bundle:
    args: dict[str, object] = {"model": "credit-risk", "version": "2", "digest": DIGEST, "artifact_dir": artifact,
                               "state_dir": state, "created": CREATED, "profile": {"features": {"income": [1, 2]}},
                               "probe_request": {"dataframe_records": [{"income": 1.0}]},
                               "probe_expected": {"predictions": [0]}}
    args.update(kw)
    return build_bundle(**args)  # type: ignore[arg-type]


def _pub(state: Path) -> Path:
    return key_paths(state)[1]


def _entries(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _raw_tar(path: Path, entries: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return path


# -- build and verify --------------------------------------------------------------------------------------------


def test_build_then_verify(artifact: Path, state: Path) -> None:
    built = _build(artifact, state)
    assert built.path == state / "bundles" / f"credit-risk-2-{DIGEST[:12]}.tar.gz"
    assert not built.cached and len(built.sha256) == 64
    manifest = verify_bundle(built.path, _pub(state))
    assert manifest == built.manifest
    assert manifest.format == FORMAT and manifest.model == "credit-risk" and manifest.version == "2"
    assert manifest.digest == DIGEST and manifest.created == CREATED
    assert set(manifest.files) == {"model/MLmodel", "model/model.pkl", "model/sub/extra.txt", "profile.json"}
    assert manifest.profile == "profile.json"
    assert manifest.signature is not None and "income" in manifest.signature["inputs"]
    assert manifest.probe == {"request": {"dataframe_records": [{"income": 1.0}]},
                              "expected": {"predictions": [0]}}
    assert manifest.requires == {"arch": ["x86_64", "aarch64"], "accelerator": None}
    assert manifest.release_name == f"2-{DIGEST[:12]}"
    names = list(_entries(built.path))
    assert names == sorted(names) and names[:2] == ["manifest.json", "manifest.sig"]
    # The manifest on disk is exactly the signed bytes, and key files are where nodes/controller expect them.
    private, public = key_paths(state)
    assert os.stat(private).st_mode & 0o777 == 0o600
    assert os.stat(private.parent).st_mode & 0o777 == 0o700
    key = load_or_create_signing_key(state)
    assert public.read_bytes() == public_pem(key.public_key())
    assert manifest.key_id == key_id(key.public_key())


def test_bundle_bytes_are_deterministic_and_cached(artifact: Path, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    one = _build(artifact, tmp_path / "a", private_key=key)
    two = _build(artifact, tmp_path / "b", private_key=key)
    assert one.path.read_bytes() == two.path.read_bytes() and one.sha256 == two.sha256
    again = _build(artifact, tmp_path / "a", private_key=key, created="2030-01-01T00:00:00Z")
    assert again.cached and again.path.read_bytes() == one.path.read_bytes()
    rebuilt = _build(artifact, tmp_path / "a", private_key=key, force=True)
    assert not rebuilt.cached and rebuilt.path.read_bytes() == one.path.read_bytes()


def test_damaged_cache_entry_is_rebuilt(artifact: Path, state: Path) -> None:
    built = _build(artifact, state)
    good = built.path.read_bytes()
    built.path.write_bytes(good[:-10])
    again = _build(artifact, state)
    assert not again.cached and again.path.read_bytes() == good


def test_key_is_created_once(state: Path) -> None:
    first = load_or_create_signing_key(state)
    second = load_or_create_signing_key(state)
    assert key_id(first.public_key()) == key_id(second.public_key())


def test_build_refuses_bad_inputs(artifact: Path, state: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="digest"):
        _build(artifact, state, digest="abc")
    with pytest.raises(BundleError, match="model name"):
        _build(artifact, state, model="../evil")
    with pytest.raises(BundleError, match="MLmodel"):
        _build(tmp_path, state)
    (artifact / "link").symlink_to(artifact / "model.pkl")
    with pytest.raises(BundleError, match="symlink"):
        _build(artifact, state)


# -- refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model/MLmodel", "model/model.pkl", "model/sub/extra.txt", "profile.json",
                                  "manifest.json"])
def test_one_changed_byte_is_refused_naming_the_file(artifact: Path, state: Path, tmp_path: Path,
                                                      name: str) -> None:
    entries = _entries(_build(artifact, state).path)
    data = bytearray(entries[name])
    data[len(data) // 2] ^= 0x01
    entries[name] = bytes(data)
    bad = tmp_path / "bad.tar.gz"
    write_deterministic_tar(bad, entries)
    with pytest.raises(BundleError, match=name.replace(".", r"\.")) as info:
        verify_bundle(bad, _pub(state))
    assert ("sha256 mismatch" if name != "manifest.json" else "signature") in str(info.value)


def test_signed_by_another_key_is_refused(artifact: Path, state: Path, tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate()
    built = _build(artifact, tmp_path / "other-state", private_key=other)
    load_or_create_signing_key(state)
    with pytest.raises(BundleError, match="signed by another key"):
        verify_bundle(built.path, _pub(state))


def test_extra_file_is_refused(artifact: Path, state: Path, tmp_path: Path) -> None:
    entries = _entries(_build(artifact, state).path)
    entries["model/backdoor.py"] = b"import os\n"
    with pytest.raises(BundleError, match=r"model/backdoor\.py: unknown file"):
        verify_bundle(_raw_tar(tmp_path / "x.tar.gz", entries), _pub(state))


def test_missing_file_is_refused(artifact: Path, state: Path, tmp_path: Path) -> None:
    entries = _entries(_build(artifact, state).path)
    del entries["model/model.pkl"]
    with pytest.raises(BundleError, match=r"model/model\.pkl: missing"):
        verify_bundle(_raw_tar(tmp_path / "x.tar.gz", entries), _pub(state))
    del entries["manifest.sig"]
    with pytest.raises(BundleError, match=r"manifest\.sig: missing"):
        verify_bundle(_raw_tar(tmp_path / "y.tar.gz", entries), _pub(state))


@pytest.mark.parametrize("evil", ["../escape.txt", "model/../../escape.txt", "/etc/evil", "model/..\\x"])
def test_path_traversal_is_refused(artifact: Path, state: Path, tmp_path: Path, evil: str) -> None:
    entries = _entries(_build(artifact, state).path)
    entries[evil] = b"x"
    tar = _raw_tar(tmp_path / "x.tar.gz", entries)
    with pytest.raises(BundleError, match="refused"):
        verify_bundle(tar, _pub(state))
    with pytest.raises(BundleError):
        unpack_bundle(tar, tmp_path / "releases" / "r", _pub(state))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "releases" / "r").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_links_in_tarball_are_refused(artifact: Path, state: Path, tmp_path: Path, kind: bytes) -> None:
    entries = _entries(_build(artifact, state).path)
    link = tarfile.TarInfo("model/passwd")
    link.type = kind
    link.linkname = "/etc/passwd"
    with pytest.raises(BundleError, match=r"model/passwd: link"):
        verify_bundle(_raw_tar(tmp_path / "x.tar.gz", entries, [link]), _pub(state))


def test_not_a_bundle(state: Path, tmp_path: Path) -> None:
    load_or_create_signing_key(state)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(BundleError, match="not a readable"):
        verify_bundle(junk, _pub(state))
    with pytest.raises(BundleError, match="not found"):
        verify_bundle(tmp_path / "absent.tar.gz", _pub(state))


# -- unpacking ---------------------------------------------------------------------------------------------------


def test_unpack_then_verify_dir(artifact: Path, state: Path, tmp_path: Path) -> None:
    built = _build(artifact, state)
    dest = tmp_path / "models" / "credit-risk" / "releases" / built.manifest.release_name
    manifest, changed = install_bundle(built.path, dest, _pub(state))
    assert changed and manifest == built.manifest
    assert (dest / "model" / "MLmodel").is_file() and (dest / "profile.json").is_file()
    assert verify_release_dir(dest, _pub(state)) == manifest
    assert json.loads((dest / "manifest.json").read_text())["digest"] == DIGEST
    assert install_bundle(built.path, dest, _pub(state)) == (manifest, False)  # idempotent
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no temp leftovers


def test_failed_verify_leaves_no_dest(artifact: Path, state: Path, tmp_path: Path) -> None:
    entries = _entries(_build(artifact, state).path)
    entries["model/model.pkl"] = b"tampered"
    bad = _raw_tar(tmp_path / "bad.tar.gz", entries)
    releases = tmp_path / "releases"
    releases.mkdir()
    with pytest.raises(BundleError, match=r"model/model\.pkl"):
        unpack_bundle(bad, releases / "2-x", _pub(state))
    assert list(releases.iterdir()) == []


def test_existing_different_dest_is_refused(artifact: Path, state: Path, tmp_path: Path) -> None:
    built = _build(artifact, state)
    dest = tmp_path / "release"
    dest.mkdir()
    (dest / "stray").write_text("x")
    with pytest.raises(BundleError, match="does not verify"):
        unpack_bundle(built.path, dest, _pub(state))
    assert (dest / "stray").exists()


@pytest.mark.parametrize("damage", ["byte", "extra", "missing", "symlink"])
def test_unpacked_dir_tampering_is_refused(artifact: Path, state: Path, tmp_path: Path, damage: str) -> None:
    built = _build(artifact, state)
    dest = tmp_path / "release"
    unpack_bundle(built.path, dest, _pub(state))
    target = dest / "model" / "model.pkl"
    if damage == "byte":
        data = bytearray(target.read_bytes())
        data[0] ^= 0xFF
        target.write_bytes(bytes(data))
        match = r"model/model\.pkl: sha256 mismatch"
    elif damage == "extra":
        (dest / "model" / "evil.py").write_text("x")
        match = r"model/evil\.py: unknown file"
    elif damage == "missing":
        target.unlink()
        match = r"model/model\.pkl: missing"
    else:
        target.unlink()
        target.symlink_to("/etc/hostname")
        match = r"model/model\.pkl: symlink"
    with pytest.raises(BundleError, match=match):
        verify_release_dir(dest, _pub(state))


# -- node-side CLI -----------------------------------------------------------------------------------------------


def test_release_verify_cli(artifact: Path, state: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from modelfleet.release_verify import main

    built = _build(artifact, state)
    pub = str(_pub(state))
    dest = tmp_path / "rel"
    assert main(["--public-key", pub, "--bundle", str(built.path)]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert main(["--public-key", pub, "--bundle", str(built.path), "--dest", str(dest)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["changed"] and out["release"] == f"2-{DIGEST[:12]}"
    assert main(["--public-key", pub, "--bundle", str(built.path), "--dest", str(dest)]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert main(["--public-key", pub, "--release-dir", str(dest)]) == 0
    capsys.readouterr()
    (dest / "profile.json").write_text("{}")
    assert main(["--public-key", pub, "--release-dir", str(dest)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": False, "error": json.loads(captured.out)["error"], "damaged": True}
    assert "profile.json" in captured.err  # the unpacked copy itself is damaged: the node removes it (model_release)
    with pytest.raises(SystemExit) as info:
        main(["--public-key", pub])
    assert info.value.code == 2


def test_node_side_imports_only_stdlib_and_cryptography() -> None:
    code = ("import sys, modelfleet.release_verify, modelfleet.core.bundle\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "tui")},
                                ).stdout.split())
    assert not loaded & {"mlflow", "yaml", "sqlalchemy", "pandas", "numpy", "sklearn", "textual"}


# -- probe -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "age": [20, 30, 40, 50, 60, 70]})
    model = LogisticRegression().fit(x, [0, 0, 0, 1, 1, 1])
    path = tmp_path_factory.mktemp("mlflow") / "model"
    # explicit requirements: skips MLflow's slow requirement inference (a subprocess that loads the model)
    mlflow.sklearn.save_model(model, str(path), input_example=x.iloc[[0, 5]], pip_requirements=["scikit-learn"])
    return path


def test_probe_from_input_example(sklearn_model: Path, tmp_path: Path) -> None:
    probe = make_probe(sklearn_model)
    assert probe is not None
    assert probe["request"]["dataframe_split"]["columns"] == ["income", "age"]
    assert probe["expected"] == {"predictions": [0, 1]}
    built = build_bundle(model="credit-risk", version="1", digest=DIGEST, artifact_dir=sklearn_model,
                         state_dir=tmp_path / "state", probe_request=probe["request"])
    assert built.manifest.probe == probe  # expected computed from the model when not given
    assert built.manifest.signature and "income" in built.manifest.signature["inputs"]


def test_probe_from_sample_or_none(sklearn_model: Path, tmp_path: Path) -> None:
    import pandas as pd

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(sklearn_model):
        if "input_example" not in name:
            (bare / name).write_bytes((sklearn_model / name).read_bytes())
    text = (bare / "MLmodel").read_text()
    (bare / "MLmodel").write_text(text.split("saved_input_example_info")[0] +
                                  "signature" + text.split("\nsignature", 1)[1])
    assert make_probe(bare) is None
    sample = pd.DataFrame({"income": [6.0, 1.0, 3.0, 9.0], "age": [70, 20, 40, 80]})
    probe = make_probe(bare, sample=sample, rows=2)
    assert probe is not None
    assert probe["request"] == {"dataframe_split": {"columns": ["income", "age"], "data": [[6.0, 70], [1.0, 20]]}}
    assert probe["expected"] == {"predictions": [1, 0]}


def test_thresholds_travel_in_the_manifest_and_a_change_rebuilds(artifact: Path, state: Path) -> None:
    from modelfleet.core.approvals import thresholds_digest
    from modelfleet.core.fairness import GroupThresholds

    plain = _build(artifact, state)
    assert b'"thresholds"' not in _entries(plain.path)["manifest.json"]  # absent: old manifests keep their bytes
    assert plain.manifest.thresholds_sha256 is None
    th = GroupThresholds("applicant_group", {"A": 0.2, "B": 0.3}, default=0.25)
    with_th = _build(artifact, state, thresholds=th)
    assert not with_th.cached  # the cached bundle without thresholds is not reused
    manifest = verify_bundle(with_th.path, _pub(state))
    assert manifest.thresholds == th.to_dict() and manifest.thresholds_sha256 == th.sha256
    assert thresholds_digest(manifest.thresholds) == th.sha256
    assert _build(artifact, state, thresholds=th).cached
