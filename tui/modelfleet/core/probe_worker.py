"""The fleet probe and the monitoring pass in processes of their own, so that the process that draws the console
keeps its CPU to itself.

A probe of 200 agents costs the prober about a CPU-second (HTTP, JSON, sketches). Run in a thread of the console's
process, it holds the GIL in 5 ms turns against the thread that draws, and every frame drawn during a refresh took
half as long again as the same frame drawn while idle (bench/console.py, docs/benchmarks.md). Here the
``FleetProber`` lives in a child Python process (``python -m modelfleet.core.probe_worker``) that keeps its memory
(rates, staleness, latency history) from one probe to the next; the console sends it the nodes and waits on a pipe.

The monitoring pass (``core/monitor_view.py``: every agent's ``/stats?window=W``, windows, merges, drift and
latency verdicts, the p95 history) is heavier still, and runs in a second child of the same kind
(``python -m modelfleet.core.probe_worker --monitor``, :class:`MonitorWorker`), at a lower CPU priority (nice
``MONITOR_NICE``): the drawing process and the fleet probe come first, and a probe never waits for a pass.

Protocol: length-prefixed pickle frames over the child's stdin and stdout (both ends are this module, run by the
same user from the same installation). First frame: the settings; then, per request, the nodes in and
``("ok", answer)`` or ``("error", (class name, message, hint))`` out (a probe answers a list of ``NodeStatus``, a
monitoring pass a ``MonitorView``). The child exits when its stdin closes: when the console closes it, or dies.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import site
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from modelfleet.core import errors
from modelfleet.core.config import Settings
from modelfleet.core.errors import FleetError, ModelfleetError
from modelfleet.core.fleet import Node
from modelfleet.core.fleet_status import NodeStatus

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.monitor_view import MonitorView

_HEADER = struct.Struct("!I")
STOP_TIMEOUT_S = 2.0
MONITOR_NICE = 10  # the monitoring pass yields the CPU to the console and to the fleet probe
MONITOR_FLAG = "--monitor"


def probe_deadline_s(settings: Settings, n_nodes: int) -> float:
    """How long a probe of ``n_nodes`` may take before the child is taken for hung: each round of
    ``probe_concurrency`` nodes costs at most three timeouts (one per GET), plus time for the child to start."""
    fleet = settings.fleet
    rounds = -(-max(1, n_nodes) // max(1, fleet.probe_concurrency))
    return rounds * 3 * fleet.probe_timeout_s + 15.0


def monitor_deadline_s(settings: Settings, n_nodes: int) -> float:
    """How long a monitoring pass over ``n_nodes`` may take: each round of ``probe_concurrency`` nodes costs at most
    two agent timeouts (``/stats`` and, once per profile, ``/profile``), a Prometheus source at most one timeout
    per metric family; plus the statistics (generously 50 ms a node) and the child's start (scipy's import)."""
    from modelfleet.core.monitor_sources import FAMILIES

    fleet = settings.fleet
    rounds = -(-max(1, n_nodes) // max(1, fleet.probe_concurrency))
    reading = max(rounds * 2 * max(fleet.probe_timeout_s, 2.0), len(FAMILIES) * 10.0)
    return reading + 0.05 * n_nodes + 30.0


def write_frame(stream: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame; EOFError when the other end closed (at a frame boundary or in the middle of one)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the pipe closed")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the pipe closed in the middle of a frame")
    return pickle.loads(data)  # (our own child process, started from this installation)


class ChildWorker:
    """The parent's side of a child process (started on first use, and again after it died or hung); requests are
    blocking (call them from a worker thread). ``close`` stops it. Subclasses name the child (``what``, used in
    every message), its command-line flags and its requests."""

    what = "worker"
    flags: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None  # the child's stderr (a temporary file): its last words on failure
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _ensure(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        env = dict(os.environ)
        # the child imports this same modelfleet: from a source tree (tui/) it needs the path; from site-packages
        # it has it already (and putting site-packages ahead of the standard library would be wrong)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if package_root not in {*site.getsitepackages(), site.getusersitepackages()}:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child; closed with it)
        try:
            proc = subprocess.Popen([sys.executable, "-m", "modelfleet.core.probe_worker", *self.flags],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                    close_fds=True)
        except OSError as exc:
            raise FleetError(f"cannot start the {self.what} process ({sys.executable}): {exc}",
                             hint="check that the Python interpreter running modelfleet can start") from exc
        assert proc.stdin is not None
        try:
            write_frame(proc.stdin, self.settings)
        except OSError as exc:
            proc.kill()
            proc.wait()
            raise FleetError(f"the {self.what} process exited at start (code {proc.returncode}){self._last_words()}",
                             hint="check that `python -m modelfleet.core.probe_worker` starts with this "
                                  "interpreter") from exc
        self._proc = proc
        return proc

    def _ask(self, request: object, deadline: float, size: str) -> Any:
        """Send ``request``, wait for the answer (``size`` says how big the request was, for messages)."""
        with self._lock:
            died = self._proc
            if died is not None and died.poll() is not None:  # it died between two requests: say so, once
                self._proc = None
                raise FleetError(f"the {self.what} process stopped (exit code {died.returncode}) since the last "
                                 f"request{self._last_words()}",
                                 hint="the next refresh starts it again; if it keeps stopping, `modelfleet status` "
                                      "reads the agents from the command line")
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                write_frame(proc.stdin, request)
                # (request and answer alternate, so nothing is left in the reader's buffer: select sees the pipe)
                if not select.select([proc.stdout], [], [], deadline)[0]:
                    proc.kill()
                    self._stop(proc)
                    self._proc = None  # reported here; the next request starts a new one
                    raise FleetError(f"the {self.what} process did not answer within {deadline:g} s "
                                     f"({size}); it was stopped",
                                     hint="the next refresh starts it again; `modelfleet status` reads the agents "
                                          "from the command line")
                kind, payload = read_frame(proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
                self._stop(proc)
                self._proc = None  # reported here; the next request starts a new one
                raise FleetError(f"the {self.what} process stopped (exit code {proc.returncode}): "
                                 f"{exc}{self._last_words()}",
                                 hint="the next refresh starts it again; if it keeps stopping, `modelfleet status` "
                                      "reads the agents from the command line") from exc
        if kind == "ok":
            return payload
        name, message, hint = payload
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, ModelfleetError)):
            cls = FleetError
        raise cls(message, hint=hint)

    def _last_words(self) -> str:
        """The end of what the child wrote to stderr (a traceback's last line) as ``"; it said: ..."``, or nothing."""
        err = self._stderr
        if err is None:
            return ""
        try:
            err.seek(0, os.SEEK_END)
            err.seek(max(0, err.tell() - 2000))
            lines = [line.strip() for line in err.read().decode(errors="replace").splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return f"; it said: {lines[-1]}" if lines else ""

    def close(self) -> None:
        """Stop the child: at once when a request is in flight (the request then fails), else after it exits."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._lock.acquire(blocking=False):
            try:
                self._stop(proc)
            finally:
                self._lock.release()
        else:
            proc.kill()
            proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        """Close its stdin (the child's signal to exit), then wait; kill it if it does not go."""
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class ProbeWorker(ChildWorker):
    """The fleet probe's child: ``probe(nodes)`` answers what ``FleetProber.probe_sync(nodes)`` would."""

    what = "fleet probe"

    def probe(self, nodes: Sequence[Node]) -> list[NodeStatus]:
        return list(self._ask(list(nodes), probe_deadline_s(self.settings, len(nodes)), f"{len(nodes)} nodes"))


class MonitorWorker(ChildWorker):
    """The monitoring pass's child (niced): ``monitor(nodes)`` answers what ``MonitorPass.run(nodes)`` would, with
    the child's latency history kept from one pass to the next."""

    what = "monitor"
    flags = (MONITOR_FLAG,)

    def monitor(self, nodes: Sequence[Node]) -> MonitorView:
        view: MonitorView = self._ask(list(nodes), monitor_deadline_s(self.settings, len(nodes)),
                                      f"{len(nodes)} nodes")
        return view


def main(argv: Sequence[str] | None = None) -> int:
    """The child: a prober (or, with ``--monitor``, a monitoring pass) that answers until its stdin closes."""
    from collections.abc import Callable

    monitor = MONITOR_FLAG in (sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the console, which closes us
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    try:
        settings = read_frame(stdin)
    except EOFError:
        return 0
    answer: Callable[[Any], Any]
    if monitor:
        from modelfleet.core.monitor_view import MonitorPass

        os.nice(MONITOR_NICE)
        answer = MonitorPass(settings).run
        what = "monitoring pass"
    else:
        from modelfleet.core.fleet_status import FleetProber

        answer = FleetProber.from_settings(settings).probe_sync
        what = "fleet probe"
    while True:
        try:
            nodes = read_frame(stdin)
        except EOFError:
            return 0
        try:
            reply: tuple[str, Any] = ("ok", answer(nodes))
        except ModelfleetError as exc:
            reply = ("error", (type(exc).__name__, exc.message, exc.hint))
        except Exception as exc:  # a bug: tell the console, keep answering
            reply = ("error", ("FleetError", f"{what} failed: {type(exc).__name__}: {exc}", None))
        try:
            write_frame(stdout, reply)
        except OSError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
