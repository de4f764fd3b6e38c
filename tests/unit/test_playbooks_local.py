"""The playbooks' controller steps, run by real ``ansible-playbook`` against nodes on this machine (local connection,
node roots in a temp folder): a node-only ``--limit`` works like a full run, and a deploy without a version stops at
the controller step with one clear message. The same rollouts over SSH run in tests/integration/test_playbooks.py."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.unit.ansible_module_support import install_governance, run_playbook_locally

DEPLOY = REPO_ROOT / "playbooks" / "deploy.yml"
DIGEST = "b" * 64
RELEASE = "2-" + "b" * 12


def nodes(tmp: Path, names: list[str]) -> tuple[str, dict[str, Path]]:
    """An inventory of ``names`` in group edge, each a node root where release 2 is already current."""
    roots: dict[str, Path] = {}
    hosts = {}
    for name in names:
        root = tmp / name
        (root / "models" / "m" / "releases" / RELEASE).mkdir(parents=True)
        (root / "run").mkdir()
        install_governance(root)
        os.symlink("releases/" + RELEASE, root / "models" / "m" / "current")
        roots[name] = root
        hosts[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "modelfleet_root": str(root), "modelfleet_service_manager": "supervisord"}
    inventory = tmp / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"children": {"edge": {"hosts": hosts}}}}), encoding="utf-8")
    return str(inventory), roots


def open_trust(tmp: Path) -> Path:
    """A controller trust file that protects no environment (the repository's policy needs the demo's keys)."""
    path = tmp / "trust.json"
    path.write_text(json.dumps({"format": "modelfleet-trust/1", "people": [], "environments": {}}), encoding="utf-8")
    return path


def manifest_only_bundle(tmp: Path) -> Path:
    """A bundle holding just the manifest: all a deploy reads when the release is already current."""
    path = tmp / f"m-{RELEASE}.tar.gz"
    data = json.dumps({"model": "m", "version": "2", "digest": DIGEST, "requires": {}}).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_a_node_only_limit_deploys_like_a_full_run(tmp_path: Path) -> None:
    inventory, _ = nodes(tmp_path, ["edge-t-01", "edge-t-02"])
    args = {"model_release_model": "m", "model_release_version": "2", "model_release_digest": DIGEST,
            "model_release_bundle": str(manifest_only_bundle(tmp_path)), "modelfleet_run_id": "run-L",
            "modelfleet_governance_trust": str(open_trust(tmp_path))}
    run = run_playbook_locally(DEPLOY, tmp_path, args, inventory=inventory, limit="edge-t-01", host="edge-t-01")
    assert run.rc == 0, run.out[-3000:]
    assert "HostVarsVars" not in run.out
    assert run.facts["model_release_outcome"] == "unchanged"  # release 2 was current: the deploy went through
    assert "edge-t-02 |" not in run.out  # outside the limit: not touched


def test_a_deploy_without_a_version_stops_at_the_controller_step(tmp_path: Path) -> None:
    inventory, roots = nodes(tmp_path, ["edge-t-01"])
    run = run_playbook_locally(DEPLOY, tmp_path, {"model_release_model": "credit-risk"}, inventory=inventory,
                               host="edge-t-01")
    assert run.rc != 0
    assert run.failure.startswith("deploy needs the model and the version to roll out: -e model_release_model=<name> "
                                  "-e model_release_version=<version>"), run.failure
    assert "`modelfleet deploy credit-risk@champion`" in run.failure
    run = run_playbook_locally(DEPLOY, tmp_path, {"model_release_model": "credit-risk",
                                                  "model_release_version": "champion"},
                               inventory=inventory, host="edge-t-01")
    assert run.rc != 0 and "model_release_version=champion is not a version number" in run.failure, run.out[-2000:]
    assert not (roots["edge-t-01"] / "run" / "m.deploy.lock").exists()
    assert not (roots["edge-t-01"] / "log").exists()
