"""Faults injected into a deploy on the shared provisioned fleet (the harness: tests/faults/harness.py).

Each case deploys ``credit-risk/2`` to edge-cpu-01 and edge-cpu-02 (one wave) from the fleet's base release
``credit-risk/1``, hits edge-cpu-02 (or the controller) at one stage of the deploy, checks what the run said,
and ends with :func:`assert_settled` (every node serving a known version, the ledger verifying and true about
every node, a rerun converging). docs/reliability.md records the cases and their outcomes;
tests/unit/test_reliability_record.py keeps that table and these tests in step.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.faults.harness import (
    NEW,
    TARGET,
    VICTIM,
    Deploy,
    assert_settled,
    cli_env,
    cmdline,
    init_paused,
    kill_controller,
    open_runs,
    reconciled_by,
    run_processes,
    start_deploy,
    wait_for,
    waiting_on_init,
)
from tests.integration.simfleet import VENV_BIN, ansible_env
from tests.provisioned import BASE_VERSION, MODEL, ProvisionedFleet

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(1800)]
#: every case resets the fleet first: each is a unit of work of its own under pytest-xdist (tests/conftest.py)
XDIST_EACH_TEST = True

#: stage -> the condition on the fleet that says the deploy reached it (on the victim node)
STAGES: dict[str, Callable[[ProvisionedFleet], bool]] = {
    "before_lock": lambda f: bool(open_runs(f)) and VICTIM not in f.locks(),
    "holding_lock": lambda f: VICTIM in f.locks(),
    "after_switch": lambda f: f.version(VICTIM) == NEW,
}


@pytest.mark.parametrize("stage", STAGES)
def test_node_dark(fleet: ProvisionedFleet, stage: str) -> None:
    """The victim goes dark (``sim kill``) at ``stage``; the run goes on around it and says which node it lost."""
    if stage == "before_lock":
        fleet.running.fleet.kill(VICTIM)
        deploy = start_deploy(fleet)
    else:
        deploy = start_deploy(fleet)
        assert wait_for(lambda: STAGES[stage](fleet), while_=lambda: deploy.running, what=stage), (
            "the deploy ended before the stage", deploy.result())
        fleet.running.fleet.kill(VICTIM)
    rc, data = deploy.result()
    hosts = data["hosts"]
    assert isinstance(hosts, dict), data
    assert rc == 1 and hosts[VICTIM]["outcome"] == "unreachable", data
    assert hosts["edge-cpu-01"]["outcome"] == "changed" and fleet.version("edge-cpu-01") == NEW, data
    switched = fleet.version(VICTIM) == NEW  # after_switch: the victim serves v2 once it is back
    assert_settled(fleet)
    # the run that switched the victim and lost it is the one the ledger now says put v2 there
    assert (data["run_id"] in reconciled_by(fleet, VICTIM)) == switched, data["run_id"]


@pytest.mark.parametrize("stage", STAGES)
def test_controller_killed(fleet: ProvisionedFleet, stage: str) -> None:
    """``kill -9`` of the ``modelfleet deploy`` process at ``stage``: its playbook dies with it, the run stays
    open in the ledger (incomplete), and the next run closes it and breaks the lock it left."""
    deploy = start_deploy(fleet)
    assert wait_for(lambda: STAGES[stage](fleet), while_=lambda: deploy.running, what=stage), (
        "the deploy ended before the stage", deploy.result())
    kill_controller(deploy)
    [run_id] = open_runs(fleet)
    wait_for(lambda: not run_processes(run_id), timeout=60, what="the run's processes to end with the controller")
    switched = fleet.version(VICTIM) == NEW
    assert switched or stage != "after_switch", fleet.versions()
    assert_settled(fleet)
    assert run_id not in open_runs(fleet)
    # the killed run recorded no node: the victim's switch reached the ledger through its journal
    assert (run_id in reconciled_by(fleet, VICTIM)) == switched


def test_two_concurrent_deploys(fleet: ProvisionedFleet) -> None:
    """Two deploys of different versions to the same nodes at once: the deploy lock lets one switch a node at a
    time, each node ends on one of the two versions, and each run's outcome says what it did there."""
    first, second = start_deploy(fleet, "credit-risk/2"), start_deploy(fleet, "credit-risk/3")
    (rc2, data2), (rc3, data3) = first.result(), second.result()
    for node in TARGET:
        outcomes = {data2["hosts"][node]["outcome"], data3["hosts"][node]["outcome"]}  # type: ignore[index]
        assert fleet.version(node) in {"2", "3"}, (node, data2, data3)
        assert "changed" in outcomes, (node, outcomes)
    assert {rc2, rc3} <= {0, 1}
    assert_settled(fleet, "credit-risk/3")


def test_damaged_bundle_in_cache(fleet: ProvisionedFleet) -> None:
    """Bytes overwritten in the controller's cached bundle: the deploy says so, rebuilds it, and ships a good one."""
    built = fleet.cli("bundle", f"credit-risk/{NEW}", "--json")
    assert built.returncode == 0, built.stdout + built.stderr
    bundle = Path(json.loads(built.stdout)["bundle"])
    with bundle.open("r+b") as fh:
        fh.seek(bundle.stat().st_size // 2)
        fh.write(b"\0" * 64)
    rc, data = start_deploy(fleet).result()
    assert rc == 0, data
    assert "rebuilding it" in str(data.get("stderr", "")) + str(data.get("warnings", "")), data
    assert_settled(fleet)


def test_damaged_release_on_the_node(fleet: ProvisionedFleet) -> None:
    """The victim keeps an unpacked release of version 2 from an earlier deploy, and bytes are written into its
    model file: the next deploy of version 2 does not switch to the damaged copy (the node checks every checksum
    before it switches): the victim is refused or gets a fresh copy, and never serves the damaged one; a refused
    victim's damaged copy is removed, so the rerun sends the bundle again and converges."""
    for ref in (f"credit-risk/{NEW}", f"credit-risk/{BASE_VERSION}"):  # leaves releases/2-* unpacked, current 1
        rc, data = start_deploy(fleet, ref, (VICTIM,)).result()
        assert rc == 0, data
    [release] = [p for p in (fleet.model_dir(VICTIM) / "releases").iterdir() if p.name.startswith(f"{NEW}-")]
    model_file = max((p for p in release.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with model_file.open("r+b") as fh:
        fh.seek(model_file.stat().st_size // 2)
        fh.write(b"\xff" * 32)
    rc, data = start_deploy(fleet).result()
    hosts = data["hosts"]
    assert isinstance(hosts, dict), data
    outcome = hosts[VICTIM]["outcome"]
    assert (rc, outcome) in {(0, "changed"), (1, "refused"), (1, "failed")}, data
    if outcome == "changed":  # a fresh copy replaced the damaged one
        assert fleet.agent_health(VICTIM).get("version") == NEW
    else:
        assert fleet.version(VICTIM) == BASE_VERSION and re.search(r"checksum|sha256|damaged", json.dumps(
            hosts[VICTIM]), re.I), hosts[VICTIM]
    assert_settled(fleet)


def test_foreign_signing_key(fleet: ProvisionedFleet) -> None:
    """The controller's key folder holds a key the fleet does not trust (not the one it was provisioned with):
    the deploy is refused before anything is signed, no run starts, no node changes; with the trusted key back,
    the rerun converges."""
    from modelfleet.core.signing import create_private_key, key_paths

    private, public = key_paths(fleet.settings.state_dir)
    keys = private.parent
    saved = keys.with_name("keys.trusted")
    shutil.copytree(keys, saved)
    runs_before = fleet.cli("ledger", "runs").stdout
    try:
        private.unlink()
        public.unlink()
        create_private_key(private)
        rc, data = start_deploy(fleet).result()
    finally:
        shutil.rmtree(keys)
        saved.rename(keys)
    assert rc == 2 and "the fleet trusts key" in json.dumps(data), data
    assert fleet.cli("ledger", "runs").stdout == runs_before
    assert fleet.versions() == dict.fromkeys(fleet.nodes, BASE_VERSION), data
    assert_settled(fleet)


def test_disk_full_on_a_node(fleet: ProvisionedFleet) -> None:
    """The victim's ``run/`` folder (where the bundle lands and the lock lives) is a 1 MiB tmpfs, filled up: the
    node is refused or fails, stays on its release and says it was the disk; the other node goes on."""
    run_dir = fleet.node_root(VICTIM) / "run"
    st = run_dir.stat()
    mount = ["mount", "-t", "tmpfs", "-o", f"size=1m,mode={st.st_mode & 0o7777:o},uid={st.st_uid},gid={st.st_gid}",
             "tmpfs", str(run_dir)]
    subprocess.run(mount, check=True)
    try:
        with (run_dir / "filler").open("wb", buffering=0) as filler, pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"\0" * 65536)
        rc, data = start_deploy(fleet).result()
    finally:
        subprocess.run(["umount", str(run_dir)], check=True)
    hosts = data["hosts"]
    assert isinstance(hosts, dict), data
    assert rc == 1 and hosts[VICTIM]["outcome"] not in {"ok", "changed"}, data
    assert re.search(r"disk|space", json.dumps(hosts[VICTIM]), re.I), hosts[VICTIM]
    assert fleet.version(VICTIM) == BASE_VERSION and hosts["edge-cpu-01"]["outcome"] == "changed"
    assert_settled(fleet)


def test_agent_killed_during_the_gate(fleet: ProvisionedFleet) -> None:
    """SIGKILL of the victim's agent once ``current`` switched (the gate is waiting for it): supervisord starts it
    again; the node ends either through the gate on the new release or reverted to the old one, and says which."""
    deploy = start_deploy(fleet)
    assert wait_for(lambda: STAGES["after_switch"](fleet), while_=lambda: deploy.running, what="the switch"), (
        "the deploy ended before the switch", deploy.result())
    agent = str(fleet.node_root(VICTIM) / "agent" / "venv" / "bin" / "modelfleet-agent")
    pids = [int(p.name) for p in Path("/proc").glob("[0-9]*") if agent in cmdline(p)]
    assert pids, f"no agent process running {agent}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    rc, data = deploy.result()
    hosts = data["hosts"]
    assert isinstance(hosts, dict), data
    outcome = hosts[VICTIM]["outcome"]
    assert (rc, outcome, fleet.version(VICTIM)) in {(0, "changed", NEW), (1, "reverted", BASE_VERSION)}, data
    assert_settled(fleet)


def test_damaged_bundle_in_transit(fleet: ProvisionedFleet) -> None:
    """Bytes of the bundle change between the controller and the victim: written into the pushed copy once it
    lands complete in the victim's ``run/`` (the push is done, the node has not verified it yet). The node checks
    the signature and every checksum before it unpacks or switches, so it refuses the copy: the run fails that host
    and says why, the ledger records the host failed with that reason, the victim stays on its release, and the
    rerun pushes the bundle again and converges.

    The window is held open, not raced: the victim's supervisord is paused (SIGSTOP) before the deploy starts, and
    the role's agent step, which comes after the push and before the verifying step (roles/model_release/tasks/
    release.yml: push, the model_agent role's ``supervisorctl``, then ``modelfleet_release action=deploy``),
    waits on it. The bytes are written once the copy is there and that step is seen waiting; then supervisord
    goes on (SIGCONT)."""
    built = fleet.cli("bundle", f"{MODEL}/{NEW}", "--json")
    assert built.returncode == 0, built.stdout + built.stderr
    sent = Path(json.loads(built.stdout)["bundle"])
    incoming, size = fleet.node_root(VICTIM) / "run" / sent.name, sent.stat().st_size
    deploy: Deploy | None = None
    try:
        with init_paused(fleet, VICTIM) as conf:
            deploy = start_deploy(fleet)
            running = deploy
            assert wait_for(lambda: incoming.is_file() and waiting_on_init(conf), while_=lambda: running.running,
                            what="the pushed bundle on the victim, its run held at the agent step"), (
                "the deploy ended before it pushed the bundle to the victim", deploy.result())
            assert incoming.stat().st_size == size, (incoming.stat().st_size, size)  # the push lands by a rename
            with incoming.open("r+b") as fh:
                fh.seek(size // 2)
                fh.write(b"\xff" * 64)
        rc, data = deploy.result()
    finally:
        if deploy is not None and deploy.running:
            kill_controller(deploy)
    hosts = data["hosts"]
    assert isinstance(hosts, dict), data
    assert rc == 1 and hosts[VICTIM]["outcome"] == "failed", data
    reason = re.compile(r"refused on edge-cpu-02: .*(sha256|checksum|gzip|damaged|corrupt|signature|not a readable)",
                        re.I)
    assert reason.search(str(hosts[VICTIM]["message"])), hosts[VICTIM]
    assert hosts["edge-cpu-01"]["outcome"] == "changed" and fleet.version(VICTIM) == BASE_VERSION, data
    assert not any(p.name.startswith(f"{NEW}-") for p in (fleet.model_dir(VICTIM) / "releases").iterdir())
    assert not incoming.exists() and VICTIM not in fleet.locks()  # the refused copy and the lock are gone
    from modelfleet.core.ledger import Ledger

    with Ledger(fleet.settings.ledger.url) as ledger:
        [event] = ledger.events(run_id=str(data["run_id"]), node=VICTIM, action="node_deploy")
    assert event.outcome == "failed" and reason.search(str(event.details.get("message"))), event.details
    assert_settled(fleet)


def test_registry_unreachable_mid_run(fleet: ProvisionedFleet) -> None:
    """The registry is a real MLflow tracking server (``mlflow server`` over the project's store), and it stops:

    * once a deploy's run is open: the run completes (it was pinned, bundled and signed before it started; no
      step of a run asks the registry), and the ledger records it ok;
    * then ``modelfleet deploy`` is refused before any run starts, naming the registry and the fix; the ledger
      gains nothing and no node changes;
    * a plain ``ansible-playbook playbooks/deploy.yml`` (which pins inside its run, on the controller) fails in its
      first play, before any node is touched; its output and the ledger's record of the run name the registry.

    With the registry back, the rerun converges."""
    toml = fleet.project / "modelfleet.toml"
    text = toml.read_text(encoding="utf-8")
    embedded = f'tracking_uri = "sqlite:///{fleet.project}/mlflow.db"'
    assert embedded in text, text
    with mlflow_server(fleet.project) as (url, stop):
        toml.write_text(text.replace(embedded, f'tracking_uri = "{url}"'), encoding="utf-8")
        try:
            deploy = start_deploy(fleet, f"{MODEL}@champion")  # champion -> 2
            assert wait_for(lambda: bool(open_runs(fleet)), while_=lambda: deploy.running, what="the run to open"), (
                "the deploy ended before its run opened", deploy.result())
            stop()
            rc, data = deploy.result()
            assert rc == 0 and {n: fleet.version(n) for n in TARGET} == dict.fromkeys(TARGET, NEW), data
            runs = _runs(fleet)
            rc, data = start_deploy(fleet, f"{MODEL}@challenger").result()
            said = json.dumps(data)
            assert rc == 2 and f"MLflow registry at {url} is unreachable" in said, data
            assert "start the tracking server" in said and "registry.tracking_uri" in said, data
            assert _runs(fleet) == runs and {n: fleet.version(n) for n in TARGET} == dict.fromkeys(TARGET, NEW)
            env = {**cli_env(), **ansible_env(), "MODELFLEET_CONFIG": str(toml)}
            plain = subprocess.run(
                [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.running.inventory),
                 str(REPO_ROOT / "playbooks" / "deploy.yml"), "-e", f"model_release_model={MODEL}",
                 "-e", "model_release_version=3", "--limit", ",".join(TARGET)],
                cwd=fleet.project, env=env, capture_output=True, text=True, timeout=600, check=False)
            assert plain.returncode != 0 and f"MLflow registry at {url} is unreachable" in plain.stdout, (
                plain.stdout[-4000:] + plain.stderr[-2000:])
            assert "no node was touched" in plain.stdout
            assert {n: fleet.version(n) for n in TARGET} == dict.fromkeys(TARGET, NEW)
            [new] = [r for r in _runs(fleet) if r not in runs]
            assert new[1] == "failed" and f"MLflow registry at {url} is unreachable" in new[2], new
        finally:
            toml.write_text(text, encoding="utf-8")
    assert_settled(fleet)


def _runs(fleet: ProvisionedFleet) -> list[tuple[str, str | None, str]]:
    """(run id, outcome, run_end's problem) of every run in the project's ledger."""
    from modelfleet.core.ledger import Ledger

    with Ledger(fleet.settings.ledger.url) as ledger:
        ends = {e.run_id: e for e in ledger.events(action="run_end")}
        return [(r.run_id, r.outcome, str(ends[r.run_id].details.get("problem") if r.run_id in ends else ""))
                for r in ledger.runs()]


@contextlib.contextmanager
def mlflow_server(project: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A real ``mlflow server`` over the project's tracking store (its SQLite database; artifacts stay where the
    store says), on a loopback address of this network namespace: (its URL, a function that stops it)."""
    host = "127.0.78.250"
    with socket.socket() as s:
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    url, log = f"http://{host}:{port}", project / "mlflow-server.log"
    cmd = [str(VENV_BIN / "mlflow"), "server", "--host", host, "--port", str(port), "--workers", "1",
           "--allowed-hosts", f"{host},{host}:{port}", "--backend-store-uri", f"sqlite:///{project}/mlflow.db",
           "--artifacts-destination", str(project / "mlflow-server-artifacts")]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=project, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    try:
        def healthy() -> bool:
            assert proc.poll() is None, f"mlflow server exited {proc.returncode}: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(healthy, timeout=240, what=f"mlflow server at {url}")
        yield url, stop
    finally:
        stop()
