"""The playbook process ends itself when the modelfleet process that started it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from modelfleet.runners.controller_watch import ENV, start_controller_watch

# A "controller" that starts a "playbook" in a session of its own (as ansible-runner's pty does), the playbook
# forks a "worker", and both sleep; the controller prints the two pids and waits.
CONTROLLER = textwrap.dedent("""
    import os, subprocess, sys, time
    playbook = subprocess.Popen([sys.executable, "-c", '''
    import os, sys, time
    from modelfleet.runners.controller_watch import start_controller_watch
    assert start_controller_watch(poll_s=0.1, grace_s=0.5) is not None
    worker = os.fork()
    if worker == 0:
        time.sleep(600)
        os._exit(0)
    print(worker, flush=True)
    time.sleep(600)
    '''], env={**os.environ, "MODELFLEET_CONTROLLER_PID": str(os.getpid())}, start_new_session=True,
        stdout=subprocess.PIPE, text=True)
    worker = playbook.stdout.readline().strip()
    print(playbook.pid, worker, flush=True)
    time.sleep(600)
""")


def test_playbook_group_ends_when_its_controller_is_killed() -> None:
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER], stdout=subprocess.PIPE, text=True)
    try:
        assert controller.stdout is not None
        playbook, worker = (int(p) for p in controller.stdout.readline().split())
        assert psutil.pid_exists(playbook) and psutil.pid_exists(worker)
        controller.send_signal(signal.SIGKILL)
        controller.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in (playbook, worker)):
            time.sleep(0.1)
        assert not _alive(playbook), "the playbook outlived its controller"
        assert not _alive(worker), "a forked worker outlived its controller"
    finally:
        controller.kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_not_watched_without_the_variable_or_when_not_the_child() -> None:
    assert start_controller_watch({}) is None
    assert start_controller_watch({ENV: "not-a-pid"}) is None
    assert start_controller_watch({ENV: "1"}) is None
    assert start_controller_watch({ENV: str(os.getpid())}) is None  # we are not our own child
