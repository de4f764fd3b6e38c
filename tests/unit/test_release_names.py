"""Release folder names: one rule, written three times (core/release_names.py, the node's module_utils, the role's
Jinja in preflight.yml), kept equal here. A release with per-group thresholds gets its own folder
(``<version>-<digest12>-t<thresholds8>``), so a version that gains thresholds after it ran never collides with the
folder it had."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet.core.approvals import thresholds_digest
from modelfleet.core.bundle import build_bundle, install_bundle, verify_release_dir
from modelfleet.core.placement import placements
from modelfleet.core.release_names import release_name, release_version, split_release_name
from tests.conftest import REPO_ROOT
from tests.unit.ansible_module_support import run_playbook_locally

DIGEST = "0123456789ab" + "c" * 52
THRESHOLDS = {"column": "applicant_group", "thresholds": {"A": 0.31, "B": 0.2999999, "Ä": 1e-05}, "default": 0.5,
              "cost_ratio": 5.0, "format": "modelfleet-thresholds/1"}


def _node_utils():  # type: ignore[no-untyped-def]
    path = REPO_ROOT / "roles" / "model_release" / "module_utils" / "modelfleet_release_node.py"
    spec = importlib.util.spec_from_file_location("mf_node_names", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_names_with_and_without_thresholds_split_back_the_same_on_both_sides() -> None:
    node = _node_utils()
    sha = thresholds_digest(THRESHOLDS)
    assert sha is not None
    plain, with_t = release_name(7, DIGEST), release_name("7", DIGEST, sha)
    assert plain == "7-0123456789ab" and with_t == f"7-0123456789ab-t{sha[:8]}"
    for name in (plain, with_t, "releases/" + with_t, "v1.2-rc-0123456789ab", "naive"):
        core = split_release_name(name)
        assert node.split_release(name) == (core.version, core.digest12), name
    assert split_release_name(with_t).thresholds8 == sha[:8] and release_version(with_t) == "7"
    assert split_release_name("naive") == ("naive", "", "")


def test_a_reverted_node_is_placed_on_the_version_of_a_thresholded_release() -> None:
    class Ev:
        def __init__(self, action: str, outcome: str, version: str, details: dict) -> None:
            self.action, self.outcome, self.version, self.details = action, outcome, version, details
            self.node, self.model, self.run_id, self.seq = "n1", "m", "r", 1

    sha = thresholds_digest(THRESHOLDS) or ""
    events = [Ev("node_deploy", "ok", "7", {}),
              Ev("node_deploy", "reverted", "8", {"to_release": release_name(7, DIGEST, sha)})]
    assert placements(events)[("n1", "m")].version == "7"


def test_the_roles_jinja_names_the_release_like_the_controller(tmp_path: Path) -> None:
    tasks = yaml.safe_load((REPO_ROOT / "roles/model_release/tasks/preflight.yml").read_text())
    (task,) = [t for t in tasks if t["name"].startswith("Preflight | the release's name")]
    task = {k: v for k, v in task.items() if k != "run_once"}
    playbook = tmp_path / "names.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
    for thresholds in (THRESHOLDS, None):
        manifest = {"model": "m", "version": "7", "digest": DIGEST,
                    **({"thresholds": thresholds} if thresholds else {})}
        run = run_playbook_locally(playbook, tmp_path, {
            "model_release_manifest": manifest, "model_release_version": "7", "model_release_digest": DIGEST,
            "model_release_clearance": ""})
        assert run.rc == 0, run.out[-2000:]
        sha = thresholds_digest(thresholds)
        assert run.facts["model_release_name"] == release_name("7", DIGEST, sha)
        assert run.facts["model_release_thresholds_sha256"] == (sha or "")


def test_a_version_that_gains_thresholds_unpacks_beside_its_old_release(tmp_path: Path) -> None:
    from modelfleet.core.fairness import GroupThresholds

    key = Ed25519PrivateKey.generate()
    model_dir = tmp_path / "artifact"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    releases = tmp_path / "node" / "releases"
    names = []
    for thresholds in (None, GroupThresholds("g", {"A": 0.3}, 0.5, 5.0)):
        bundle = build_bundle(model="m", version="7", digest=DIGEST, artifact_dir=model_dir,
                              state_dir=tmp_path / "state", private_key=key, thresholds=thresholds, force=True)
        manifest, changed = install_bundle(bundle.path, releases / bundle.manifest.release_name, key.public_key())
        assert changed and verify_release_dir(releases / manifest.release_name, key.public_key()) == manifest
        names.append(manifest.release_name)
    assert names[0] == "7-0123456789ab" and names[1].startswith("7-0123456789ab-t") and len(set(names)) == 2
    assert sorted(p.name for p in releases.iterdir()) == sorted(names)
