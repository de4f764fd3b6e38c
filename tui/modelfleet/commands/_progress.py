"""Live progress of a one-wave run (provisioning): every task as it completes, every host as it finishes.

A first provisioning takes minutes (the controller builds a wheelhouse, every node builds its agent venv) and
Ansible's linear strategy moves all hosts through each task together, so a printer that waits for the end of a
wave prints nothing until every node answers at once. :class:`TaskProgress` prints instead (on stderr; stdout
stays for the recap table or ``--json``), each line stamped with the time since the run started::

    [ 0:00] == Provision edge nodes (6 hosts)
    [ 0:03] Gathering Facts: 6 ok (2.9s)
    [ 1:12] Install | build the wheelhouse for each architecture on the controller: 1 changed (66.0s)
    [ 1:30]    edge-gpu-01  FAILED  Preflight | check the accelerator: no NVIDIA GPU found
    [ 2:41] Install | agent runtime dependencies, offline from the wheelhouse: 5 changed (70.1s)
    [ 2:55]    edge-cpu-01  changed   ok=41 changed=12  finished at 2:54
    ...

A failed or unreachable host is printed the moment its result arrives; a task's line when every host still in
the play has answered it (or the next task starts); a host's own line when the play is over, with the time of its
last result. On a terminal a status line under them shows the current task, how many hosts have answered it and
a ticking clock; elsewhere (a pipe, CI, ``make`` output captured) a heartbeat line every ``heartbeat_s`` seconds
of silence says what is still running, so a long task never looks like a hang.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.runners.events import RunEvent
    from modelfleet.runners.runstate import HostRun

HEARTBEAT_S = 20.0


def clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class RunHosts(Protocol):
    """What the printer needs of a run handle (``runners.pipeline.RunHandle`` is one)."""

    kind: str

    def hosts(self) -> Mapping[str, HostRun]: ...


@dataclass
class _Task:
    name: str
    number: int
    started: float
    answered: dict[str, str] = field(default_factory=dict)  # host -> result kind (ok, changed, ...)
    printed: bool = False


class TaskProgress:
    """An ``on_event`` callback for a run: see the module docstring. ``hosts`` are the run's target hosts; set
    :attr:`handle` once the run is launched (its per-host results give the finish lines)."""

    def __init__(self, hosts: Sequence[str], *, verbose: bool = False, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, heartbeat_s: float = HEARTBEAT_S,
                 tty: bool | None = None) -> None:
        self._hosts = list(hosts)
        self.handle: RunHosts | None = None
        self.verbose = verbose
        self._out = stream or sys.stderr
        self._clock = clock
        self._start = clock()
        self._heartbeat_s = heartbeat_s
        self._tty = self._out.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self._task: _Task | None = None
        self._tasks = 0
        self._gone: set[str] = set()  # failed or unreachable: out of the play
        self._last_result: dict[str, float] = {}
        self._last_line = self._start
        self._status_shown = False
        self._done = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="task-progress", daemon=True)
        self._ticker.start()

    # -- events ----------------------------------------------------------------------------------------------------

    def __call__(self, event: RunEvent) -> None:
        from modelfleet.runners.events import EventKind

        with self._lock:
            kind = event.kind
            now = self._clock()
            if kind is EventKind.PLAY_START:
                self._close_task(now)
                self._line(now, f"== {event.play or 'play'} ({len(self._hosts)} hosts)"
                           + (f", wave {event.batch}" if event.batch and event.batch > 1 else ""))
            elif kind is EventKind.TASK_START:
                self._close_task(now)
                self._tasks += 1
                self._task = _Task(event.task or "task", self._tasks, now)
            elif kind in (EventKind.HOST_OK, EventKind.HOST_CHANGED, EventKind.HOST_SKIPPED,
                          EventKind.HOST_FAILED, EventKind.HOST_UNREACHABLE) and event.host:
                self._result(event, now)
            elif kind is EventKind.STATS:
                self._close_task(now)
                self._finish_hosts(now)
                self._stop()
            elif kind is EventKind.STATUS and event.message in ("successful", "failed", "canceled", "timeout",
                                                                 "error"):
                self._close_task(now)
                self._stop()
            self._show_status(now)

    def _result(self, event: RunEvent, now: float) -> None:
        from modelfleet.runners.events import EventKind

        host = event.host or ""
        self._last_result[host] = now
        result = {EventKind.HOST_OK: "ok", EventKind.HOST_CHANGED: "changed", EventKind.HOST_SKIPPED: "skipped",
                  EventKind.HOST_FAILED: "failed", EventKind.HOST_UNREACHABLE: "unreachable"}[event.kind]
        if self._task is not None:
            self._task.answered[host] = result
        if result in ("failed", "unreachable"):
            self._gone.add(host)
            self._line(now, f"   {host:<16} {result.upper():<11} {event.task or ''}: {event.message or ''}".rstrip())
        elif self.verbose:
            self._line(now, f"   {host:<16} {result:<11} {event.task or ''}")
        task = self._task
        if task is not None and not task.printed and set(self._hosts) - self._gone <= set(task.answered):
            self._close_task(now)

    def _close_task(self, now: float) -> None:
        task = self._task
        if task is None or task.printed:
            return
        task.printed = True
        if not task.answered:
            return  # no host ran it (a skipped block, a handler nobody notified)
        counts: dict[str, int] = {}
        for result in task.answered.values():
            counts[result] = counts.get(result, 0) + 1
        summary = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
        self._line(now, f"{task.name}: {summary} ({now - task.started:.1f}s)")

    def _finish_hosts(self, now: float) -> None:
        if self.handle is None:
            return
        results = self.handle.hosts()
        for host in sorted(self._hosts, key=lambda h: self._last_result.get(h, now)):
            hr = results.get(host)
            if hr is None:
                continue
            outcome = hr.outcome(self.handle.kind, final=True)
            at = self._last_result.get(host)
            when = f"  finished at {clock_text(at - self._start)}" if at is not None else "  no result"
            self._line(now, f"   {host:<16} {outcome.value:<11} ok={hr.ok} changed={hr.changed}{when}"
                       + (f"  {hr.message}" if hr.message and outcome.bad else ""))

    # -- output ----------------------------------------------------------------------------------------------------

    def _line(self, now: float, text: str) -> None:
        self._clear_status()
        self._out.write(f"[{clock_text(now - self._start):>5}] {text}\n")
        self._out.flush()
        self._last_line = now

    def _status_text(self, now: float) -> str:
        task = self._task
        if task is None or task.printed:
            return f"[{clock_text(now - self._start):>5}] starting ..." if self._tasks == 0 else ""
        live = len(set(self._hosts) - self._gone)
        return (f"[{clock_text(now - self._start):>5}] {task.name} ... {len(task.answered)}/{live} hosts answered, "
                f"{now - task.started:.0f}s")

    def _show_status(self, now: float) -> None:
        if not self._tty or self._done.is_set():
            return
        text = self._status_text(now)
        if text:
            self._out.write("\r\x1b[K" + text[: _width() - 1])
            self._out.flush()
            self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            self._out.write("\r\x1b[K")
            self._status_shown = False

    def _tick(self) -> None:
        while not self._done.wait(1.0 if self._tty else min(self._heartbeat_s, 5.0)):
            with self._lock:
                now = self._clock()
                if self._done.is_set():
                    return
                if self._tty:
                    self._show_status(now)
                elif now - self._last_line >= self._heartbeat_s:
                    text = self._status_text(now)
                    if text:
                        self._line(now, "still running: " + text.split("] ", 1)[1])

    def _stop(self) -> None:
        self._clear_status()
        self._out.flush()
        self._done.set()

    def close(self) -> None:
        """Stop the clock (the run ended without its final events, e.g. it could not start)."""
        with self._lock:
            self._stop()


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns
