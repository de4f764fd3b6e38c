"""``--watch`` on ``health`` and ``sim status``, through the real executable: successive blocks when stdout is a
pipe, an in-place redraw on a terminal, Ctrl-C (SIGINT) ends it with exit 0.

No fleet is needed: ``sim status`` of a fleet that is down, and ``health`` of an inventory whose agent port
refuses connections (real HTTP probes, answered "unreachable" at once).
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

from tests.unit.cli_support import MODELFLEET, clean_env, closed_port, run, write_inventory


def _watch(project: Path, args: list[str], *, blocks: int, env: dict[str, str] | None = None,
           tty: bool = False) -> tuple[int, str]:
    """Start ``modelfleet ARGS``, read stdout until ``blocks`` headers arrived, send SIGINT; (exit code, output)."""
    if tty:
        leader, follower = pty.openpty()
        out_fd, stdout = leader, follower
    else:
        out_fd, stdout = -1, subprocess.PIPE
    # Ctrl+C is what the test sends: a runner started in the background (nohup, `make test &`) ignores SIGINT and
    # its children inherit that, so the watch gets the default disposition back as a terminal would give it.
    proc = subprocess.Popen([MODELFLEET, *args], cwd=project, env=clean_env(**(env or {})), stdout=stdout,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if tty:
        os.close(follower)
    else:
        assert proc.stdout is not None
        out_fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while seen.count(b"Every ") < blocks and time.monotonic() < deadline and proc.poll() is None:
            if select.select([out_fd], [], [], 1.0)[0]:
                seen += os.read(out_fd, 65536)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        while select.select([out_fd], [], [], 0.2)[0]:
            chunk = os.read(out_fd, 65536) if not tty or proc.poll() is None else b""
            if not chunk:
                break
            seen += chunk
    except OSError:  # the pty closes when the process ends
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if tty:
            os.close(leader)
    assert proc.stderr is not None
    return code, seen.decode(errors="replace") + proc.stderr.read().decode(errors="replace")


def test_sim_status_watch_prints_blocks_until_ctrl_c(tmp_path: Path) -> None:
    code, out = _watch(tmp_path, ["sim", "status", "--watch", "--interval", "0.2"], blocks=3)
    assert code == 0, out
    headers = [line for line in out.splitlines() if line.startswith("Every 0.2s: modelfleet sim status --watch")]
    assert len(headers) >= 3, out
    assert out.count("simulated fleet is down") >= 3
    assert "\x1b[" not in out  # not a terminal: no redraw codes, a history of blocks
    assert "Traceback" not in out and "interrupted" not in out


def test_health_watch_probes_again_every_interval(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path / "inventory.yml", {"edge-cpu-01": ("cpu", "127.0.0.1")},
                                agent_port=closed_port())
    env = {"MODELFLEET_FLEET_INVENTORY": str(inventory)}
    code, out = _watch(tmp_path, ["health", "-w", "--interval", "0.3"], blocks=2, env=env)
    assert code == 0, out  # every probe fails, yet the watch itself ends well on Ctrl-C
    assert out.count("edge-cpu-01") >= 2 and out.count("unreachable") >= 2 and out.count("0/1 agents healthy") >= 2
    once = run(tmp_path, "health", **env)
    assert once.returncode == 1 and "unreachable" in once.stdout  # without --watch: one probe, its verdict


def test_watch_on_a_terminal_redraws_in_place(tmp_path: Path) -> None:
    code, out = _watch(tmp_path, ["sim", "status", "--watch", "--interval", "0.2"], blocks=2, tty=True)
    assert code == 0, out
    assert "\x1b[2J" in out and out.count("\x1b[H") >= 2 and "\x1b[J" in out
    assert "simulated fleet is down" in out


def test_interval_without_watch_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(tmp_path, "sim", "status", "--interval", "3")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["modelfleet: --interval only applies with --watch",
                                        "  fix: add --watch, or drop --interval"]
