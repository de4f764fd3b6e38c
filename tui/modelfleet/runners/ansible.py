"""The ``ansible-playbook`` executor: one playbook run through ansible-runner, raw events out, cancel, artifacts.

The run pipeline (:mod:`modelfleet.runners.pipeline`) builds an :class:`AnsibleRun` from a prepared request and
folds its events; nothing else starts playbooks. ::

    run = AnsibleRun(settings, RunSpec("deploy.yml", inventory, extra_vars={...}), on_raw_event=fold)
    run.start()                  # returns at once; ansible-runner works in its own thread
    result = run.wait()          # ExecResult: status, rc, started, ended, artifact folder
    run.cancel()                 # from any thread: ansible-playbook and what it left behind are stopped

Every run has a folder ``<state_dir>/runs/<run_id>/``: ansible-runner's private data dir, with
``artifacts/<run_id>/`` (``job_events/*.json``, ``stdout``, ``rc``, ``status``, ``command``) and ``run.json`` (what
was run, with what, and how it ended). :func:`list_runs` lists them newest first; the pipeline replays a past run
from its ``job_events``. ``ansible-playbook`` runs with the repository's ``ansible.cfg`` (``ANSIBLE_CONFIG``) and
callback path, so the ledger callback records the per-node events; ``MODELFLEET_*`` variables tell it the ledger
URL, the run id, the actor and whether the pipeline writes the run's start and end events itself.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import shlex
import shutil
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfleet.core.errors import RunError
from modelfleet.runners.executor import ExecResult, FinishCallback, RawEventCallback

RUN_META = "run.json"
DONE_STATUSES = frozenset({"successful", "failed", "canceled", "timeout", "error"})
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # tui/modelfleet/runners/ansible.py -> repository root


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
    """One ``ansible-playbook`` run through ansible-runner (an :class:`~modelfleet.runners.executor.Executor`).
    Safe to use from several threads."""

    def __init__(
        self,
        settings: Any,
        spec: RunSpec,
        *,
        run_id: str | None = None,
        actor: str | None = None,
        on_raw_event: RawEventCallback | None = None,
        on_finish: FinishCallback | None = None,
        ledger_owner: bool = False,
        ansible_root: Path | None = None,
    ) -> None:
        """``ledger_owner``: the caller writes the run's ``run_start``/``run_end`` ledger events itself; the
        callback then only records the per-node events. ``on_raw_event`` gets ansible-runner's event dicts as
        they come (from the runner's thread); ``on_finish`` gets the result before :meth:`wait` returns."""
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
        self._on_raw_event = on_raw_event
        self._on_finish = on_finish
        self._lock = threading.RLock()
        self._status = "pending"
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = datetime.now(UTC)
        self._result: ExecResult | None = None
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
            # while this file exists, the ledger callback holds the playbook before its next play or wave
            "MODELFLEET_HOLD_FILE": str(self.hold_file),
            # the controller steps of the playbooks (deploy.yml's governance check, edge_runtime's trust file)
            # read the same policy and state folder as this process
            "MODELFLEET_GOVERNANCE_POLICY_DIR": str(Path(self.settings.governance.policy_dir).resolve()),
            "MODELFLEET_PATHS_STATE_DIR": str(Path(self.settings.state_dir).resolve()),
        }
        for key in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_CALLBACKS_ENABLED"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(self.spec.env)
        return env

    def command(self) -> list[str]:
        """The equivalent plain command line (for logs and ``run.json``)."""
        cmd = [ansible_playbook_binary(), "-i", str(self.spec.inventory), str(self.playbook)]
        if self.spec.limit:
            cmd += ["--limit", self.spec.limit]
        if self.spec.check:
            cmd.append("--check")
        if self.spec.diff:
            cmd.append("--diff")
        if self.spec.extra_vars:
            cmd += ["-e", json.dumps(self.spec.extra_vars, sort_keys=True)]
        return cmd

    # -- running ---------------------------------------------------------------------------------------------

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
                "event_handler": self._event,
                "status_handler": self._on_status,
                "cancel_callback": self._cancel.is_set,
                "settings": {"pexpect_timeout": 0.5, "suppress_ansible_output": True},
                "verbosity": self.spec.verbosity or None,
            }
            kwargs["cmdline"] = " ".join(shlex.quote(c) for c in cmdline)
            if self.spec.limit:
                kwargs["limit"] = self.spec.limit
            if self.spec.forks:
                kwargs["forks"] = self.spec.forks
            runner = ansible_runner.interface.init_runner(**kwargs)
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

    def _event(self, raw: dict[str, Any]) -> bool:
        if self._on_raw_event is not None:
            with contextlib.suppress(Exception):  # a bad event or subscriber must never stop the run
                self._on_raw_event(raw)
        return True  # keep ansible-runner's job_events/*.json for replay

    def _on_status(self, data: dict[str, Any], runner_config: Any = None) -> None:
        with self._lock:
            self._status = str(data.get("status", ""))

    def _finish(self, status: str, rc: int | None) -> None:
        self.resume()
        with self._lock:
            self._status = status
            self._result = ExecResult(status=status, rc=rc, started=self._started, ended=datetime.now(UTC),
                                      artifact_dir=self.artifact_dir, error=self._error)
            with contextlib.suppress(OSError):
                self._write_meta()
            result = self._result
        if self._on_finish is not None:
            try:
                self._on_finish(result)
            except Exception as exc:  # e.g. the ledger is down: keep the result, say what went wrong
                self._error = (self._error + "; " if self._error else "") + f"after the run: {exc}"
        self._done.set()

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
            meta["result"] = {"status": self._result.status, "rc": self._result.rc,
                              "ended": self._result.ended.isoformat(), "error": self._result.error}
        tmp = self.run_dir / (RUN_META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_dir / RUN_META)

    # -- control and state -----------------------------------------------------------------------------------

    @property
    def hold_file(self) -> Path:
        return self.run_dir / "hold"

    def hold(self) -> None:
        """Hold the run before its next play or wave (the wave in progress finishes its tasks)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.hold_file.write_text(f"held by {os.getpid()}\n", encoding="utf-8")

    def resume(self) -> None:
        """Let a held run go on."""
        self.hold_file.unlink(missing_ok=True)

    def cancel(self) -> None:
        """Ask the run to stop: ansible-runner kills ansible-playbook's process group within about a second."""
        self._cancel.set()  # a hold stays until the run is over: lifting it first would let a wave start

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

    def wait(self, timeout: float | None = None) -> ExecResult:
        """Block until the run ends (RunError after ``timeout`` seconds) and return its result."""
        if self._thread is None:
            raise RunError(f"run {self.run_id} was not started")
        if not self._done.wait(timeout):
            raise RunError(f"run {self.run_id} did not finish within {timeout:g}s",
                           hint="cancel it (run.cancel()) or wait longer")
        assert self._result is not None
        return self._result


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
