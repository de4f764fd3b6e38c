"""Playbooks against a simulated fleet: real ansible-playbook over SSH (subprocess), real agents, real bundles.

Covers the acceptance of issue 4's Ansible part: provision twice (second changed=0), the same deploy twice
(second changed=0), a wrong probe answer on one node (that node back on its previous release within 10 s, exit
non-zero, the others untouched), tampered / foreign-key bundles refused before the switch, a concurrent deploy
refused naming the lock holder, and check mode leaving every node untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODEL = "credit-risk"
FEATURES = ["income", "age", "debt_ratio"]
PROBE_ROWS = [[52000.0, 41, 0.31], [18000.0, 23, 1.2]]
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


# -- releases ---------------------------------------------------------------------------------------------------


def save_model(path: Path, c: float) -> Any:
    """A small scikit-learn model saved the MLflow way (the test process may import mlflow; nodes never do)."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    df = pd.DataFrame({"income": rng.lognormal(10.5, 0.5, 300), "age": rng.integers(18, 80, 300).astype("float64"),
                       "debt_ratio": rng.uniform(0, 1.5, 300)})
    y = (df["debt_ratio"] * 2 - np.log(df["income"]) / 5 > 0.0).astype("int64")
    model = LogisticRegression(C=c, max_iter=500).fit(df, y)
    if not path.exists():  # requirements named, not inferred (MLflow imports the model in a subprocess for that)
        mlflow.sklearn.save_model(model, str(path), serialization_format="pickle", pip_requirements=["scikit-learn"])
    return model


def make_release(state_dir: Path, model: str, version: str, work: Path, *, private_key: Any = None,
                 expected: dict[str, Any] | None = None) -> Any:
    """Build and sign the bundle of ``model`` ``version`` with the controller key under ``state_dir/keys``."""
    import hashlib

    import pandas as pd

    from modelfleet.core.bundle import build_bundle

    art = work / f"{model}-{version}"
    fitted = save_model(art, c=0.5 + float(version))
    digest = hashlib.sha256(f"{model}:{version}:{art}".encode()).hexdigest()
    frame = pd.DataFrame(PROBE_ROWS, columns=FEATURES)
    request = {"dataframe_split": {"columns": FEATURES, "data": PROBE_ROWS}}
    answer = expected or {"predictions": [int(p) for p in fitted.predict(frame)]}
    return build_bundle(model=model, version=version, digest=digest, artifact_dir=art, state_dir=state_dir,
                        private_key=private_key, probe_request=request, probe_expected=answer,
                        created="2026-01-01T00:00:00Z")


# -- running playbooks ------------------------------------------------------------------------------------------


@dataclass
class Run:
    rc: int
    out: str
    recap: dict[str, dict[str, int]]

    def changed(self) -> dict[str, int]:
        return {h: r["changed"] for h, r in self.recap.items() if h != "localhost"}


def ansible_env(state_dir: Path, inventory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MODELFLEET_"))}
    env.update(
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
        MODELFLEET_PATHS_STATE_DIR=str(state_dir), MODELFLEET_FLEET_INVENTORY=str(inventory),
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    # One wheelhouse for every fleet of the test session (and molecule): built once, reused.
    env.setdefault("MODELFLEET_WHEELHOUSE_DIR", str(Path(os.environ.get("MODELFLEET_WHEELHOUSE_DIR",
                                                                         "/tmp/modelfleet-wheelhouse"))))
    return env


def playbook(fleet: Fleet, name: str, *args: str, extra_inventory: Path | None = None,
             background: bool = False, timeout: float = 1500) -> Any:
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(REPO_ROOT / "inventory" / "local")]
    if extra_inventory is not None:
        cmd += ["-i", str(extra_inventory)]
    cmd += [str(REPO_ROOT / "playbooks" / name), *args]
    env = ansible_env(fleet.state_dir, fleet.inventory)
    if background:
        return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return parse(proc.returncode, proc.stdout + proc.stderr)


def parse(rc: int, out: str) -> Run:
    recap = {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
             for m in RECAP.finditer(out)}
    return Run(rc, out, recap)


def release_args(bundle: Any) -> list[str]:
    return ["-e", f"model_release_model={MODEL}", "-e", f"model_release_version={bundle.manifest.version}",
            "-e", f"model_release_digest={bundle.manifest.digest}", "-e", f"model_release_bundle={bundle.path}"]


@dataclass
class Fleet:
    state_dir: Path
    inventory: Path
    nodes: dict[str, Path]  # name -> modelfleet_root
    work: Path

    def current(self, node: str) -> str:
        link = self.nodes[node] / "models" / MODEL / "current"
        return os.readlink(link) if link.is_symlink() else ""

    def log(self, node: str) -> list[dict[str, Any]]:
        path = self.nodes[node] / "log" / "deployments.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def snapshot(root: Path) -> dict[str, tuple[str, int, float]]:
    """Every path under a node root with its kind, size and mtime (links by target): 'untouched' means equal."""
    out: dict[str, tuple[str, int, float]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "venv")]
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = ("link:" + os.readlink(p), 0, 0.0)
            elif p.is_file() and p.suffix != ".log":
                st = p.stat()
                out[str(p)] = ("file", st.st_size, st.st_mtime)
    return out


# -- the fleet --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(make_sim_fleet: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    import yaml

    from modelfleet.core.signing import load_or_create_signing_key

    with make_sim_fleet("127.0.88", 2288, "cpu=3,gpu=1,arm=2") as running:
        state = Path(running.state_dir)
        load_or_create_signing_key(state)
        inv = yaml.safe_load(Path(running.inventory).read_text())
        nodes: dict[str, Path] = {}
        for group in inv["all"]["children"]["edge"]["children"].values():
            for name, hv in (group.get("hosts") or {}).items():
                nodes[name] = Path(hv["modelfleet_root"])
        yield Fleet(state, Path(running.inventory), nodes, tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="module")
def releases(fleet: Fleet) -> dict[str, Any]:
    return {v: make_release(fleet.state_dir, MODEL, v, fleet.work) for v in ("1", "2")}


pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]


def test_provision_is_idempotent(fleet: Fleet) -> None:
    first = playbook(fleet, "provision.yml")
    assert first.rc == 0, first.out[-3000:]
    assert set(first.changed()) == set(fleet.nodes)
    second = playbook(fleet, "provision.yml")
    assert second.rc == 0, second.out[-3000:]
    assert second.changed() == dict.fromkeys(fleet.nodes, 0), second.out[-3000:]
    for root in fleet.nodes.values():
        assert (root / "agent" / "venv" / "bin" / "modelfleet-agent").exists()
        assert (root / "etc" / "release.pub").read_bytes() == (fleet.state_dir / "keys" / "release.pub").read_bytes()
        assert "class =" in (root / "etc" / "facts.d" / "modelfleet.fact").read_text()


def test_check_mode_reports_and_leaves_nodes_untouched(fleet: Fleet, releases: dict[str, Any]) -> None:
    before = {n: snapshot(r) for n, r in fleet.nodes.items()}
    run = playbook(fleet, "deploy.yml", "--check", "--diff", *release_args(releases["1"]))
    assert run.rc == 0, run.out[-3000:]
    assert all(c > 0 for c in run.changed().values()), run.recap
    assert "+++ after" in run.out or "before" in run.out
    assert {n: snapshot(r) for n, r in fleet.nodes.items()} == before


def test_same_deploy_twice_changes_nothing_the_second_time(fleet: Fleet, releases: dict[str, Any]) -> None:
    first = playbook(fleet, "deploy.yml", *release_args(releases["1"]))
    assert first.rc == 0, first.out[-4000:]
    release = f"releases/{releases['1'].manifest.release_name}"
    assert {n: fleet.current(n) for n in fleet.nodes} == dict.fromkeys(fleet.nodes, release)
    assert all(fleet.log(n)[-1]["outcome"] == "deployed" for n in fleet.nodes)
    second = playbook(fleet, "deploy.yml", *release_args(releases["1"]))
    assert second.rc == 0, second.out[-3000:]
    assert second.changed() == dict.fromkeys(fleet.nodes, 0), second.out[-3000:]
    health = playbook(fleet, "healthcheck.yml", "-e", json.dumps({"endpoint_health_expected_versions": {MODEL: "1"}}))
    assert health.rc == 0 and health.changed() == dict.fromkeys(fleet.nodes, 0), health.out[-3000:]


def test_tampered_or_foreign_bundle_is_refused_before_the_switch(fleet: Fleet, releases: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    node = "edge-cpu-02"
    good = releases["2"]
    tampered = fleet.work / "tampered" / good.path.name
    tampered.parent.mkdir(exist_ok=True)
    data = bytearray(good.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    other_state = fleet.work / "other-controller"
    foreign = make_release(other_state, MODEL, "2", fleet.work, private_key=Ed25519PrivateKey.generate())
    before = fleet.current(node)
    # A flipped byte breaks the gzip stream: the controller's preflight cannot even read the manifest, so the run
    # fails before anything reaches the node. A bundle signed by another key reaches the node and is refused by
    # release_verify there, which the node's journal records.
    for bundle_path, reason, journaled in (
        (tampered, r"crc|corrupt|invalid|unexpected end|not in gzip|error", False),
        (foreign.path, r"another key|signature", True),
    ):
        journal_before = len(fleet.log(node))
        args = ["-e", f"model_release_model={MODEL}", "-e", "model_release_version=2",
                "-e", f"model_release_digest={good.manifest.digest}", "-e", f"model_release_bundle={bundle_path}",
                "-e", f"modelfleet_target={node}", "-e", '{"modelfleet_waves": ["100%"]}']
        run = playbook(fleet, "deploy.yml", *args)
        assert run.rc != 0, run.out[-3000:]
        assert re.search(reason, run.out, re.IGNORECASE), run.out[-3000:]
        assert fleet.current(node) == before
        assert not (fleet.nodes[node] / "models" / MODEL / "releases" / good.manifest.release_name).exists()
        if journaled:
            assert fleet.log(node)[-1]["outcome"] == "refused"
        else:
            assert len(fleet.log(node)) == journal_before
        assert not (fleet.nodes[node] / "run" / f"{MODEL}.deploy.lock").exists()


@contextlib.contextmanager
def paused(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Freeze a running playbook (the process and every worker and ssh it started) for the block."""
    tree = [psutil.Process(proc.pid)]
    tree += tree[0].children(recursive=True)
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.suspend()
    try:
        yield
    finally:
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.resume()


def test_concurrent_deploy_is_refused_naming_the_holder(fleet: Fleet, releases: dict[str, Any]) -> None:
    node = "edge-arm-02"
    lock = fleet.nodes[node] / "run" / f"{MODEL}.deploy.lock"
    target = ["-e", f"modelfleet_target={node}", "-e", '{"modelfleet_waves": ["100%"]}']
    first = playbook(fleet, "deploy.yml", *release_args(releases["2"]), *target, "-e", "modelfleet_run_id=run-A",
                     background=True)
    try:
        deadline = time.monotonic() + 300
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.exists(), "the first deploy never took the lock"
        # The first run is held inside its locked section (a deploy here takes seconds, faster than a second
        # ansible-playbook starts), so the second one meets the lock for certain.
        with paused(first):
            second = playbook(fleet, "deploy.yml", *release_args(releases["2"]), *target,
                              "-e", "modelfleet_run_id=run-B")
        assert second.rc != 0
        assert "locked by run run-A" in second.out, second.out[-3000:]
    finally:
        out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-3000:]
    assert not lock.exists()
    # Back to release 1 for the next test.
    back = playbook(fleet, "rollback.yml", "-e", f"model_release_model={MODEL}", "-e", f"modelfleet_target={node}")
    assert back.rc == 0, back.out[-3000:]
    assert fleet.current(node) == f"releases/{releases['1'].manifest.release_name}"
    assert fleet.log(node)[-1]["action"] == "rollback"


def test_wrong_probe_answer_rolls_the_node_back_and_stops(fleet: Fleet, releases: dict[str, Any]) -> None:
    canary = "edge-cpu-01"  # first host of the first wave
    others = [n for n in fleet.nodes if n != canary]
    bad = fleet.work / "bad-probe.yml"
    bad.write_text(json.dumps({"all": {"hosts": {canary: {"model_release_probe": {
        "request": {"dataframe_split": {"columns": FEATURES, "data": PROBE_ROWS}},
        "expected": {"predictions": [7, 7]}}}}}}))
    before = {n: snapshot(fleet.nodes[n]) for n in others}
    run = playbook(fleet, "deploy.yml", *release_args(releases["2"]), extra_inventory=bad)
    assert run.rc != 0
    assert "differs from the expected" in run.out
    assert fleet.current(canary) == f"releases/{releases['1'].manifest.release_name}"
    last = fleet.log(canary)[-1]
    assert last["outcome"] == "rolled_back" and last["version"] == "2"
    assert last["rolled_back_at"] - last["switched_at"] < 10.0, last
    assert {n: snapshot(fleet.nodes[n]) for n in others} == before
    health = playbook(fleet, "healthcheck.yml", "-e", json.dumps({"endpoint_health_expected_versions": {MODEL: "1"}}))
    assert health.rc == 0, health.out[-3000:]


def test_a_node_only_limit_deploys_that_node_only(fleet: Fleet, releases: dict[str, Any]) -> None:
    node = "edge-cpu-03"
    before = {n: fleet.current(n) for n in fleet.nodes}
    assert before[node] != f"releases/{releases['2'].manifest.release_name}"
    run = playbook(fleet, "deploy.yml", *release_args(releases["2"]), "--limit", node)
    assert run.rc == 0, run.out[-3000:]
    assert set(run.recap) <= {node, "localhost"} and run.recap[node]["changed"] > 0, run.recap
    assert fleet.current(node) == f"releases/{releases['2'].manifest.release_name}"
    assert {n: fleet.current(n) for n in fleet.nodes if n != node} == {n: c for n, c in before.items() if n != node}
    assert fleet.log(node)[-1]["outcome"] == "deployed"


def readme_ansible_command() -> str:
    """The README's `ansible-playbook` line (with its continuation lines), as written."""
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$ ansible-playbook "))
    command = [lines[start][2:]]
    while command[-1].endswith("\\"):
        start += 1
        command.append(lines[start])
    return "\n".join(command)


def test_the_readme_ansible_playbook_command_works_as_written(fleet: Fleet) -> None:
    """Registry seeded, `modelfleet bundle credit-risk@champion --json` as the README shows, then the README's
    ansible-playbook command text with the three values it prints filled in, run by bash from the checkout."""
    project = fleet.state_dir.parent
    (project / "modelfleet.toml").write_text(
        f'[paths]\nstate_dir = "{fleet.state_dir}"\n'
        f'[registry]\ntracking_uri = "sqlite:///{project}/mlflow.db"\nartifact_root = "{project}/mlartifacts"\n'
        f'[ledger]\nurl = "sqlite:///{project}/ledger.db"\n[fleet]\ninventory = "{fleet.inventory}"\n',
        encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFLEET_", "ANSIBLE_"))}
    for cmd in (["demo", "seed"], ["bundle", "credit-risk@champion", "--json"]):
        proc = subprocess.run([str(VENV_BIN / "modelfleet"), *cmd], cwd=project, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    pinned = json.loads(proc.stdout)
    command = readme_ansible_command()
    for placeholder, value in (("<version>", pinned["version"]), ("<digest>", pinned["digest"]),
                               ("<bundle>", pinned["bundle"])):
        assert placeholder in command, command
        command = command.replace(placeholder, value)
    proc = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500,
                          check=False, env=ansible_env(fleet.state_dir, fleet.inventory))
    run = parse(proc.returncode, proc.stdout + proc.stderr)
    assert run.rc == 0, run.out[-4000:]
    assert {n: fleet.current(n) for n in fleet.nodes} == dict.fromkeys(fleet.nodes, f"releases/{pinned['release']}")
