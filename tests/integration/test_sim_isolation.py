"""Two simulated fleets side by side (own prefixes, ports and temp folders), provisioned at the same time through
nothing but their generated inventories (what the CLI's runs read): nothing outside their state folders changes -
no system user or group, nothing in /etc/ansible or /etc/systemd, no /opt/modelfleet - and a second provision
reports changed=0 on every node of both.

Other engineers' fleets may provision on this machine meanwhile, so /etc/ansible is checked by what it says
(nothing there may name either fleet), the account files byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from importlib.util import cache_from_source
from pathlib import Path
from typing import Any

import pytest

from modelfleet.core.signing import load_or_create_signing_key
from modelfleet.sim.session import RunningFleet
from tests.conftest import REPO_ROOT
from tests.integration.test_playbooks import RECAP, VENV_BIN, ansible_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3000)]

FLEETS = (("127.0.98", 2298), ("127.0.99", 2299))
ACCOUNTS = [Path("/etc") / name for name in ("passwd", "group", "shadow", "gshadow")]
TREES = [Path("/etc/systemd/system"), Path("/opt/modelfleet"), Path("/etc/supervisor")]


@pytest.fixture(scope="module")
def fleets(make_sim_fleet: Any) -> Iterator[list[RunningFleet]]:
    with contextlib.ExitStack() as stack:
        running = [stack.enter_context(make_sim_fleet(prefix, port, "cpu=1,arm=1")) for prefix, port in FLEETS]
        for fleet in running:
            load_or_create_signing_key(Path(fleet.state_dir))
        yield running


def outside() -> dict[str, Any]:
    """What provisioning a simulated fleet must not change, outside its state folder."""
    state: dict[str, Any] = {}
    for path in ACCOUNTS:
        state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    for tree in TREES:
        state[str(tree)] = sorted((str(p), p.stat().st_mtime) for p in tree.rglob("*")) if tree.exists() else None
    return state


def mentions(fleet: RunningFleet, folder: Path = Path("/etc/ansible")) -> list[str]:
    """Files under ``folder`` that name the fleet's state folder (what one fleet's facts would say)."""
    needle = str(Path(fleet.state_dir).resolve()).encode()
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()] if folder.exists() else []


def provision(fleets: list[RunningFleet]) -> list[tuple[int, str]]:
    """provision.yml on every fleet at once, each given only its generated inventory."""
    procs = []
    for fleet in fleets:
        state = Path(fleet.state_dir)
        env = ansible_env(state, Path(fleet.inventory))
        env["MODELFLEET_LEDGER_URL"] = f"sqlite:///{state}/ledger.db"
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory), str(REPO_ROOT / "playbooks" /
               "provision.yml"), "-e", f"modelfleet_state_dir={state}"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return [(p.wait(timeout=1800), p.stdout.read() if p.stdout else "") for p in procs]


def test_two_fleets_provision_side_by_side_touching_nothing_outside_their_folders(
        fleets: list[RunningFleet]) -> None:
    before = outside()
    first = provision(fleets)
    for rc, out in first:
        assert rc == 0, out[-4000:]
    assert outside() == before
    for fleet in fleets:
        assert mentions(fleet) == [], mentions(fleet)
        wheelhouse = Path(ansible_env(Path(fleet.state_dir), Path(fleet.inventory))["MODELFLEET_WHEELHOUSE_DIR"])
        seed = wheelhouse / f"{os.uname().machine}-seed-venv" / "lib" / "python3.11" / "site-packages"
        for node in fleet.fleet.status().nodes:
            root = Path(node.root) / "opt" / "modelfleet"
            assert f"root = {root}" in (root / "etc" / "facts.d" / "modelfleet.fact").read_text()
            # the node's venv hard-links the controller's seed (one unpack per machine, not per node), in folders
            # of its own: what a node writes (bytecode, a reinstalled package) never reaches another node
            site = root / "agent" / "venv" / "lib" / "python3.11" / "site-packages"
            assert os.path.samefile(site / "numpy" / "__init__.py", seed / "numpy" / "__init__.py")
            assert not os.path.samefile(site / "numpy", seed / "numpy")
            assert not (seed / "modelfleet").exists() and (site / "modelfleet" / "agent").is_dir()
            # the seed's bytecode too (compiled once per machine, not by every node's prime step)
            assert os.path.samefile(cache_from_source(str(site / "numpy" / "__init__.py")),
                                    cache_from_source(str(seed / "numpy" / "__init__.py")))
            # no ensurepip per node: pip came with the seed's packages; bin/pip is the node's own launcher
            assert os.path.samefile(site / "pip" / "__init__.py", seed / "pip" / "__init__.py")
            pip = root / "agent" / "venv" / "bin" / "pip"
            assert pip.read_text().splitlines()[0] == f"#!{root}/agent/venv/bin/python"
            version = subprocess.run([str(pip), "--version"], capture_output=True, text=True, check=True).stdout
            assert str(site) in version, version
    second = provision(fleets)
    for (rc, out), fleet in zip(second, fleets, strict=True):
        assert rc == 0, out[-4000:]
        recap = {m[1]: int(m[3]) for m in RECAP.finditer(out)}
        nodes = {n.name for n in fleet.fleet.status().nodes}
        assert {h: c for h, c in recap.items() if h in nodes} == dict.fromkeys(nodes, 0), out[-4000:]
    assert outside() == before


def test_the_generated_inventory_carries_the_fleets_own_settings(fleets: list[RunningFleet]) -> None:
    import yaml

    edge = yaml.safe_load(Path(fleets[0].inventory).read_text())["all"]["children"]["edge"]["vars"]
    assert edge["modelfleet_manage_user"] is False
    assert edge["modelfleet_venv_seed"] is True
    assert edge["modelfleet_facts_dir"] == "{{ modelfleet_root }}/etc/facts.d"
    assert os.path.isabs(edge["modelfleet_supervisorctl"]) and edge["modelfleet_hardware_check"] is False
