# modelfleet: the step that must finish, in a session of its own (standard library only; runs on the node).
"""Run the part of a step that must not stop half-way in a child process of its own session.

A switch of ``current`` is followed by a reload of the agent, its gate and the journal line that closes the
step; stopped between the switch and the reload, a node keeps ``current`` on the new release while its agent
serves the old one. A controller that dies mid-task takes the module's process on the node with it: Mitogen's
context on the node sends itself SIGTERM once its parent stream is gone, and a session with a tty is hung up.
Seen in tests/faults: ``kill -9`` of ``modelfleet deploy`` just after a node switched left that node so.

The child started here is in a session of its own: nothing the controller's going away does reaches it, so it
finishes the step (reload, gate or switch back, journal, unlock) and its result is lost only if nobody waits for
it any more. The module waits for it and returns what it returned.
"""

from __future__ import annotations

import json
import os
import traceback
import warnings
from typing import Any, Callable

# Imported here, before any fork: under Mitogen a module first imported in the child would ask the controller for
# its source through a broker thread the child does not have, and wait forever.
import email.parser  # noqa: F401  (http.client reads headers with it)
import encodings.idna  # noqa: F401
import http.client  # noqa: F401
import selectors  # noqa: F401
import socket  # noqa: F401
import subprocess  # noqa: F401
import urllib.request  # noqa: F401


class SessionError(Exception):
    """The child process ended without a result (it was killed, or crashed before it could say why)."""


def to_completion(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work()`` in a forked child in a new session; the JSON-able dict it returned.

    ``work`` reports its own failures in what it returns; an exception that escapes it comes back as
    :class:`SessionError` with its traceback."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork of a threaded process (Mitogen)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its effects are what the tests check
        try:
            os.close(read_fd)
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            try:
                payload = work()
            except BaseException:  # noqa: BLE001 - everything goes back to the waiting module
                payload = {"session_error": traceback.format_exc()}
            data = json.dumps(payload).encode("utf-8")
            try:
                while data:
                    data = data[os.write(write_fd, data):]
            except OSError:
                pass  # nobody waits any more (the controller is gone); the node's journal has the step
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by someone else: what it wrote is what counts
        status = 0
    if not chunks:
        raise SessionError("the step's process %d ended without a result (wait status %d)" % (pid, status))
    payload = json.loads(b"".join(chunks).decode("utf-8"))
    if "session_error" in payload:
        raise SessionError("the step's process failed: %s" % payload["session_error"])
    return dict(payload)
