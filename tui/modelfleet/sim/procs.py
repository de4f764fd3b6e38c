"""Start, recognise and stop the fleet's long-running processes, and only those.

A pid alone is not an identity: after a reboot or a long time, the number can belong to someone else's
process. A :class:`ProcessRef` therefore records the pid *and* its kernel start time, and every signal we send is
preceded by a check that the pid still is the process we started. The start time compared is the kernel's own
(clock ticks since boot, with the boot's id), not the wall-clock time psutil derives from it: that one moves
whenever the system clock is stepped (NTP, a VM's clock catching up), and a fleet whose processes stopped
being "ours" after a clock step could no longer be stopped.

Processes are started *detached* (through a tiny launcher that exits at once) in their own session: the fleet
outlives the ``modelfleet sim up`` command, no Ctrl-C in the operator's terminal reaches it, and the calling
process (a CLI, a test run) never holds unreaped children or "still running" warnings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from modelfleet.core.errors import FleetError

# Runs as `python -I -S -c LAUNCHER <log> <cwd> <argv...>`: starts argv in a new session, prints its pid, exits.
_LAUNCHER = """\
import os, subprocess, sys
log, cwd, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "ab") as out:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         cwd=cwd, start_new_session=True, close_fds=True)
sys.stdout.write(str(p.pid))
sys.stdout.flush()
os._exit(0)
"""

_CREATE_TIME_TOLERANCE = 0.05  # seconds; for refs without a boot-relative start (older state files)
_TICK = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def boot_id() -> str | None:
    """This boot's id (Linux), so a start time since boot is never compared across a reboot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def started_since_boot(pid: int) -> float | None:
    """When ``pid`` started, in seconds since boot: the kernel's tick count, untouched by clock steps."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # the command name (field 2) may hold spaces and parentheses: fields after the last ')' are plain
        return int(stat.rsplit(b")", 1)[1].split()[19]) * _TICK
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessRef:
    """A process we started: its pid and start time.

    ``create_time`` (seconds since the epoch) is for people; ``since_boot`` and ``boot`` (when known) are what
    identity checks compare.
    """

    pid: int
    create_time: float
    since_boot: float | None = None
    boot: str | None = None

    @classmethod
    def of(cls, proc: psutil.Process) -> ProcessRef:
        return cls(proc.pid, proc.create_time(), started_since_boot(proc.pid), boot_id())

    def matches(self, proc: psutil.Process) -> bool:
        """Whether ``proc`` (same pid) is the very process this ref was taken of."""
        if self.since_boot is not None and self.boot is not None and self.boot == boot_id():
            now = started_since_boot(proc.pid)
            return now is not None and abs(now - self.since_boot) < _TICK / 2
        return abs(proc.create_time() - self.create_time) <= _CREATE_TIME_TOLERANCE

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": self.pid, "create_time": self.create_time}
        if self.since_boot is not None and self.boot is not None:
            out.update(since_boot=self.since_boot, boot=self.boot)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ProcessRef | None:
        if not data:
            return None
        since_boot = data.get("since_boot")
        return cls(int(data["pid"]), float(data["create_time"]),
                   float(since_boot) if since_boot is not None else None, data.get("boot"))


def spawn_detached(
    argv: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> ProcessRef:
    """Start ``argv`` detached (new session, reparented away from us) and return its ProcessRef."""
    log.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(log), str(cwd), *argv],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise FleetError(
            f"could not start {argv[0]}: {done.stderr.strip().splitlines()[-1:] or done.returncode}",
            hint=f"check that {argv[0]} exists and is executable",
        )
    pid = int(done.stdout.strip())
    try:
        return ProcessRef.of(psutil.Process(pid))
    except psutil.NoSuchProcess:
        raise FleetError(
            f"{argv[0]} exited right after start; see {log}",
            hint=f"read the last lines of {log}",
        ) from None


def process_of(ref: ProcessRef | None) -> psutil.Process | None:
    """The live process behind ``ref``, or None when it is gone, a zombie or a different process now."""
    if ref is None:
        return None
    try:
        proc = psutil.Process(ref.pid)
        if not ref.matches(proc):
            return None  # the pid was reused by someone else's process
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(ref.pid)
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(ref: ProcessRef | None) -> bool:
    return process_of(ref) is not None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def stop_processes(procs: Iterable[psutil.Process], *, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL what is left and wait again.

    The processes passed in were looked up (and identity-checked) by the caller a moment ago; psutil's
    ``send_signal`` re-checks that each pid still is that process before signalling.
    """
    procs = [p for p in procs if _running(p)]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    alive = wait_gone(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGKILL)
    wait_gone(alive, timeout=5.0)


def wait_gone(procs: Sequence[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Wait until none of ``procs`` runs; returns those still running at the deadline.

    A process that exited but is not reaped yet (a zombie: our own child, or one whose reaper is slow) counts
    as gone - it holds no sockets and runs no code - which psutil.wait_procs would wait out to the timeout.
    """
    alive = list(procs)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while alive:
        alive = [p for p in alive if _running(p)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return alive


def stop_tree(ref: ProcessRef | None, *, timeout: float = 10.0) -> bool:
    """Stop the process behind ``ref`` and everything it started. Returns False when it was not running."""
    return bool(stop_trees([ref], timeout=timeout))


def stop_trees(refs: Iterable[ProcessRef | None], *, timeout: float = 10.0) -> list[ProcessRef]:
    """Stop several process trees at once; returns the refs that were running.

    Roots get SIGTERM first (supervisord stops its programs gracefully on SIGTERM; sshd closes its listeners);
    descendants still around afterwards (a program that ignored its supervisor, an ssh session, which outlives
    the listening sshd by design) get the same treatment.
    """
    roots: list[psutil.Process] = []
    running: list[ProcessRef] = []
    tree: list[psutil.Process] = []
    for ref in refs:
        proc = process_of(ref)
        if proc is None or ref is None:
            continue
        running.append(ref)
        roots.append(proc)
        tree.extend(descendants(proc))
    stop_processes(roots, timeout=timeout)
    stop_processes([p for p in tree if _running(p)], timeout=5.0)
    return running


def _running(proc: psutil.Process) -> bool:
    try:
        if not proc.is_running():  # psutil compares the start time too
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return False
        return True
    except psutil.Error:
        return False


def listeners_on(addresses: Iterable[str]) -> list[tuple[str, int, int | None]]:
    """(address, port, pid) of every TCP socket listening on one of ``addresses``."""
    wanted = set(addresses)
    found: list[tuple[str, int, int | None]] = []
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # pragma: no cover - some kernels/platforms need privileges
        return found
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.ip in wanted:
            found.append((c.laddr.ip, c.laddr.port, c.pid))
    return sorted(found)


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
