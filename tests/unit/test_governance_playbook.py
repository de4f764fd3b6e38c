"""Governance in ``playbooks/deploy.yml``, by real ``ansible-playbook`` against two nodes on this machine (local
connection, node roots in a temp folder, each provisioned with a trust file and its environment as edge_runtime
installs them): edge-t-02 is in a protected ``prod`` group. The controller's check refuses the whole run before
any node is touched, also with a node-only ``--limit``; with that check skipped (``--skip-tags governance``) the
prod node refuses by itself and changes nothing; a valid clearance passes both. The same rules on a simulated
fleet over SSH, through the CLI, are in tests/integration/test_governance_fleet.py."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet.core import approvals as a
from tests.conftest import REPO_ROOT
from tests.unit.ansible_module_support import PlayRun, install_governance, run_playbook_locally

DEPLOY = REPO_ROOT / "playbooks" / "deploy.yml"
DIGEST = "b" * 64
RELEASE = "2-" + "b" * 12
PEOPLE = {"dana": ("data_scientist",), "mona": ("manager",), "quinn": ("qa",), "omar": ("ops",)}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def keys() -> dict[str, Ed25519PrivateKey]:
    return {name: Ed25519PrivateKey.generate() for name in PEOPLE}


@pytest.fixture(scope="module")
def trust(keys: dict[str, Ed25519PrivateKey]) -> a.Trust:
    people = tuple(a.Person(n, PEOPLE[n], k.public_key()) for n, k in keys.items())
    return a.Trust(people, {"prod": a.Requirement("prod", ("manager", "qa"), 3600)})


class Fleet:
    def __init__(self, tmp: Path, trust: a.Trust) -> None:
        self.tmp = tmp
        self.roots: dict[str, Path] = {}
        hosts: dict[str, dict[str, Any]] = {}
        venv_python = f"#!/bin/sh\nexec {sys.executable} \"$@\"\n"  # the node venv's python: this one
        for name, env in (("edge-t-01", "staging"), ("edge-t-02", "prod")):
            root = tmp / name
            (root / "models" / "m" / "releases" / RELEASE).mkdir(parents=True)
            (root / "run").mkdir()
            os.symlink("releases/" + RELEASE, root / "models" / "m" / "current")
            (root / "agent" / "venv" / "bin").mkdir(parents=True)
            (root / "agent" / "venv" / "bin" / "python").write_text(venv_python)
            (root / "agent" / "venv" / "bin" / "python").chmod(0o755)
            install_governance(root, trust.to_dict(), environment=env)
            self.roots[name] = root
            hosts[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                           "modelfleet_root": str(root), "modelfleet_service_manager": "supervisord"}
        self.inventory = tmp / "inventory.yml"
        self.inventory.write_text(json.dumps({"all": {"children": {
            "edge": {"hosts": hosts},
            "staging": {"hosts": {"edge-t-01": {}}},
            "prod": {"hosts": {"edge-t-02": {}}, "vars": {"modelfleet_environment": "prod"}}}}}), encoding="utf-8")
        self.trust_file = tmp / "trust.json"
        self.trust_file.write_text(trust.to_json(), encoding="utf-8")
        self.bundle = tmp / f"m-{RELEASE}.tar.gz"
        data = json.dumps({"model": "m", "version": "2", "digest": DIGEST, "requires": {}}).encode()
        with tarfile.open(self.bundle, "w:gz") as tar:  # all a deploy reads when the release is already current
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    def files(self) -> dict[str, str]:
        """Every file and link under the node roots, with its content or target (to prove nothing changed)."""
        out = {}
        for root in self.roots.values():
            for path in sorted(root.rglob("*")):
                if path.is_symlink():
                    out[str(path)] = "-> " + os.readlink(path)
                elif path.is_file():
                    out[str(path)] = path.read_text(errors="replace")
        return out

    def deploy(self, *, clearance: Any = None, limit: str | None = None, skip_controller_check: bool = False,
               check: bool = False) -> PlayRun:
        args: dict[str, Any] = {"model_release_model": "m", "model_release_version": "2",
                                "model_release_digest": DIGEST, "model_release_bundle": str(self.bundle),
                                "modelfleet_run_id": "run-G", "modelfleet_governance_trust": str(self.trust_file)}
        if clearance is not None:
            path = self.tmp / "clearance.json"
            path.write_text(json.dumps(clearance), encoding="utf-8")
            args["modelfleet_clearance"] = str(path)
        extra = ["--skip-tags", "governance"] if skip_controller_check else []
        return run_playbook_locally(DEPLOY, self.tmp, args, inventory=str(self.inventory), limit=limit,
                                    host=limit or "edge-t-01", check=check, args=extra)


def _sign(keys: dict[str, Ed25519PrivateKey], who: str, record: dict[str, Any], key_of: str | None = None,
          ) -> a.Signed:
    return a.sign_record(keys[key_of or who], {**record, "by": who, "key_id": a.key_id(keys[who].public_key())})


def clearance(keys: dict[str, Ed25519PrivateKey], *, digest: str = DIGEST, qa_key: str = "quinn") -> dict[str, Any]:
    subject = a.Subject("m", "2", digest, "prod", None)
    request = _sign(keys, "dana", {"format": a.REQUEST_FORMAT, "id": "r1", **subject.to_dict(), "reason": "x",
                                   "issued_at": a.format_time(NOW)})

    def approval(who: str, key_of: str | None = None) -> a.Signed:
        return _sign(keys, who, {"format": a.APPROVAL_FORMAT, "request_id": "r1", **subject.to_dict(),
                                 "decision": "approve", "reason": "", "issued_at": a.format_time(NOW),
                                 "expires_at": a.format_time(NOW + timedelta(days=7)),
                                 "gate": {"policy_sha256": "p", "verdict": "passed"}}, key_of)

    return {"format": a.CLEARANCE_FORMAT, **subject.to_dict(), "mode": "approvals", "request": request.to_dict(),
            "approvals": [approval("mona").to_dict(), approval("quinn", qa_key).to_dict()], "break_glass": None}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, trust: a.Trust) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("gov"), trust)


def test_without_a_clearance_the_controller_refuses_the_whole_run(fleet: Fleet) -> None:
    before = fleet.files()
    for limit, check in ((None, False), ("edge-t-02", False), (None, True)):
        run = fleet.deploy(limit=limit, check=check)
        assert run.rc != 0, run.out[-3000:]
        assert "deploy of m/2 (bbbbbbbbbbbb) refused for prod (edge-t-02): prod is protected and no " \
               "modelfleet-clearance/1 document came with the deploy" in run.out, run.out[-3000:]
        assert "modelfleet clearance m/2 --env prod -o clearance.json" in run.out
        assert "Preflight | on the node" not in run.out  # no node step ran, not even on the staging node
    assert fleet.files() == before


def test_with_the_controller_check_skipped_the_prod_node_refuses_by_itself(fleet: Fleet, keys: dict[str, Any],
                                                                          ) -> None:
    before = fleet.files()
    run = fleet.deploy(limit="edge-t-02", skip_controller_check=True)
    assert run.rc != 0, run.out[-3000:]
    assert run.failure.startswith("deploy of m/2 refused on edge-t-02 (environment prod): prod is protected and no "
                                  "modelfleet-clearance/1 document came with the deploy"), run.failure
    assert run.facts["model_release_outcome"] == "refused"
    forged = fleet.deploy(clearance=clearance(keys, qa_key="dana"), limit="edge-t-02", skip_controller_check=True)
    assert forged.rc != 0 and "signature does not verify with quinn's key" in forged.failure, forged.failure
    assert "lacks approval by qa" in forged.failure
    assert fleet.files() == before


def test_a_valid_clearance_passes_the_controller_and_the_node(fleet: Fleet, keys: dict[str, Any]) -> None:
    other = fleet.deploy(clearance=clearance(keys, digest="c" * 64))
    assert other.rc != 0 and "is for another release or environment: digest" in other.out, other.out[-3000:]
    run = fleet.deploy(clearance=clearance(keys), limit="edge-t-02", check=False)
    assert run.rc == 0, run.out[-3000:]
    assert run.facts["model_release_outcome"] == "unchanged"  # release 2 was current: cleared, nothing to do
    prepared = next(res for _, res in run.results if res.get("governance"))
    assert prepared["governance"]["mode"] == "approvals"
    assert {p["name"] for p in prepared["governance"]["people"]} == {"mona", "quinn"}


def test_a_node_provisioned_for_another_environment_refuses(fleet: Fleet, keys: dict[str, Any]) -> None:
    env_file = fleet.roots["edge-t-02"] / "etc" / "governance" / "environment"
    env_file.write_text("staging\n")  # provisioned before it moved to prod
    try:
        run = fleet.deploy(clearance=clearance(keys), limit="edge-t-02")
    finally:
        env_file.write_text("prod\n")
    assert run.rc != 0
    assert "edge-t-02 was provisioned for environment 'staging' but the inventory names 'prod'" in run.failure
