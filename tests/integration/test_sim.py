"""The simulated fleet for real: sshd + a supervisord per node on 127.0.77.x, Ansible over SSH, kill/start, down.

All tests share the session fleet ``sim_fleet`` (6 nodes, ssh port 2277) and leave it up and whole; the order
below is the story of an operator's day: up, up again, ping, a node goes dark and comes back, a reboot leaves
stale state, the CLI, and finally down (after which the fleet is started again for whoever comes next).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest

from modelfleet.cli import main
from modelfleet.core.errors import FleetError
from modelfleet.core.fleet import Inventory
from modelfleet.sim import procs
from modelfleet.sim.session import RunningFleet
from modelfleet.sim.state import FleetState, load_state
from tests.integration.conftest import SIM_PREFIX, SIM_SSH_PORT
from tests.integration.simfleet import ansible_adhoc, host_results

pytestmark = pytest.mark.integration

NODES = ["edge-cpu-01", "edge-cpu-02", "edge-cpu-03", "edge-gpu-01", "edge-arm-01", "edge-arm-02"]
ADDRESSES = [f"{SIM_PREFIX}.{i}" for i in range(1, 7)]
BUSY_PORT = SIM_SSH_PORT + 1  # a second fleet on the same addresses, only for the busy-port test


def _state(running: RunningFleet) -> FleetState:
    state = load_state(running.fleet.state_file)
    assert state is not None
    return state


def _fleet_processes(state: FleetState) -> list[psutil.Process]:
    """Every live process the fleet started (sshd, each supervisord) and their descendants."""
    found: list[psutil.Process] = []
    for ref in [state.sshd, *(n.supervisord for n in state.nodes)]:
        proc = procs.process_of(ref)
        if proc is not None:
            found += [proc, *procs.descendants(proc)]
    return found


def _runs(p: psutil.Process) -> bool:
    """Running, not merely an unreaped zombie (our detached processes are reaped by init, a moment later)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ping(running: RunningFleet) -> dict[str, str]:
    done = ansible_adhoc(running.inventory, "edge", "ansible.builtin.ping")
    return host_results(done.stdout)


@pytest.fixture
def cli_env(sim_fleet: RunningFleet, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> RunningFleet:
    """Point ``modelfleet`` (run in-process through cli.main) at the session fleet."""
    s = sim_fleet.settings
    monkeypatch.setenv("MODELFLEET_PATHS_STATE_DIR", str(s.state_dir))
    monkeypatch.setenv("MODELFLEET_FLEET_INVENTORY", str(s.fleet.inventory))
    monkeypatch.setenv("MODELFLEET_SIM_ADDRESS_PREFIX", SIM_PREFIX)
    monkeypatch.setenv("MODELFLEET_SIM_SSH_PORT", str(SIM_SSH_PORT))
    monkeypatch.setenv("MODELFLEET_SIM_NODES", s.sim.nodes)
    return sim_fleet


def test_up_starts_six_nodes_and_up_again_is_a_no_op(sim_fleet: RunningFleet) -> None:
    status = sim_fleet.status
    assert status.state == "up"
    assert [(n.name, n.address, n.node_class) for n in status.nodes] == list(
        zip(NODES, ADDRESSES, ["cpu", "cpu", "cpu", "gpu", "arm", "arm"], strict=True)
    )
    assert all(n.ssh and n.ssh_banner and n.ssh_banner.startswith("SSH-2.0-OpenSSH") for n in status.nodes)
    assert all(n.supervisor == "RUNNING" for n in status.nodes)
    for n in status.nodes:
        root = Path(n.root)
        assert (root / "opt" / "modelfleet").is_dir()
        assert (root / "etc" / "supervisor" / "conf.d").is_dir()
        assert (root / "run" / "supervisor.sock").is_socket()

    before = _state(sim_fleet)
    again = sim_fleet.fleet.up()
    assert again.already_up and again.status.state == "up"
    after = _state(sim_fleet)
    assert after.sshd == before.sshd
    assert [n.supervisord for n in after.nodes] == [n.supervisord for n in before.nodes]


def test_inventory_reads_back_as_the_fleet(sim_fleet: RunningFleet) -> None:
    inv = Inventory.load(sim_fleet.inventory)
    assert [n.name for n in inv.select("edge")] == NODES
    assert [n.name for n in inv.select("staging")] == NODES
    assert [n.name for n in inv.select("edge_arm,edge-gpu-01")] == ["edge-gpu-01", "edge-arm-01", "edge-arm-02"]
    assert {n.agent_port for n in inv} == {8080}
    assert "modelfleet_hardware_check: false" in sim_fleet.inventory.read_text()


def test_ansible_reaches_every_node_over_ssh(sim_fleet: RunningFleet) -> None:
    # Plain Ansible says at -vvv how it connects: really SSH to each node's own address and the fleet's port,
    # never a local connection.
    done = ansible_adhoc(sim_fleet.inventory, "edge", "ansible.builtin.ping", verbose=3, strategy="linear")
    assert done.returncode == 0, done.stdout + done.stderr
    assert host_results(done.stdout) == dict.fromkeys(NODES, "SUCCESS")
    assert "ESTABLISH LOCAL CONNECTION" not in done.stdout
    for address in ADDRESSES:
        assert f"<{address}> ESTABLISH SSH CONNECTION FOR USER: {_state(sim_fleet).user}" in done.stdout
        assert f"-o Port={SIM_SSH_PORT}" in done.stdout
    # Through Mitogen (ansible.cfg's strategy) it logs in over the same SSH, once per node: the fleet's sshd
    # records each login.
    log = sim_fleet.fleet.sim_dir / "ssh" / "sshd.log"
    logins_before = log.read_text().count("Accepted publickey")
    done = ansible_adhoc(sim_fleet.inventory, "edge", "ansible.builtin.ping")
    assert done.returncode == 0, done.stdout + done.stderr
    assert host_results(done.stdout) == dict.fromkeys(NODES, "SUCCESS")
    assert log.read_text().count("Accepted publickey") - logins_before >= len(NODES)


def test_ssh_sessions_have_the_fleets_own_home(sim_fleet: RunningFleet) -> None:
    # The account's shell start-up files (~/.bashrc) are not read per command: HOME is the fleet's empty folder.
    home = sim_fleet.fleet.sim_dir / "ssh" / "home"
    done = ansible_adhoc(sim_fleet.inventory, "edge", "ansible.builtin.command", "printenv HOME")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(f"\n{home}\n") == len(NODES), done.stdout


def test_sshd_offers_the_cheap_key_exchange_only(sim_fleet: RunningFleet) -> None:
    # Nodes and controller share the CPUs: every login uses curve25519, not the post-quantum hybrid (6x the CPU).
    ssh = sim_fleet.fleet.sim_dir / "ssh"
    target = f"{_state(sim_fleet).user}@{ADDRESSES[0]}"
    base = ["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={ssh / 'known_hosts'}", "-o",
            "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-i", str(ssh / "id_ed25519"), "-p", str(SIM_SSH_PORT)]
    ok = subprocess.run([*base, "-v", target, "true"], capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0 and "kex: algorithm: curve25519-sha256" in ok.stderr, ok.stderr
    pq = subprocess.run([*base, "-o", "KexAlgorithms=sntrup761x25519-sha512@openssh.com", target, "true"],
                        capture_output=True, text=True, timeout=30, check=False)
    assert pq.returncode != 0 and "no matching key exchange method" in pq.stderr, pq.stderr


def test_kill_makes_one_node_unreachable_and_start_brings_it_back(sim_fleet: RunningFleet) -> None:
    fleet = sim_fleet.fleet
    assert _ping(sim_fleet) == dict.fromkeys(NODES, "SUCCESS")  # warm ControlPersist masters on purpose
    victim = _state(sim_fleet).node("edge-cpu-02")
    assert victim is not None
    supervisord = procs.process_of(victim.supervisord)
    assert supervisord is not None

    assert fleet.kill("edge-cpu-02") is True
    assert fleet.kill("edge-cpu-02") is False, "killing a dark node again changes nothing"
    assert not _runs(supervisord)
    assert not procs.listeners_on(["127.0.77.2"])
    by_name = {n.name: n for n in fleet.status().nodes}
    assert by_name["edge-cpu-02"].killed and not by_name["edge-cpu-02"].ssh
    assert by_name["edge-cpu-02"].supervisor is None
    assert fleet.status().state == "up", "a node that was killed on purpose is not a degraded fleet"

    results = _ping(sim_fleet)
    assert results.pop("edge-cpu-02") == "UNREACHABLE!"
    assert results == dict.fromkeys([n for n in NODES if n != "edge-cpu-02"], "SUCCESS")

    assert fleet.start("edge-cpu-02") is True
    assert fleet.start("edge-cpu-02") is False
    assert _ping(sim_fleet) == dict.fromkeys(NODES, "SUCCESS")
    assert {n.name: n.supervisor for n in fleet.status().nodes}["edge-cpu-02"] == "RUNNING"


def test_programs_dropped_into_conf_d_run_under_the_node_and_die_with_it(sim_fleet: RunningFleet) -> None:
    """The "init" contract the roles rely on: conf.d program + `supervisorctl update` over SSH; kill stops it."""
    node = _state(sim_fleet).node("edge-arm-01")
    assert node is not None
    conf_d = node.root / "etc" / "supervisor" / "conf.d"
    (conf_d / "sleeper.conf").write_text("[program:sleeper]\ncommand = /bin/sleep 300\nstartsecs = 0\n")
    done = ansible_adhoc(
        sim_fleet.inventory, "edge-arm-01", "ansible.builtin.command",
        "{{ modelfleet_supervisorctl }} -c {{ modelfleet_supervisor_conf }} update",
    )
    assert done.returncode == 0, done.stdout + done.stderr

    def sleeper() -> psutil.Process | None:
        sup = procs.process_of(_state(sim_fleet).node("edge-arm-01").supervisord)  # type: ignore[union-attr]
        kids = [p for p in procs.descendants(sup) if _runs(p) and p.name() == "sleep"] if sup else []
        return kids[0] if kids else None

    assert procs.wait_until(lambda: sleeper() is not None, timeout=10)
    first = sleeper()
    assert first is not None
    sim_fleet.fleet.kill("edge-arm-01")
    assert not _runs(first), "a dark node's programs stop with its supervisord"
    sim_fleet.fleet.start("edge-arm-01")
    assert procs.wait_until(lambda: sleeper() is not None, timeout=10), "autostart brings it back with the node"
    # left running on purpose: `down` (last test) must stop programs supervisord started too


def test_all_nodes_dark_means_no_sshd_listening_anywhere(sim_fleet: RunningFleet) -> None:
    """With no ListenAddress left sshd would listen on every address: the fleet stops it instead."""
    fleet = sim_fleet.fleet
    try:
        for name in NODES:
            fleet.kill(name)
        assert _state(sim_fleet).sshd is None
        assert not procs.listeners_on(ADDRESSES)
        assert not [c for c in psutil.net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == SIM_SSH_PORT]
        fleet.start("edge-arm-02")
        assert [n.name for n in fleet.status().nodes if n.ssh] == ["edge-arm-02"]
    finally:
        for name in NODES:
            fleet.start(name)
    assert fleet.status().state == "up"


def test_stale_state_after_a_reboot_is_cleaned_on_up(sim_fleet: RunningFleet) -> None:
    """Processes vanish behind the fleet's back (a reboot, an OOM kill): `up` notices and starts afresh."""
    state = _state(sim_fleet)
    victims = _fleet_processes(state)
    for p in victims:
        p.send_signal(signal.SIGKILL)
    procs.wait_gone(victims, timeout=5)
    assert sim_fleet.fleet.status().state == "degraded"

    result = sim_fleet.fleet.up()
    assert not result.already_up and result.status.state == "up"
    fresh = _state(sim_fleet)
    assert fresh.sshd != state.sshd
    assert _ping(sim_fleet) == dict.fromkeys(NODES, "SUCCESS")


def test_cli_status_up_and_kill(cli_env: RunningFleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "up" and [n["name"] for n in data["nodes"]] == NODES
    assert all(n["ssh"] and n["supervisor"] == "RUNNING" for n in data["nodes"])

    assert main(["sim", "up"]) == 0
    out = capsys.readouterr()
    assert "already up" in out.out and "edge-arm-02" in out.out
    assert main(["sim", "up", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["already_up"] is True and len(data["nodes"]) == 6

    assert main(["sim", "kill", "edge-gpu-01"]) == 0
    assert "edge-gpu-01" in capsys.readouterr().err
    assert main(["sim", "status"]) == 1  # a node short: the fleet does not serve as it should
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("edge-gpu-01"))
    assert "killed (modelfleet sim start edge-gpu-01)" in line and "down" in line
    assert "fleet degraded: 6 nodes" in out and "1 killed" in out
    assert main(["sim", "start", "edge-gpu-01"]) == 0
    capsys.readouterr()
    assert main(["sim", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "up"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["sim", "kill", "edge-tpu-01"], "no simulated node named 'edge-tpu-01'; known nodes: edge-cpu-01"),
        (["sim", "start", "nope"], "no simulated node named 'nope'"),
        (["sim", "up", "--nodes", "cpu=x"], "count 'x'"),
        (["sim", "up", "--nodes", "tpu=1"], "unknown node class 'tpu'"),
        (["sim", "up", "--nodes", "cpu=0"], "no nodes"),
        (["sim", "up", "--nodes", "cpu=251"], "at most 250"),
        (["sim", "up", "--nodes", "cpu=1"], "already up with cpu=3,gpu=1,arm=2"),
    ],
)
def test_cli_bad_input_exits_2_with_one_clear_line(
    cli_env: RunningFleet, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    before = cli_env.fleet.state_file.read_text()
    assert main(argv) == 2
    err = capsys.readouterr().err
    first, *rest = err.strip().splitlines()
    assert first.startswith("modelfleet: ") and fragment in first, err
    assert all(r.startswith("  fix: ") for r in rest) and "Traceback" not in err
    assert cli_env.fleet.state_file.read_text() == before, "a refused command changes nothing"


def test_busy_ssh_port_fails_cleanly(make_sim_fleet: Any) -> None:
    """Someone else listens on a node address + port: `up` names it and leaves nothing running behind."""
    short = tempfile.TemporaryDirectory(prefix="mfb-")  # short: supervisord's unix socket lives below it
    tmp_path = Path(short.name)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((f"{SIM_PREFIX}.2", BUSY_PORT))
    squatter.listen()
    try:
        with pytest.raises(FleetError) as err, make_sim_fleet(SIM_PREFIX, BUSY_PORT, "cpu=2", base_dir=tmp_path):
            pass
        assert f"{SIM_PREFIX}.2:{BUSY_PORT} is already in use (pid {os.getpid()})" in err.value.message
        left = [p for p in psutil.process_iter(["cmdline"])
                if any(str(tmp_path) in part for part in p.info["cmdline"] or []) and _runs(p)]
        assert not left, "the nodes' supervisord, started before sshd, must be stopped again"
    finally:
        squatter.close()
        short.cleanup()


def test_down_stops_exactly_the_fleet_and_frees_every_address(sim_fleet: RunningFleet) -> None:
    assert _ping(sim_fleet) == dict.fromkeys(NODES, "SUCCESS")  # leaves live ssh sessions to clean up
    state = _state(sim_fleet)
    ours = _fleet_processes(state)
    assert len(ours) >= 7
    assert any(p.name() == "sleep" for p in ours), "a program under a node's supervisord is part of the fleet"
    me = psutil.Process(os.getpid())

    stopped = sim_fleet.fleet.down()
    assert "sshd" in stopped and len(stopped) == 7
    assert not [p for p in ours if _runs(p)]
    assert not procs.listeners_on(ADDRESSES)
    assert not sim_fleet.fleet.state_file.exists()
    assert sim_fleet.fleet.status().state == "down"
    assert sim_fleet.fleet.down() == [], "down twice is harmless"
    assert me.is_running()

    # leave the session fleet up for whoever comes next
    assert sim_fleet.fleet.up().status.state == "up"
