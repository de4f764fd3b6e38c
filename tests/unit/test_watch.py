"""``--watch`` on ``health``, ``sim status`` and ``status``, through the real executable: successive blocks when
stdout is a pipe, an in-place redraw on a terminal, Ctrl-C (SIGINT) ends it with exit 0.

No fleet is needed: ``sim status`` of a fleet that is down, and ``health`` of an inventory whose agent port
refuses connections (real HTTP probes, answered "unreachable" at once); ``status`` reads the same inventory.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.unit.cli_support import MODELFLEET, clean_env, closed_port, run, write_inventory


def _watch(project: Path, args: list[str], *, blocks: int, env: dict[str, str] | None = None,
           tty: bool = False, on_output: Callable[[str], bool] | None = None) -> tuple[int, str]:
    """Start ``modelfleet ARGS``, read stdout until ``blocks`` headers arrived, send SIGINT; (exit code, output).

    With ``on_output``, it is called with the output so far after each read, and reading goes on until it returns
    True (instead of counting headers)."""
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
        done = False
        while not done and time.monotonic() < deadline and proc.poll() is None:
            if select.select([out_fd], [], [], 1.0)[0]:
                seen += os.read(out_fd, 65536)
            if on_output is not None:
                done = on_output(seen.decode(errors="replace"))
            else:
                done = seen.count(b"Every ") >= blocks
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


def _unreachable_fleet(folder: Path) -> dict[str, str]:
    inventory = write_inventory(folder / "inventory.yml", {"edge-cpu-01": ("cpu", "127.0.0.1")},
                                agent_port=closed_port())
    return {"MODELFLEET_FLEET_INVENTORY": str(inventory)}


def test_status_watch_is_the_shared_watch_blocks_when_piped_and_exit_0_on_ctrl_c(tmp_path: Path) -> None:
    env = _unreachable_fleet(tmp_path)
    code, out = _watch(tmp_path, ["status", "-w", "--interval", "0.3"], blocks=3, env=env)
    assert code == 0, out  # each refresh finds a breach (an agent that does not answer); Ctrl-C still exits 0
    headers = [line for line in out.splitlines() if line.startswith("Every 0.3s: modelfleet status -w --interval 0.3")]
    assert len(headers) >= 3, out
    assert out.count("unreachable: edge-cpu-01") >= 3, out
    assert "\x1b[" not in out  # piped: no screen clearing, one block after the other
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    once = run(tmp_path, "status", **env)
    assert once.returncode == 1 and "unreachable: edge-cpu-01" in once.stdout and "Every " not in once.stdout


def test_status_watch_defaults_to_monitor_interval_and_redraws_on_a_terminal(tmp_path: Path) -> None:
    env = {**_unreachable_fleet(tmp_path), "MODELFLEET_MONITOR_INTERVAL_S": "0.2"}
    code, out = _watch(tmp_path, ["status", "--watch"], blocks=2, env=env, tty=True)
    assert code == 0, out
    assert "Every 0.2s: modelfleet status --watch" in out  # no --interval: monitor.interval_s, as documented
    assert "\x1b[2J" in out and out.count("\x1b[H") >= 2 and "\x1b[J" in out
    assert "unreachable: edge-cpu-01" in out


def test_status_watch_retries_after_an_error_on_a_later_refresh(tmp_path: Path) -> None:
    env = _unreachable_fleet(tmp_path)
    inventory = Path(env["MODELFLEET_FLEET_INVENTORY"])
    kept = inventory.read_text(encoding="utf-8")
    phase = ["first"]

    def step(out: str) -> bool:  # the inventory goes away after the first refresh, then comes back
        if phase[0] == "first" and "unreachable: edge-cpu-01" in out:
            inventory.unlink()
            phase[0] = "gone"
        elif phase[0] == "gone" and "does not exist (trying again in 0.3s)" in out:
            inventory.write_text(kept, encoding="utf-8")
            phase[0] = "back"
            return False
        return phase[0] == "back" and out.rsplit("trying again", 1)[1].count("unreachable: edge-cpu-01") >= 1

    code, out = _watch(tmp_path, ["status", "-w", "--interval", "0.3"], blocks=0, env=env, on_output=step)
    assert phase[0] == "back", out
    assert code == 0, out
    assert f"modelfleet: inventory {inventory} does not exist (trying again in 0.3s)" in out
    assert out.rsplit("trying again", 1)[1].count("unreachable: edge-cpu-01") >= 1, out  # and it recovered


def test_status_interval_without_watch_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(tmp_path, "status", "--interval", "3", **_unreachable_fleet(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["modelfleet: --interval only applies with --watch",
                                        "  fix: add --watch, or drop --interval"]
