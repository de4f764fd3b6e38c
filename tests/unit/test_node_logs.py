"""``modelfleet logs NODE`` and the console's ``s``: the ssh commands built from the inventory as Ansible builds
them, and the bad inputs (an unknown node, a node ssh cannot reach, a bad model name) through the real executable
and the real ssh client. A real agent log streamed from a simulated node: tests/integration/test_node_logs_live.py;
a real shell from the console in a terminal: tests/console/test_tmux.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.core.fleet import Inventory
from modelfleet.core.node_access import SshConfig, SshTarget, agent_log_script
from modelfleet.runners.node_ssh import shell_command, ssh_config
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


def test_the_shell_command_is_an_interactive_ssh_with_the_inventorys_user_port_and_key(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "edge key"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    edge:\n      vars:\n        ansible_port: 2278\n        ansible_user: edge\n"
        f"        ansible_ssh_private_key_file: '{key}'\n"
        "        ansible_ssh_common_args: '-F /dev/null -o IdentitiesOnly=yes'\n"
        "      children:\n        edge_arm:\n          hosts:\n"
        "            edge-arm-02:\n              ansible_host: 127.0.78.6\n"
        "              modelfleet_node_class: arm\n              modelfleet_root: /srv/edge root\n",
        encoding="utf-8")
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\ntimeout = 7\n[ssh_connection]\nssh_args = -o ControlMaster=auto\n"
                   f"control_path_dir = {tmp_path}/cp\ncontrol_path = %(directory)s/%%C\n", encoding="utf-8")
    node = Inventory.load(inventory).node("edge-arm-02")
    cmd = shell_command(node, SshConfig.from_ansible_cfg(cfg, env={}))
    # Ansible's order: ssh_args, port, key, user, timeout, the inventory's common args, ControlPath; then a terminal
    assert cmd == ["ssh", "-o", "ControlMaster=auto", "-o", "Port=2278", "-o", f"IdentityFile={key}",
                   "-o", "User=edge", "-o", "ConnectTimeout=7", "-F", "/dev/null", "-o", "IdentitiesOnly=yes",
                   "-o", f"ControlPath={tmp_path}/cp/%C", "-t", "127.0.78.6",
                   "cd '/srv/edge root' 2>/dev/null; exec \"${SHELL:-/bin/sh}\" -l"]
    assert "BatchMode=yes" not in cmd and "-T" not in cmd  # a shell may prompt (a passphrase) and needs a tty
    # what the console runs: the ansible.cfg of the playbooks (this checkout's), the same connection
    used = shell_command(node, ssh_config(None))
    assert {"ControlPersist=60s", "Port=2278", "User=edge", f"IdentityFile={key}"} <= set(used), used
    assert used[-3:] == ["-t", "127.0.78.6", cmd[-1]]


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
