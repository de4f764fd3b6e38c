"""Tie an ``ansible-playbook`` started by modelfleet to the modelfleet process that started it.

ansible-runner spawns ``ansible-playbook`` in a pseudo-terminal session of its own, so when the controller (the
``modelfleet deploy`` process or the console) is killed with SIGKILL, nothing tells the playbook: it would go on
changing nodes with nobody reading its events or writing the run's end to the ledger. The runner therefore puts
its own pid in ``MODELFLEET_CONTROLLER_PID``; the ledger callback (loaded in the ``ansible-playbook`` process)
calls :func:`start_controller_watch`, and a daemon thread ends the playbook's whole process group (its forked
workers and their ssh clients) soon after that pid stops being the parent. The run stays ``incomplete`` in the
ledger and the per-model deploy locks it held are broken by the next run, as for any interrupted run.

A plain ``ansible-playbook`` run (no ``MODELFLEET_CONTROLLER_PID``) is not watched.
"""

from __future__ import annotations

import os
import signal
import threading
import time

ENV = "MODELFLEET_CONTROLLER_PID"


def controller_gone(controller_pid: int) -> bool:
    """True when this process is no longer a child of ``controller_pid`` (it died and we were re-parented)."""
    return os.getppid() != controller_pid


def _end_process_group(grace_s: float) -> None:
    group = os.getpgrp()
    try:
        os.killpg(group, signal.SIGTERM)
        time.sleep(grace_s)
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_controller_watch(environ: dict[str, str] | None = None, poll_s: float = 0.5,
                           grace_s: float = 3.0) -> threading.Thread | None:
    """Start watching the controller named in the environment; return the thread, or None when not asked to.

    Only the process whose parent is the controller is watched (the ``ansible-playbook`` main process, not its
    forked workers, which inherit the environment but have another parent)."""
    value = (environ if environ is not None else os.environ).get(ENV, "")
    try:
        controller = int(value)
    except ValueError:
        return None
    if controller <= 1 or os.getppid() != controller:
        return None

    def watch() -> None:
        while not controller_gone(controller):
            time.sleep(poll_s)
        _end_process_group(grace_s)

    thread = threading.Thread(target=watch, name="modelfleet-controller-watch", daemon=True)
    thread.start()
    return thread
