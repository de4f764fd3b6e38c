"""Drive the console in a real terminal (tmux): open, switch views, filter, start a health-check, quit."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def _tmux_installed() -> None:
    # `make test` installs tmux (scripts/system-deps.sh test); a missing tmux is a failed set-up, not a skip.
    assert shutil.which("tmux"), "tmux is not installed; fix: sudo apt-get install -y tmux (make test does it as root)"

APP = Path(__file__).with_name("tmux_app.py")


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout

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

    The command runs without COLUMNS/LINES: a tmux server keeps the environment it was started with, and a
    console finding COLUMNS=80 LINES=24 there would draw at that size whatever the window's."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    line = f"env -u COLUMNS -u LINES bash -c {shlex.quote(cmd)}"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "48", line], check=True)
    subprocess.run(["tmux", "set-option", "-t", name, "window-size", "manual"], check=False)
    subprocess.run(["tmux", "resize-window", "-t", name, "-x", "160", "-y", "48"], check=False)
    try:
        yield Tmux(name)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, check=False)


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
