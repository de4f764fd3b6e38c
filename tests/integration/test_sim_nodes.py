"""Nodes added and removed one at a time (``modelfleet sim add|remove``), as terraform/envs/local does.

One state dir for the module; the fleet lives on 127.0.81.x with its sshd on port 2281 and is down again at the
end of every test (the last node takes sshd with it).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from modelfleet.cli import main
from modelfleet.core.errors import FleetError, UsageError
from modelfleet.core.fleet import Inventory
from modelfleet.sim import procs
from modelfleet.sim.fleet import SimFleet
from modelfleet.sim.session import fleet_settings
from modelfleet.sim.sshd import banner
from modelfleet.sim.state import load_state, save_state

pytestmark = pytest.mark.integration

PREFIX = "127.0.81"
PORT = 2281


@pytest.fixture
def fleet() -> Iterator[SimFleet]:
    # a short folder: supervisord's unix sockets live under it (107-byte limit)
    folder = Path(tempfile.mkdtemp(prefix="mfn-", dir="/tmp"))
    folder.chmod(0o755)
    settings = fleet_settings(folder / "state", address_prefix=PREFIX, ssh_port=PORT, nodes="cpu=1")
    fleet = SimFleet(settings)
    try:
        yield fleet
    finally:
        fleet.down()
        shutil.rmtree(folder, ignore_errors=True)


def _alive_fleet_processes(fleet: SimFleet) -> list[psutil.Process]:
    """Every process whose command line names this fleet's folder (sshd, supervisord, agents)."""
    marker = str(fleet.sim_dir)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_nodes_come_and_go_one_at_a_time(fleet: SimFleet) -> None:
    assert fleet.add_node("edge-cpu-01", "cpu", f"{PREFIX}.1", owner="terraform:local") is True
    assert fleet.add_node("edge-arm-01", "arm", f"{PREFIX}.161", owner="terraform:local") is True
    assert banner(f"{PREFIX}.1", PORT) and banner(f"{PREFIX}.161", PORT)
    inventory = Inventory.load(Path(fleet.settings.fleet.inventory))
    assert {n.name: n.node_class.value for n in inventory.nodes} == {"edge-cpu-01": "cpu", "edge-arm-01": "arm"}
    state = load_state(fleet.state_file)
    assert state is not None and state.spec == "cpu=1,arm=1"
    assert {n.owner for n in state.nodes} == {"terraform:local"}

    # the same request again changes nothing
    assert fleet.add_node("edge-arm-01", "arm", f"{PREFIX}.161", owner="terraform:local") is False

    # conflicting requests are refused before anything changes
    with pytest.raises(FleetError, match="already exists with class arm"):
        fleet.add_node("edge-arm-01", "gpu", f"{PREFIX}.161")
    with pytest.raises(FleetError, match="belongs to node edge-cpu-01"):
        fleet.add_node("edge-gpu-01", "gpu", f"{PREFIX}.1")
    with pytest.raises(FleetError, match="listens on port 2281"):
        fleet.add_node("edge-gpu-01", "gpu", f"{PREFIX}.81", ssh_port=PORT + 1)
    assert [n.name for n in load_state(fleet.state_file).nodes] == ["edge-cpu-01", "edge-arm-01"]  # type: ignore[union-attr]

    root = fleet.nodes_dir / "edge-cpu-01"
    assert fleet.remove_node("edge-cpu-01") is True
    assert not root.exists()
    assert banner(f"{PREFIX}.1", PORT, timeout=0.5) is None
    assert banner(f"{PREFIX}.161", PORT)
    assert [n.name for n in Inventory.load(Path(fleet.settings.fleet.inventory)).nodes] == ["edge-arm-01"]

    assert fleet.remove_node("edge-arm-01") is True
    assert fleet.status().state == "down"
    assert procs.listeners_on([f"{PREFIX}.1", f"{PREFIX}.161"]) == []
    assert _alive_fleet_processes(fleet) == []
    assert fleet.remove_node("edge-arm-01") is False


def test_a_supervisord_the_state_lost_is_stopped_on_remove(fleet: SimFleet) -> None:
    """A `sim add` killed after starting supervisord but before saving its pid must not leave it running."""
    fleet.add_node("edge-cpu-01", "cpu", f"{PREFIX}.1", owner="terraform:local")
    state = load_state(fleet.state_file)
    assert state is not None
    lost = procs.process_of(state.nodes[0].supervisord)
    assert lost is not None
    state.nodes[0].supervisord = None
    save_state(fleet.state_file, state)

    fleet.remove_node("edge-cpu-01")
    assert not procs.wait_gone([lost], timeout=10)
    assert _alive_fleet_processes(fleet) == []


def test_nodes_of_sim_up_are_not_taken_over(fleet: SimFleet) -> None:
    fleet.up("cpu=1")
    with pytest.raises(FleetError, match="started by `modelfleet sim up`"):
        fleet.add_node("edge-cpu-01", "cpu", f"{PREFIX}.1")


@pytest.mark.parametrize(("name", "address", "message"), [
    ("Edge_01", f"{PREFIX}.1", "is not a host name"),
    ("edge-cpu-01", "10.0.0.1", "not a host address in 127.0.0.0/8"),
    ("edge-cpu-01", f"{PREFIX}.255", "not a host address in 127.0.0.0/8"),
    ("edge-cpu-01", "nowhere", "not a host address in 127.0.0.0/8"),
])
def test_bad_node_requests_change_nothing(fleet: SimFleet, name: str, address: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        fleet.add_node(name, "cpu", address)
    assert not fleet.state_file.exists()


def test_cli_add_and_remove(fleet: SimFleet, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    s = fleet.settings
    for key, value in {"MODELFLEET_PATHS_STATE_DIR": s.state_dir, "MODELFLEET_FLEET_INVENTORY": s.fleet.inventory,
                       "MODELFLEET_SIM_SSH_PORT": PORT, "MODELFLEET_SIM_ADDRESS_PREFIX": PREFIX}.items():
        monkeypatch.setenv(key, str(value))
    assert main(["sim", "add", "edge-gpu-01", "--class", "gpu", "--address", f"{PREFIX}.81"]) == 0
    assert banner(f"{PREFIX}.81", PORT)
    assert main(["sim", "add", "edge-gpu-01", "--class", "cpu", "--address", f"{PREFIX}.81"]) == 2
    assert "already exists with class gpu" in capsys.readouterr().err
    assert main(["sim", "remove", "edge-gpu-01"]) == 0
    assert fleet.status().state == "down"
