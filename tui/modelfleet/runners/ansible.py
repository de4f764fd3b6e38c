"""Run the repository's playbooks with ansible-runner: typed live events, per-host state, cancel, replay.

Headless and thread-safe, for the CLI and the console (which starts runs from a worker thread)::

    run = AnsibleRun(settings, "deploy.yml", extra_vars={...}, limit="edge_cpu", on_event=print)
    run.start()                  # returns at once; ansible-runner works in its own thread
    for event in run.events():   # or on_event=..., or poll run.queue (a queue.Queue of RunEvent)
        ...
    result = run.wait()          # RunResult: status, rc, hosts (HostState per host), batches, duration
    run.cancel()                 # from any thread: ansible-playbook's process group is killed

Every run has a folder ``<state_dir>/runs/<run_id>/``: ansible-runner's private data dir, with
``artifacts/<run_id>/`` (``job_events/*.json``, ``stdout``, ``rc``, ``status``, ``command``) and ``run.json`` (what
was run, with what, and how it ended). :func:`list_runs` lists them newest first and :func:`replay` rebuilds a
past run's events and host states from its artifacts. ``ansible-playbook`` runs with the repository's
``ansible.cfg`` (``ANSIBLE_CONFIG``) and callback path, so the ledger callback records the run; ``MODELFLEET_*``
variables tell the callback the ledger URL, the run id, the actor and whether the caller already wrote the
run's start and end events.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import queue
import secrets
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfleet.core.errors import RunError
from modelfleet.runners.events import EventKind, HostState, HostStatus, RunEvent, RunTracker, parse_event

RUN_META = "run.json"
DONE_STATUSES = frozenset({"successful", "failed", "canceled", "timeout", "error"})
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # tui/modelfleet/runners/ansible.py -> repository root

EventCallback = Callable[[RunEvent], None]


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20250102T030405Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def default_actor() -> str:
    actor = os.environ.get("MODELFLEET_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def find_ansible_root(settings: Any = None) -> Path:
    """The folder holding ``ansible.cfg`` and ``playbooks/``: the project dir if it has them, else the repository
    this package was installed from (editable install)."""
    candidates = []
    if settings is not None:
        candidates.append(Path(settings.project_dir))
    env = os.environ.get("MODELFLEET_ANSIBLE_ROOT")
    if env:
        candidates.insert(0, Path(env))
    candidates.append(PACKAGE_ROOT)
    for root in candidates:
        if (root / "ansible.cfg").is_file() and (root / "playbooks").is_dir():
            return root.resolve()
    raise RunError(
        "cannot find the modelfleet playbooks (a folder with ansible.cfg and playbooks/)",
        hint="run from the modelfleet repository or set MODELFLEET_ANSIBLE_ROOT to it",
    )


def ansible_playbook_binary() -> str:
    """``ansible-playbook`` next to this interpreter (the venv), else the one on PATH."""
    local = Path(sys.executable).parent / "ansible-playbook"
    if local.is_file():
        return str(local)
    found = shutil.which("ansible-playbook")
    if not found:
        raise RunError("ansible-playbook is not installed", hint="pip install ansible-core (make deps)")
    return found


def stop_run_leftovers(run_id: str, *, grace: float = 3.0) -> int:
    """Stop the processes a canceled run left behind; returns how many there were.

    ansible-runner's cancel kills ansible-playbook's process group, but Mitogen starts each connection's
    interpreter in a session of its own (with connection ``local`` that is a fork of ansible-playbook, over
    ssh the ``ssh`` client), and those outlive the group: a canceled ``sleep 60`` left four of them running.
    Every process of a run carries ``MODELFLEET_RUN_ID`` in its environment (see :meth:`AnsibleRun.environment`),
    which is how they are found; they get SIGTERM, then SIGKILL after ``grace`` seconds.
    """
    import psutil

    mine = os.getpid()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == mine:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get("MODELFLEET_RUN_ID") == run_id:
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(found, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return len(found)


def inventory_addresses(inventory: Path) -> dict[str, str]:
    """``ansible_host`` -> host name for every host of a YAML inventory file that sets one (else empty)."""
    out: dict[str, str] = {}
    try:
        import yaml

        data = yaml.safe_load(Path(inventory).read_text(encoding="utf-8"))
    except Exception:
        return out

    def walk(group: Any) -> None:
        if not isinstance(group, dict):
            return
        for name, hv in (group.get("hosts") or {}).items():
            if isinstance(hv, dict) and hv.get("ansible_host"):
                out.setdefault(str(hv["ansible_host"]), str(name))
        for child in (group.get("children") or {}).values():
            walk(child)

    if isinstance(data, dict):
        for group in data.values():
            walk(group)
    return out


@dataclass(frozen=True)
class RunResult:
    run_id: str
    playbook: str
    status: str  # successful | failed | canceled | timeout | error
    rc: int | None
    hosts: dict[str, HostState]
    batches: list[list[str]]
    started: datetime
    ended: datetime
    artifact_dir: Path
    stats: dict[str, Any] | None = None
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.ended - self.started).total_seconds()

    @property
    def failed_hosts(self) -> list[str]:
        return [h for h, st in self.hosts.items() if st.status.bad]

    @property
    def ok(self) -> bool:
        return self.status == "successful" and not self.failed_hosts

    def count(self, status: HostStatus) -> int:
        return sum(1 for st in self.hosts.values() if st.status is status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "playbook": self.playbook, "status": self.status, "rc": self.rc,
            "started": self.started.isoformat(), "ended": self.ended.isoformat(),
            "duration_s": round(self.duration_s, 3), "artifact_dir": str(self.artifact_dir),
            "batches": self.batches, "hosts": {h: st.to_dict() for h, st in self.hosts.items()},
            "error": self.error,
        }


@dataclass
class RunSpec:
    """What to run. ``playbook`` is a name under ``playbooks/`` or a path."""

    playbook: str
    inventory: Path
    extra_vars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    check: bool = False
    diff: bool = False
    verbosity: int = 0
    forks: int | None = None
    hosts: Sequence[str] = ()  # the hosts targeted (shown as pending until they report)
    env: dict[str, str] = field(default_factory=dict)
    kind: str | None = None  # deploy, rollback, provision, ... (defaults to the playbook's stem)


class AnsibleRun:
    """One ``ansible-playbook`` run through ansible-runner. Safe to use from several threads."""

    def __init__(
        self,
        settings: Any,
        spec: RunSpec,
        *,
        run_id: str | None = None,
        actor: str | None = None,
        on_event: EventCallback | None = None,
        on_raw_event: Callable[[dict[str, Any]], None] | None = None,
        on_finish: Callable[[RunResult], None] | None = None,
        ledger_owner: bool = False,
        ansible_root: Path | None = None,
    ) -> None:
        """``ledger_owner``: the caller writes the run's ``run_start``/``run_end`` ledger events itself; the
        callback then only records the per-node outcomes. ``on_raw_event`` gets ansible-runner's event dicts
        as they are; ``on_finish`` gets the result (from the runner thread) before :meth:`wait` returns."""
        self.settings = settings
        self.spec = spec
        self.run_id = run_id or new_run_id()
        self.actor = actor or default_actor()
        self.root = ansible_root or find_ansible_root(settings)
        self.playbook = self._playbook_path(spec.playbook)
        self.kind = spec.kind or self.playbook.stem
        self.run_dir = Path(settings.state_dir) / "runs" / self.run_id
        self.artifact_dir = self.run_dir / "artifacts" / self.run_id
        self.ledger_owner = ledger_owner
        self.queue: queue.Queue[RunEvent] = queue.Queue()
        self._subscribers: list[EventCallback] = [on_event] if on_event else []
        self._raw_subscriber = on_raw_event
        self._on_finish = on_finish
        self._lock = threading.RLock()
        self._tracker = RunTracker(spec.hosts, addresses=inventory_addresses(spec.inventory))
        self._events: list[RunEvent] = []
        self._status = "pending"
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._started = datetime.now(UTC)
        self._result: RunResult | None = None
        self._error: str | None = None

    # -- set-up ----------------------------------------------------------------------------------------------

    def _playbook_path(self, playbook: str) -> Path:
        path = Path(playbook)
        if not path.is_absolute():
            name = path if path.suffix else path.with_suffix(".yml")
            path = self.root / "playbooks" / name if len(name.parts) == 1 else self.root / name
        if not path.is_file():
            raise RunError(f"playbook {path} does not exist", hint="see playbooks/ for the available playbooks")
        return path

    def environment(self) -> dict[str, str]:
        """The environment ansible-playbook gets (on top of ours)."""
        cfg = self.root / "ansible.cfg"
        env = {
            "ANSIBLE_CONFIG": str(cfg),
            # ansible-runner sets ANSIBLE_CALLBACK_PLUGINS, which hides ansible.cfg's callback_plugins: name ours.
            "ANSIBLE_CALLBACK_PLUGINS": str(self.root / "plugins" / "callback"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",  # ansible-runner would turn it off; keep Ansible's default
            "ANSIBLE_NOCOLOR": "1",
            "MODELFLEET_LEDGER_URL": str(self.settings.ledger.url),
            "MODELFLEET_RUN_ID": self.run_id,
            "MODELFLEET_ACTOR": self.actor,
            "MODELFLEET_RUN_KIND": self.kind,
            "MODELFLEET_LEDGER_RUN_OWNER": "caller" if self.ledger_owner else "callback",
            # the ledger callback ends the playbook if this process dies (runners/controller_watch.py)
            "MODELFLEET_CONTROLLER_PID": str(os.getpid()),
        }
        for key in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_CALLBACKS_ENABLED"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(self.spec.env)
        return env

    @property
    def effective_limit(self) -> str:
        """The operator's limit plus ``localhost``: the playbooks pin, bundle and lock on the controller in
        ``hosts: localhost`` plays, which a plain ``--limit edge_cpu`` would skip (and the node plays then miss
        the controller's facts)."""
        limit = self.spec.limit or ""
        parts = [p.strip() for p in limit.replace(":", ",").split(",") if p.strip()]
        return limit if "localhost" in parts else f"{limit},localhost"

    def command(self) -> list[str]:
        """The equivalent plain command line (for logs and ``run.json``)."""
        cmd = [ansible_playbook_binary(), "-i", str(self.spec.inventory), str(self.playbook)]
        if self.spec.limit:
            cmd += ["--limit", self.effective_limit]
        if self.spec.check:
            cmd.append("--check")
        if self.spec.diff:
            cmd.append("--diff")
        if self.spec.extra_vars:
            cmd += ["-e", json.dumps(self.spec.extra_vars, sort_keys=True)]
        return cmd

    # -- running ---------------------------------------------------------------------------------------------

    def subscribe(self, callback: EventCallback) -> None:
        """Call ``callback(event)`` for every later event (from the runner's thread: keep it quick)."""
        with self._lock:
            self._subscribers.append(callback)

    def start(self) -> AnsibleRun:
        """Start the run in the background and return at once. Raises RunError if it cannot start."""
        with self._lock:
            if self._thread is not None:
                raise RunError(f"run {self.run_id} was already started")
            if not Path(self.spec.inventory).is_file() and not Path(self.spec.inventory).is_dir():
                raise RunError(f"inventory {self.spec.inventory} does not exist",
                               hint="run `modelfleet sim up`, or set fleet.inventory / pass --inventory")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._started = datetime.now(UTC)
            self._status = "starting"
            self._write_meta()
            self._thread = threading.Thread(target=self._run, name=f"ansible-run-{self.run_id}", daemon=True)
            self._thread.start()
        return self

    def run(self, timeout: float | None = None) -> RunResult:
        """Start, wait and return the result."""
        self.start()
        return self.wait(timeout)

    def _run(self) -> None:
        try:
            import ansible_runner

            # `binary` puts ansible-runner in raw mode, where the playbook goes on the command line with the rest
            cmdline: list[str] = [str(self.playbook)]
            if self.spec.check:
                cmdline.append("--check")
            if self.spec.diff:
                cmdline.append("--diff")
            kwargs: dict[str, Any] = {
                "private_data_dir": str(self.run_dir),
                "project_dir": str(self.root),
                "ident": self.run_id,
                "inventory": str(Path(self.spec.inventory).resolve()),
                "extravars": dict(self.spec.extra_vars),
                "envvars": self.environment(),
                "binary": ansible_playbook_binary(),
                "quiet": True,
                "suppress_env_files": True,
                "event_handler": self._on_raw_event,
                "status_handler": self._on_status,
                "cancel_callback": self._cancel.is_set,
                "settings": {"pexpect_timeout": 0.5, "suppress_ansible_output": True},
                "verbosity": self.spec.verbosity or None,
            }
            kwargs["cmdline"] = " ".join(shlex.quote(c) for c in cmdline)
            if self.spec.limit:
                kwargs["limit"] = self.effective_limit
            if self.spec.forks:
                kwargs["forks"] = self.spec.forks
            runner = ansible_runner.interface.init_runner(**kwargs)
            with self._lock:
                self._runner = runner
            if self._cancel.is_set():
                self._finish("canceled", None)
                return
            runner.run()
            if self._cancel.is_set() or str(runner.status) == "timeout":
                stop_run_leftovers(self.run_id)
            self._finish(str(runner.status), runner.rc)
        except Exception as exc:  # the run could not even start; report it, never kill the caller's thread
            self._error = f"{type(exc).__name__}: {exc}"
            self._finish("error", None)

    def _on_raw_event(self, raw: dict[str, Any]) -> bool:
        if self._raw_subscriber is not None:
            with contextlib.suppress(Exception):
                self._raw_subscriber(raw)
        try:
            event = parse_event(raw)
            with self._lock:
                event = self._tracker.feed(event)
                self._events.append(event)
                subscribers = list(self._subscribers)
            self._publish(event, subscribers)
        except Exception:  # a bad event or subscriber must never stop the run
            pass
        return True  # keep ansible-runner's job_events/*.json for replay

    def _on_status(self, data: dict[str, Any], runner_config: Any = None) -> None:
        status = str(data.get("status", ""))
        with self._lock:
            self._status = status
            subscribers = list(self._subscribers)
        self._publish(RunEvent(EventKind.STATUS, message=status, created=datetime.now(UTC)), subscribers)

    def _publish(self, event: RunEvent, subscribers: list[EventCallback]) -> None:
        self.queue.put(event)
        for callback in subscribers:
            with contextlib.suppress(Exception):
                callback(event)

    def _finish(self, status: str, rc: int | None) -> None:
        with self._lock:
            self._tracker.finish()
            self._status = status
            self._result = RunResult(
                run_id=self.run_id, playbook=self.playbook.name, status=status, rc=rc,
                hosts=dict(self._tracker.hosts), batches=[list(b) for b in self._tracker.batches],
                started=self._started, ended=datetime.now(UTC), artifact_dir=self.artifact_dir,
                stats=self._tracker.stats, error=self._error,
            )
            with contextlib.suppress(OSError):
                self._write_meta()
            result = self._result
        if self._on_finish is not None:
            try:
                self._on_finish(result)
            except Exception as exc:  # e.g. the ledger is down: keep the result, say what went wrong
                self._error = (self._error + "; " if self._error else "") + f"after the run: {exc}"
        self._done.set()
        self.queue.put(RunEvent(EventKind.STATUS, message=f"done:{status}", created=datetime.now(UTC)))

    def _write_meta(self) -> None:
        meta = {
            "run_id": self.run_id, "kind": self.kind, "playbook": str(self.playbook),
            "inventory": str(self.spec.inventory), "limit": self.spec.limit, "check": self.spec.check,
            "extra_vars": self.spec.extra_vars, "actor": self.actor, "started": self._started.isoformat(),
            "status": self._status, "hosts": list(self.spec.hosts),
        }
        with contextlib.suppress(Exception):
            meta["command"] = self.command()
        if self._result is not None:
            meta["result"] = self._result.to_dict()
        tmp = self.run_dir / (RUN_META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_dir / RUN_META)

    # -- control and state -----------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop: ansible-runner kills ansible-playbook's process group within about a second."""
        self._cancel.set()

    @property
    def canceled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends (RunError after ``timeout`` seconds) and return its result."""
        if self._thread is None:
            raise RunError(f"run {self.run_id} was not started")
        if not self._done.wait(timeout):
            raise RunError(f"run {self.run_id} did not finish within {timeout:g}s",
                           hint="cancel it (run.cancel()) or wait longer")
        assert self._result is not None
        return self._result

    def hosts(self) -> dict[str, HostState]:
        """A snapshot of every host's state so far."""
        with self._lock:
            return dict(self._tracker.hosts)

    def batches(self) -> list[list[str]]:
        with self._lock:
            return [list(b) for b in self._tracker.batches]

    def event_log(self) -> list[RunEvent]:
        """A snapshot of the events so far."""
        with self._lock:
            return list(self._events)

    def events(self, poll_s: float = 0.2) -> Iterator[RunEvent]:
        """Yield events from :attr:`queue` as they arrive until the run is over (one consumer only)."""
        while True:
            try:
                event = self.queue.get(timeout=poll_s)
            except queue.Empty:
                if self._done.is_set() and self.queue.empty():
                    return
                continue
            if event.kind is EventKind.STATUS and (event.message or "").startswith("done:"):
                return
            yield event


# -- past runs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PastRun:
    run_id: str
    kind: str | None
    playbook: str | None
    started: str | None
    status: str | None
    run_dir: Path
    meta: dict[str, Any]


def list_runs(state_dir: Path, limit: int | None = None) -> list[PastRun]:
    """Runs under ``<state_dir>/runs/``, newest first."""
    base = Path(state_dir) / "runs"
    if not base.is_dir():
        return []
    out: list[PastRun] = []
    for folder in sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((folder / RUN_META).read_text(encoding="utf-8"))
        status = meta.get("status")
        if status not in DONE_STATUSES:
            status_file = folder / "artifacts" / folder.name / "status"
            if status_file.is_file():
                status = status_file.read_text(encoding="utf-8").strip()
            elif status in ("starting", "running", "pending"):
                status = "incomplete"
        out.append(PastRun(folder.name, meta.get("kind"), meta.get("playbook"), meta.get("started"), status,
                           folder, meta))
        if limit and len(out) >= limit:
            break
    return out


def load_events(run_dir: Path) -> list[dict[str, Any]]:
    """The raw ansible-runner events of a past run, in order."""
    run_dir = Path(run_dir)
    events_dir = run_dir / "artifacts" / run_dir.name / "job_events"
    if not events_dir.is_dir():
        raise RunError(f"run {run_dir.name} has no recorded events ({events_dir} is missing)")
    raw: list[dict[str, Any]] = []
    for path in events_dir.glob("*.json"):
        if path.name.endswith("-partial.json"):
            continue
        with contextlib.suppress(OSError, ValueError):
            raw.append(json.loads(path.read_text(encoding="utf-8")))
    raw.sort(key=lambda e: int(e.get("counter") or 0))
    return raw


def replay(state_dir: Path, run_id: str, on_event: EventCallback | None = None,
           speed: float | None = None) -> tuple[list[RunEvent], dict[str, HostState], list[list[str]]]:
    """Rebuild a past run: its typed events, final host states and batches. ``on_event`` gets each event;
    with ``speed`` (e.g. 1.0 real time, 10.0 ten times faster) the events are paced like the original run."""
    run_dir = Path(state_dir) / "runs" / run_id
    if not run_dir.is_dir():
        known = ", ".join(r.run_id for r in list_runs(state_dir, limit=5)) or "none"
        raise RunError(f"no run {run_id} under {Path(state_dir) / 'runs'}; recent runs: {known}")
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((run_dir / RUN_META).read_text(encoding="utf-8"))
    tracker = RunTracker(meta.get("hosts") or (), addresses=inventory_addresses(Path(meta.get("inventory") or "")))
    events: list[RunEvent] = []
    previous: datetime | None = None
    for raw in load_events(run_dir):
        event = tracker.feed(parse_event(raw))
        if speed and previous and event.created:
            time.sleep(max(0.0, min(5.0, (event.created - previous).total_seconds() / speed)))
        previous = event.created or previous
        events.append(event)
        if on_event:
            on_event(event)
    tracker.finish()
    return events, dict(tracker.hosts), tracker.batches


def console_launch(settings: Any, request: Any, on_event: Callable[[dict[str, Any]], None]) -> Any:
    """The console's entry point (see :func:`modelfleet.runners.rollout.console_launch`)."""
    from modelfleet.runners.rollout import console_launch as launch

    return launch(settings, request, on_event)
