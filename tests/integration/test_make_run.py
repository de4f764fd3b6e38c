"""`make run`, the README's first command, in a real terminal (tmux), on real parts end to end.

It seeds the demo registry, brings a simulated fleet up, provisions it, deploys `credit-risk@champion` and opens
the console; the test then reads the live fleet off the screen (both nodes serving the champion, probed over
HTTP), the registry and the verified ledger, and quits. (Filters and runs launched from the console are driven in
tests/console: test_tmux.py and test_deploy_live.py.) Everything lives in a state dir of its
own on a small fleet (MODELFLEET_* overrides), so the checkout's own `.modelfleet/` is never touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.console.test_tmux import Tmux, tmux_session

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VENV_BIN = Path(sys.executable).parent


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MODELFLEET_"))}
    env.update({
        "MODELFLEET_PATHS_STATE_DIR": str(state),
        "MODELFLEET_REGISTRY_TRACKING_URI": f"sqlite:///{state}/mlflow.db",
        "MODELFLEET_REGISTRY_ARTIFACT_ROOT": str(state / "mlartifacts"),
        "MODELFLEET_REGISTRY_CACHE_DIR": str(state / "cache"),
        "MODELFLEET_LEDGER_URL": f"sqlite:///{state}/ledger.db",
        "MODELFLEET_FLEET_INVENTORY": str(state / "sim" / "inventory.yml"),
        "MODELFLEET_SIM_NODES": "cpu=1,arm=1",
        "MODELFLEET_SIM_ADDRESS_PREFIX": "127.0.93",
        "MODELFLEET_SIM_SSH_PORT": "2293",
        "MODELFLEET_CONSOLE_REFRESH_S": "2",
        "MODELFLEET_WHEELHOUSE_DIR": os.environ.get("MODELFLEET_WHEELHOUSE_DIR", "/tmp/modelfleet-wheelhouse"),
        "TERM": "xterm-256color",
    })
    return env


@pytest.fixture
def state() -> Iterator[Path]:
    # A short folder of its own under /tmp (supervisord's unix sockets live under it), 0755: the agents run as
    # the nodes' service user, who must reach the node roots (pytest's own tmp folders are 0700).
    with tempfile.TemporaryDirectory(prefix="mf-run-") as tmp:
        Path(tmp).chmod(0o755)
        path = Path(tmp) / "state"
        try:
            yield path
        finally:
            subprocess.run([str(VENV_BIN / "modelfleet"), "sim", "down"], env=_env(path), cwd=REPO_ROOT,
                           capture_output=True, timeout=120, check=False)


@pytest.fixture
def tmux(state: Path) -> Iterator[Tmux]:
    assert shutil.which("tmux"), "tmux is not installed; fix: sudo apt-get install -y tmux (make test does it)"
    assert shutil.which("make"), "make is not installed; fix: sudo apt-get install -y make"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in _env(state).items() if k.startswith("MODELFLEET_"))
    # make's output goes to the pane (the console needs the terminal itself: no pipe)
    with tmux_session("mf-make-run", f"cd {REPO_ROOT} && env {exports} make run; echo EXIT=$?; sleep 60") as t:
        yield t


@pytest.mark.timeout(1800)
def test_make_run_reaches_a_live_fleet_with_demo_data(tmux: Tmux, state: Path) -> None:
    def console_up(screen: str) -> bool:
        if "EXIT=" in screen:
            history = tmux.run("capture-pane", "-p", "-S", "-3000", "-t", tmux.name)
            raise AssertionError(f"make run ended before the console opened:\n{history[-6000:]}")
        return "modelfleet > Fleet" in screen

    tmux.wait_until(console_up, "the console after make run", timeout=1500)
    size = tmux.run("display-message", "-p", "-t", tmux.name, "#{window_width}x#{window_height}").strip()
    print(f"console up in a {size} window")  # shown with the test's output on a failure
    # both nodes serve the champion (v2 in the demo registry) and answer their probes
    # (and the console uses the whole 160-column window: the footer's last keys only fit there)
    screen = tmux.wait_until(lambda s: s.count("credit-risk@2") == 2 and "2 nodes" in s and "ok" in s
                             and "health-check" in s, "both nodes serving credit-risk@2", timeout=60)
    assert "edge-cpu-01" in screen and "edge-arm-01" in screen and "127.0.93.1" in screen

    tmux.keys("1")
    tmux.wait_until(lambda s: "1 registered model" in s and "credit-risk" in s and "Demo after the lending" in s,
                    "the demo model with its description (no column cut short)")
    tmux.keys("Enter")
    tmux.wait_until(lambda s: "versions of credit-risk" in s and "champion" in s and "challenger" in s,
                    "the versions with their aliases", timeout=30)
    tmux.keys("Escape")
    tmux.wait_for_gone("versions of credit-risk")

    tmux.keys("4")
    tmux.wait_until(lambda s: "chain verified" in s and "run_start" in s, "the ledger, verified", timeout=30)

    tmux.keys("C-q")
    tmux.wait_for("EXIT=0", timeout=30)

    verify = subprocess.run([str(VENV_BIN / "modelfleet"), "ledger", "verify"], env=_env(state), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    runs = subprocess.run([str(VENV_BIN / "modelfleet"), "ledger", "runs"], env=_env(state), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False).stdout
    for kind in ("provision", "deploy"):
        assert kind in runs, runs
