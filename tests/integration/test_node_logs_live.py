"""``modelfleet logs NODE --model M [-f]`` against a real agent on the shared provisioned fleet (tests/provisioned.py):
the log is read on the node over ssh with the inventory's connection (the path Ansible uses), and ``-f`` streams
lines the agent writes after it started, until Ctrl-C (exit 0). The commands built and the bad inputs, without a
fleet: tests/unit/test_node_logs.py."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.integration.simfleet import VENV_BIN
from tests.provisioned import MODEL

if TYPE_CHECKING:
    from tests.provisioned import ProvisionedFleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODE = "edge-cpu-02"
DRAINING = "draining: new scoring requests are refused, /health answers 503"
RESUMED = "resumed: accepting scoring requests"


def _env(fleet: ProvisionedFleet) -> dict[str, str]:
    """The project's modelfleet.toml decides, as in tests/integration/simfleet.run_cli; ssh's control sockets in a
    folder of this fleet's (~/.ansible/cp is shared by every network namespace on this machine, and a master left
    there by a run against another fleet on the same addresses would carry the stream to that one)."""
    return {**{k: v for k, v in os.environ.items()
               if not k.startswith(("MODELFLEET_", "ANSIBLE_")) or k == "MODELFLEET_WHEELHOUSE_DIR"},
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(fleet.project / "cp")}


@pytest.fixture(autouse=True)
def _control_dir(provisioned_fleet: ProvisionedFleet) -> None:
    (provisioned_fleet.project / "cp").mkdir(exist_ok=True)


def _admin(fleet: ProvisionedFleet, action: str) -> None:
    """An admin action on the node's agent: the agent itself writes a line to its log for each."""
    token = (fleet.node_root(NODE) / "etc" / "agents" / f"{MODEL}.admin-token").read_text(encoding="utf-8").strip()
    url = fleet.inventory.node(NODE).agent_url + f"/admin/{action}"
    resp = httpx.post(url, headers={"authorization": f"Bearer {token}"}, timeout=10, trust_env=False)
    assert resp.status_code == 200, (action, resp.status_code, resp.text)


def test_logs_follows_a_real_agent_log_over_ssh_until_ctrl_c(provisioned_fleet: ProvisionedFleet) -> None:
    fleet = provisioned_fleet
    fleet.reset()
    log_file = fleet.node_root(NODE) / "log" / f"agent-{MODEL}.log"
    assert log_file.is_file(), log_file  # the agent's own [log] path on the node (roles/model_agent)
    written = log_file.read_text(encoding="utf-8").splitlines()

    # Ctrl+C is what the test sends: a runner started in the background ignores SIGINT and its children inherit
    # that, so the follow gets the default disposition back as a terminal would give it (tests/unit/test_watch.py)
    proc = subprocess.Popen([str(VENV_BIN / "modelfleet"), "logs", NODE, "--model", MODEL, "-f", "-n", "3"],
                            cwd=fleet.project, env=_env(fleet), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None and proc.stderr is not None
    stdout = proc.stdout
    out = b""

    def read_until(done: str, timeout: float) -> str:
        nonlocal out
        deadline = time.monotonic() + timeout
        while done not in out.decode(errors="replace") and time.monotonic() < deadline and proc.poll() is None:
            if select.select([stdout], [], [], 0.5)[0]:
                out += os.read(stdout.fileno(), 65536)
        return out.decode(errors="replace")

    try:
        tail = written[-3:]  # fewer than 3 when the agent has written fewer lines since it started
        text = read_until(written[-1], 60)  # the tail first: the last lines the agent had written
        assert text.splitlines()[:len(tail)] == tail, text
        _admin(fleet, "drain")
        _admin(fleet, "resume")  # the fleet as the contract says again: the agent accepts requests
        text = read_until(RESUMED, 60)  # then what the agent writes while it is followed
        new = text.splitlines()[len(tail):]
        assert any(DRAINING in line for line in new) and any(RESUMED in line for line in new), text
        assert all(" INFO modelfleet.agent" in line for line in new if DRAINING in line or RESUMED in line), text
        assert proc.poll() is None  # still following
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode(errors="replace")
    assert code == 0, err  # Ctrl-C is the normal end of a follow
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err

    # without -f: the last lines once, then exit 0; they are the lines the agent just wrote
    once = subprocess.run([str(VENV_BIN / "modelfleet"), "logs", NODE, "--model", MODEL, "-n", "2"],
                          cwd=fleet.project, env=_env(fleet), capture_output=True, text=True, timeout=60, check=False)
    assert once.returncode == 0, once.stderr
    lines = once.stdout.splitlines()
    assert len(lines) == 2 and DRAINING in lines[0] and RESUMED in lines[1], once.stdout
    assert lines == log_file.read_text(encoding="utf-8").splitlines()[-2:]
    assert str(fleet.agent_health(NODE).get("version")) == "1"  # handed back as found
