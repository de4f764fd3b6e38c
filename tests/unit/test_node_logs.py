"""``modelfleet logs NODE``: the ssh command built from the inventory as Ansible builds it, and the bad inputs
(an unknown node, a node ssh cannot reach, a bad model name) through the real executable and the real ssh client.
The log of a live node is streamed in the console's Pilot tests on fixed lines (tests/console/test_habits.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.core.fleet import Inventory
from modelfleet.core.node_access import SshConfig, SshTarget, agent_log_script
from tests.unit.cli_support import closed_port, run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("logs")
    inventory = folder / "inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    edge:\n      children:\n        edge_cpu:\n          hosts:\n"
        "            edge-cpu-01:\n              ansible_host: 127.0.0.1\n"
        f"              ansible_port: {closed_port()}\n              ansible_user: edge\n"
        "              ansible_ssh_private_key_file: ~/keys/edge\n              modelfleet_node_class: cpu\n",
        encoding="utf-8")
    return folder, {"MODELFLEET_FLEET_INVENTORY": str(inventory),
                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(folder / "cp")}


def test_the_ssh_command_carries_the_inventorys_connection(project: tuple[Path, dict[str, str]]) -> None:
    _folder, env = project
    node = Inventory.load(Path(env["MODELFLEET_FLEET_INVENTORY"])).node("edge-cpu-01")
    cmd = SshTarget.of(node).command(SshConfig(control_path=None, timeout_s=5), "true")
    assert cmd[0] == "ssh" and cmd[-2:] == ["127.0.0.1", "true"]
    assert {"User=edge", "ConnectTimeout=5", "BatchMode=yes"} <= set(cmd)
    assert any(a.startswith("Port=") for a in cmd) and str(Path("~/keys/edge").expanduser()) in " ".join(cmd)
    assert "tail -n 20 -F" in agent_log_script(node, model="credit-risk", lines=20, follow=True)


@pytest.mark.parametrize(
    ("args", "message", "fix"),
    [
        (["logs", "edge-gpu-09"], "modelfleet: no node named 'edge-gpu-09' in", "  fix: pick one of the known nodes"),
        (["logs", "edge-cpu-01"], "modelfleet: cannot reach edge-cpu-01 over ssh", "  fix: "),
        (["logs", "edge-cpu-01", "--model", "../etc"], "modelfleet: '../etc' is not a model name",
         "  fix: give a registered model's name"),
    ],
)
def test_bad_input(project: tuple[Path, dict[str, str]], args: list[str], message: str, fix: str) -> None:
    folder, env = project
    proc = run(folder, *args, **env)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 2 and lines[0].startswith(message) and lines[1].startswith(fix), proc.stderr
    assert proc.stdout == ""
