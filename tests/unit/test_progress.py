"""The provisioning progress printer (commands/_progress.py) fed typed run events: task lines as tasks complete,
failures at once, each host's finish line with its time, a heartbeat when a task runs long without output.

The same printer on a real provisioning run (real Ansible over SSH) is checked in tests/integration/test_make_run.py.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field

from modelfleet.commands._progress import TaskProgress
from modelfleet.runners.events import EventKind, RunEvent
from modelfleet.runners.runstate import HostRun

HOSTS = ["edge-cpu-01", "edge-cpu-02", "edge-arm-01"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Handle:
    """The part of a run handle the printer reads: the run's kind and its per-host results."""

    kind: str = "provision"
    results: dict[str, HostRun] = field(default_factory=lambda: {
        "edge-cpu-01": HostRun("edge-cpu-01", ok=5, changed=2),
        "edge-cpu-02": HostRun("edge-cpu-02", ok=5),
        "edge-arm-01": HostRun("edge-arm-01", ok=1, failed=1, failing=True, message="no space left")})

    def hosts(self) -> dict[str, HostRun]:
        return self.results


def _printer(out: io.StringIO, **kwargs: object) -> TaskProgress:
    progress = TaskProgress(HOSTS, stream=out, **kwargs)  # type: ignore[arg-type]
    progress.handle = Handle()
    return progress


def test_tasks_failures_and_hosts_as_they_finish() -> None:
    out, clock = io.StringIO(), Clock()
    progress = _printer(out, clock=clock, tty=False)
    progress(RunEvent(EventKind.PLAY_START, play="Provision edge nodes", batch=1))
    progress(RunEvent(EventKind.TASK_START, task="Gathering Facts"))
    for host in HOSTS:
        clock.now += 1
        progress(RunEvent(EventKind.HOST_OK, host=host, task="Gathering Facts"))
    assert out.getvalue().splitlines()[-1] == "[ 0:03] Gathering Facts: 3 ok (3.0s)"  # all three answered
    progress(RunEvent(EventKind.TASK_START, task="Install | agent venv"))
    clock.now += 65
    progress(RunEvent(EventKind.HOST_FAILED, host="edge-arm-01", task="Install | agent venv", message="no space left"))
    assert out.getvalue().splitlines()[-1].startswith("[ 1:08]    edge-arm-01      FAILED      Install | agent venv")
    clock.now += 2
    progress(RunEvent(EventKind.HOST_CHANGED, host="edge-cpu-01", task="Install | agent venv"))
    progress(RunEvent(EventKind.HOST_OK, host="edge-cpu-02", task="Install | agent venv"))  # the rest answered
    clock.now += 1
    progress(RunEvent(EventKind.STATS))
    lines = out.getvalue().splitlines()
    assert lines[0] == "[ 0:00] == Provision edge nodes (3 hosts)"
    assert lines[-4] == "[ 1:10] Install | agent venv: 1 changed, 1 failed, 1 ok (67.0s)"
    # each host, in the order it finished, with the time of its last result
    assert [re.sub(r"\s+", " ", line) for line in lines[-3:]] == [
        "[ 1:11] edge-arm-01 failed ok=1 changed=0 finished at 1:08 no space left",
        "[ 1:11] edge-cpu-01 changed ok=5 changed=2 finished at 1:10",
        "[ 1:11] edge-cpu-02 ok ok=5 changed=0 finished at 1:10",
    ]


def test_a_long_task_gets_a_heartbeat_without_a_terminal() -> None:
    out = io.StringIO()
    progress = _printer(out, heartbeat_s=0.3, tty=False)
    progress(RunEvent(EventKind.TASK_START, task="Install | build the wheelhouse"))
    progress(RunEvent(EventKind.HOST_CHANGED, host="edge-cpu-01", task="Install | build the wheelhouse"))
    deadline = time.monotonic() + 10
    while "still running" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    progress.close()
    assert re.search(r"still running: Install \| build the wheelhouse \.\.\. 1/3 hosts answered, \d+s",
                     out.getvalue()), out.getvalue()


def test_on_a_terminal_a_status_line_ticks_under_the_lines() -> None:
    out, clock = io.StringIO(), Clock()
    progress = _printer(out, clock=clock, tty=True)
    progress(RunEvent(EventKind.TASK_START, task="Install | agent venv"))
    clock.now += 12
    progress(RunEvent(EventKind.HOST_OK, host="edge-cpu-01", task="Install | agent venv"))
    assert out.getvalue().endswith("\r\x1b[K[ 0:12] Install | agent venv ... 1/3 hosts answered, 12s")
    progress(RunEvent(EventKind.STATS))
    text = out.getvalue()
    assert "hosts answered, 12s\r\x1b[K[ 0:12] Install | agent venv: 1 ok" in text  # cleared, then the line
    assert "edge-cpu-01      changed     ok=5 changed=2  finished at 0:12\n" in text
    assert text.endswith("no space left\n")  # no status line left behind once the play is over
