"""`make run`, the README's first command, in a real terminal (tmux), on real parts end to end, twice.

The first `make run` seeds the demo registry, brings a simulated fleet up, provisions it (showing each task and
each host as it finishes, with elapsed time), deploys `credit-risk@champion` and opens the console; the test reads
the live fleet off the screen, the registry and the verified ledger, and quits. `modelfleet describe` then reads
the same live fleet. The operator moves one node to another version, and a second `make run` must reopen the
console on the fleet as it is: nothing provisioned or deployed again, the moved node keeps its version.

The tests run in file order on one fleet (the module's): each starts from the state the previous one left.
Everything lives in a state dir of its own on a small fleet (MODELFLEET_* overrides), so the checkout's own
`.modelfleet/` is never touched. (Filters and runs launched from the console are driven in tests/console:
test_tmux.py and test_deploy_live.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
NODES = ("edge-cpu-01", "edge-arm-01")


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


def _cli(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "modelfleet"), *args], env=_env(state), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def state() -> Iterator[Path]:
    # A short folder of its own under /tmp (supervisord's unix sockets live under it), 0755: the agents run as
    # the nodes' service user, who must reach the node roots (pytest's own tmp folders are 0700).
    with tempfile.TemporaryDirectory(prefix="mf-run-") as tmp:
        Path(tmp).chmod(0o755)
        path = Path(tmp) / "state"
        try:
            yield path
        finally:
            _cli(path, "sim", "down", timeout=120)


def _make_run(state: Path) -> contextlib.AbstractContextManager[Tmux]:
    assert shutil.which("tmux"), "tmux is not installed; fix: sudo apt-get install -y tmux (make test does it)"
    assert shutil.which("make"), "make is not installed; fix: sudo apt-get install -y make"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in _env(state).items() if k.startswith("MODELFLEET_"))
    # make's output goes to the pane (the console needs the terminal itself: no pipe)
    return tmux_session("mf-make-run", f"cd {REPO_ROOT} && env {exports} make run; echo EXIT=$?; sleep 60")


def _history(tmux: Tmux) -> str:
    return tmux.run("capture-pane", "-p", "-J", "-S", "-5000", "-t", tmux.name)


def _wait_for_console(tmux: Tmux) -> None:
    def console_up(screen: str) -> bool:
        if "EXIT=" in screen:
            raise AssertionError(f"make run ended before the console opened:\n{_history(tmux)[-6000:]}")
        return "modelfleet > Fleet" in screen

    tmux.wait_until(console_up, "the console after make run", timeout=1500)


@pytest.mark.timeout(1800)
def test_first_make_run_shows_progress_and_reaches_a_live_fleet(state: Path) -> None:
    with _make_run(state) as tmux:
        _wait_for_console(tmux)
        size = tmux.run("display-message", "-p", "-t", tmux.name, "#{window_width}x#{window_height}").strip()
        print(f"console up in a {size} window")  # shown with the test's output on a failure
        # both nodes serve the champion (v2 in the demo registry) and answer their probes
        # (and the console uses the whole 160-column window: the key bar's last key, the palette, only fits there)
        screen = tmux.wait_until(lambda s: s.count("credit-risk@2") == 2 and "2 nodes" in s and "ok" in s
                                 and "^p palette" in s, "both nodes serving credit-risk@2", timeout=60)
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
        make_output = _history(tmux)  # make's own output is back once the console left the alternate screen

    # provisioning said what it was doing as it went: tasks with elapsed time, then each host as it finished
    assert re.search(r"\[\s*\d+:\d\d\] == Provision edge nodes \(2 hosts\)", make_output), make_output[-6000:]
    assert re.search(r"\[\s*\d+:\d\d\] Install \| agent venv: \d+ \w+", make_output), make_output[-6000:]
    for node in NODES:
        assert re.search(rf"\[\s*\d+:\d\d\]\s+{node}\s+(ok|changed)\s+ok=\d+ changed=\d+\s+finished at \d+:\d\d",
                         make_output), make_output[-6000:]
    verify = _cli(state, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    runs = _cli(state, "ledger", "runs").stdout
    for kind in ("provision", "deploy"):
        assert kind in runs, runs


def test_demo_traffic_shows_the_injected_drift(state: Path) -> None:
    """make run left gentle traffic running with income +25% on edge-cpu-01: drift on that node names income and
    nothing else (exit 1), the other node has none (exit 0)."""
    import time

    deadline = time.monotonic() + 300
    while True:
        drift = _cli(state, "drift", "credit-risk", "--node", "edge-cpu-01", "--window", "1h", "--json")
        data = json.loads(drift.stdout) if drift.stdout.strip().startswith("{") else None
        rows = data["scopes"][0]["window"]["rows"] if data else 0
        if rows >= 300 or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert data is not None, drift.stdout + drift.stderr
    features = data["scopes"][0]["drift"]["features"]
    assert drift.returncode == 1 and [f["feature"] for f in features if f["verdict"] == "DRIFT"] == ["income"]
    other = _cli(state, "drift", "credit-risk", "--node", "edge-arm-01", "--window", "1h")
    assert other.returncode == 0, other.stdout + other.stderr


def test_describe_reads_the_live_fleet(state: Path) -> None:
    proc = _cli(state, "describe", "node", "edge-cpu-01", "--json")
    assert proc.returncode == 0, proc.stderr
    node = json.loads(proc.stdout)
    assert (node["class"], node["address"], node["health"]) == ("cpu", "127.0.93.1", "healthy")
    assert [(m["model"], m["expected_version"], m["running_version"], m["verdict"]) for m in node["models"]] == [
        ("credit-risk", "2", "2", "healthy")]
    assert [r["release"].split("-")[0] for r in node["releases"] if r["current"]] == ["2"]
    assert {r["kind"] for r in node["runs"]} == {"provision", "deploy"}
    assert {e["action"] for e in node["ledger"]} >= {"node_provision", "node_deploy"}

    proc = _cli(state, "describe", "model", "credit-risk")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("2 "))
    assert "champion" in row and row.count("edge-arm-01,edge-cpu-01") == 2  # ledger and agents agree


@pytest.mark.timeout(1500)
def test_a_second_make_run_keeps_the_operators_version(state: Path) -> None:
    moved = _cli(state, "deploy", "credit-risk/3", "--limit", "edge-arm-01", "--yes", "--json")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    described = json.loads(_cli(state, "describe", "model", "credit-risk@challenger", "--json").stdout)
    assert described["selected_version"] == "3"
    assert described["versions"][0]["reported_nodes"] == ["edge-arm-01"]
    assert described["alias_warnings"] == ["champion is v2 but 1 node run v3"]
    runs_before = _changing_runs(state)

    with _make_run(state) as tmux:
        _wait_for_console(tmux)
        screen = tmux.wait_until(lambda s: s.count("credit-risk@2") == 1 and s.count("credit-risk@3") == 1,
                                 "edge-cpu-01 on the champion, edge-arm-01 still on v3", timeout=60)
        arm_row = next(line for line in screen.splitlines() if "edge-arm-01" in line)
        assert "credit-risk@3" in arm_row, screen
        tmux.keys("C-q")
        tmux.wait_for("EXIT=0", timeout=30)
        make_output = _history(tmux)

    assert "node(s) are provisioned (ledger): nothing to do" in make_output, make_output[-6000:]
    assert ("credit-risk is already deployed on all 2 selected node(s) (edge-cpu-01 v2, edge-arm-01 v3): "
            "nothing to do; --skip-deployed leaves them as they are") in make_output, make_output[-6000:]
    assert _changing_runs(state) == runs_before  # no run touched any node
    health = json.loads(_cli(state, "health", "--json").stdout)
    assert {(r["node"], r["version"], r["verdict"]) for r in health} == {
        ("edge-cpu-01", "2", "healthy"), ("edge-arm-01", "3", "healthy")}


def _changing_runs(state: Path) -> list[str]:
    runs = json.loads(_cli(state, "ledger", "runs", "--json").stdout)
    return [r["run_id"] for r in runs if r["kind"] in ("deploy", "provision", "rollback")]


def test_sim_down_stops_the_demo_traffic(state: Path) -> None:
    import psutil

    helpers = json.loads((state / "sim" / "state.json").read_text())["helpers"]
    traffic = psutil.Process(helpers["traffic"]["pid"])
    assert traffic.is_running() and "traffic" in " ".join(traffic.cmdline())
    down = _cli(state, "sim", "down")
    assert down.returncode == 0, down.stderr
    assert not traffic.is_running() or traffic.status() == psutil.STATUS_ZOMBIE
