"""Drive the console in a real terminal (tmux): open, switch views, filter, start a health-check, quit; and on the
shared provisioned fleet, ``s`` on a node: a real ssh shell to it, and the console back when the shell exits."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO_ROOT

if TYPE_CHECKING:
    from tests.provisioned import ProvisionedFleet


@pytest.fixture(autouse=True)
def _tmux_installed() -> None:
    # `make test` installs tmux (scripts/system-deps.sh test); a missing tmux is a failed set-up, not a skip.
    assert shutil.which("tmux"), "tmux is not installed; fix: sudo apt-get install -y tmux (make test does it as root)"

APP = Path(__file__).with_name("tmux_app.py")


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        """Send keys one at a time: an Escape followed at once by a key would read as Alt+key."""
        if keys and keys[0] == "-l":
            self.run("send-keys", "-t", self.name, *keys)
            return
        for key in keys:
            self.run("send-keys", "-t", self.name, key)
            time.sleep(0.15)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def wait_until(self, cond: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        """Poll the pane until ``cond(screen)`` holds (a real terminal has no 'settled' signal to wait on)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if cond(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{what}: not seen within {timeout:g}s; screen was:\n{screen}")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        return self.wait_until(lambda s: text in s, f"{text!r} never appeared", timeout)

    def wait_for_gone(self, text: str, timeout: float = 20.0) -> str:
        return self.wait_until(lambda s: text not in s, f"{text!r} never went away", timeout)

    def pane_dead(self) -> bool:
        out = self.run("list-panes", "-t", self.name, "-F", "#{pane_dead} #{pane_dead_status}").split()
        return out[0] == "1"


@contextlib.contextmanager
def tmux_session(prefix: str, cmd: str) -> Iterator[Tmux]:
    """``cmd`` (a shell line) in a detached 160x48 tmux session, killed on exit.

    The session has a tmux server of its own (``-L NAME``), started by this process: a server already running for
    someone else (another network namespace, another environment) would run the command in its world, not ours.
    The command runs without COLUMNS/LINES: a tmux server keeps the environment it was started with, and a
    console finding COLUMNS=80 LINES=24 there would draw at that size whatever the window's."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    line = f"env -u COLUMNS -u LINES bash -c {shlex.quote(cmd)}"
    tmux = ["tmux", "-L", name]
    subprocess.run([*tmux, "new-session", "-d", "-s", name, "-x", "160", "-y", "48", line], check=True)
    subprocess.run([*tmux, "set-option", "-t", name, "window-size", "manual"], check=False)
    subprocess.run([*tmux, "resize-window", "-t", name, "-x", "160", "-y", "48"], check=False)
    try:
        yield Tmux(name)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    with tmux_session("mf-console", f"cd {REPO_ROOT} && {sys.executable} {APP}; echo EXIT=$?; sleep 30") as t:
        yield t


def test_console_in_a_real_terminal(tmux: Tmux) -> None:
    """Every step waits for its screen text (polling), never for a fixed time; any miss fails the test."""
    screen = tmux.wait_for("edge-gpu-04")
    assert "modelfleet > Fleet" in screen and "UNREACHABLE" in screen and "STALE" in screen

    tmux.keys("1")
    # (the summary line and the rows may reach the terminal in different frames)
    tmux.wait_until(lambda s: "registered models" in s and "champion→v3" in s, "the models listed")

    tmux.keys("Enter")
    screen = tmux.wait_for("versions of credit-risk")
    assert "modelfleet > Models > credit-risk" in screen

    tmux.keys("Escape")
    tmux.wait_for_gone("versions of credit-risk")
    tmux.keys("4")
    tmux.wait_for("chain verified")
    tmux.wait_for("6 events shown")

    tmux.keys(":")  # straight after switching: the command line opens, nothing is typed into a filter box
    tmux.wait_for(":command")
    tmux.keys("-l", "fleet")
    tmux.keys("Enter")
    screen = tmux.wait_for("modelfleet > Fleet")
    assert "modelfleet > Ledger" not in screen
    tmux.keys("/")
    tmux.wait_for("filter (words must all match")
    tmux.keys("-l", "gpu")
    tmux.wait_until(lambda s: "edge-gpu-04" in s and "edge-cpu-01" not in s, "only the gpu node listed")
    tmux.keys("Escape", "Escape")
    tmux.wait_for("edge-cpu-01")

    tmux.keys("h")
    screen = tmux.wait_for("equivalent commands")
    assert "modelfleet health --limit" in screen and "playbooks/healthcheck.yml" in screen
    tmux.keys("C-r")  # launch: opens the confirmation, never runs by itself
    screen = tmux.wait_for("Start healthcheck on edge-gpu-04?")
    assert "Type edge-gpu-04 to confirm" in screen  # a production node: typed confirmation
    tmux.keys("-l", "edge-gpu-04")
    tmux.keys("Enter")
    # the summary line and the hosts table are redrawn separately: wait for both
    tmux.wait_until(lambda s: " ok\n" in s and "1 ok" in s and "edge-gpu-04" in s, "the run ending ok",
                    timeout=30)

    tmux.keys("C-q")
    screen = tmux.wait_for("EXIT=0")
    assert "console exited cleanly" in screen


@pytest.mark.integration
@pytest.mark.slow
def test_s_opens_a_real_ssh_shell_on_the_node_and_the_console_comes_back(
        provisioned_fleet: ProvisionedFleet) -> None:
    """The real console (real services) on the shared provisioned fleet: ``s`` on a node suspends the console and
    runs ssh with the inventory's user, port and key; in the shell a command runs on that node (its sshd address
    and port, its modelfleet root as the working folder, a marker file there); ``exit`` brings the console back."""
    from tests.integration.simfleet import VENV_BIN

    fleet = provisioned_fleet
    fleet.reset()
    node_name = "edge-arm-02"
    node = fleet.inventory.node(node_name)
    host, port, user = node.vars["ansible_host"], node.vars["ansible_port"], node.vars["ansible_user"]
    marker = uuid.uuid4().hex
    marker_file = fleet.node_root(node_name) / ".mf-shell-marker"
    assert Path(node.root) == fleet.node_root(node_name)  # the shell starts there (core/node_access.shell_script)
    marker_file.write_text(marker + "\n", encoding="utf-8")
    # the project's modelfleet.toml decides, as for the CLI (tests/integration/simfleet.run_cli); ssh's control
    # sockets in a folder of this fleet's: ~/.ansible/cp is shared by every network namespace on this machine, and
    # a master left there by a run against another fleet on the same addresses would carry the shell to that one
    unset = " ".join(f"-u {k}" for k in os.environ
                     if k.startswith(("MODELFLEET_", "ANSIBLE_")) and k != "MODELFLEET_WHEELHOUSE_DIR")
    (fleet.project / "cp").mkdir(exist_ok=True)
    control = shlex.quote(f"ANSIBLE_SSH_CONTROL_PATH_DIR={fleet.project / 'cp'}")
    cmd = (f"cd {shlex.quote(str(fleet.project))} && env {unset} {control} {VENV_BIN / 'modelfleet'}; "
           "echo EXIT=$?; sleep 30")
    try:
        with tmux_session("mf-shell", cmd) as tmux:
            tmux.wait_until(lambda s: "modelfleet > Fleet" in s and node_name in s, "the fleet listed", timeout=120)
            tmux.keys("/")
            tmux.wait_for("filter (words must all match")
            tmux.keys("-l", node_name)
            tmux.wait_until(lambda s: node_name in s and "edge-cpu-01" not in s, f"only {node_name} listed")
            tmux.keys("Escape", "Enter")  # close the filter (it stays applied), open the node under the cursor
            tmux.wait_for(f"modelfleet > Fleet > {node_name}")

            tmux.keys("s")
            tmux.wait_for(f"a shell on {node_name}; exit it to return to the console", timeout=30)
            probe = 'echo "MF[$(id -un)|$SSH_CONNECTION|$(cat .mf-shell-marker)|$PWD]"'
            tmux.keys("-l", probe)
            tmux.keys("Enter")
            expected = re.compile(rf"MF\[(\S+)\|\S+ \d+ {re.escape(str(host))} {port}\|{marker}\|(\S+)\]")
            screen = tmux.wait_until(lambda s: expected.search(s) is not None, "the command's output on the node",
                                     timeout=30)
            found = expected.search(screen)
            assert found is not None and found.group(1) == str(user), screen  # the inventory's user
            assert found.group(2) == node.root, screen  # the node's modelfleet root

            tmux.keys("-l", "exit")
            tmux.keys("Enter")
            screen = tmux.wait_until(lambda s: f"modelfleet > Fleet > {node_name}" in s
                                     and f"shell on {node_name} ended" in s, "the console back", timeout=30)
            assert marker not in screen  # the console redrew its own screen over the shell's
            tmux.keys("q")  # off the root: back to the fleet
            tmux.wait_until(lambda s: "modelfleet > Fleet" in s and f"Fleet > {node_name}" not in s, "the fleet")
            tmux.keys("q")  # at the root: quit
            tmux.wait_for("EXIT=0", timeout=30)
    finally:
        marker_file.unlink(missing_ok=True)
