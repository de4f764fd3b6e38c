"""The one run pipeline: every action that changes something (or checks it through a playbook) is a run.

::

    request (runners/requests.py)  --prepare-->  PreparedRun  --launch-->  RunHandle
       typed, per kind                checked,        writes run_start,     events (typed, raw), wait, cancel;
                                      pinned,         starts the executor   the fold (RunState) -> RunResult;
                                      writes nothing                        writes run_end

The CLI, the console and a drift action all call :func:`launch` (the console calls :func:`prepare` first to show
what will run, then launches that prepared run). The executor (``runners/ansible.py``) runs the playbook; the
ledger callback inside ``ansible-playbook`` writes the per-node events with the same fold
(``runners/runstate.py``) and the same rules (``runners/records.py``) as this module uses for ``run_end``. A run
refused while preparing writes nothing; a run that started always ends with ``run_end`` unless this process is
killed (then the next run of the model on this host closes it as ``incomplete``)::

    handle = launch(settings, DeployRequest(ref="credit-risk@champion", limit="edge_cpu"), on_event=show)
    result = handle.wait()            # RunResult: outcome ok | failed | incomplete, per-host outcomes
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import RunError
from modelfleet.runners.ansible import RUN_META, AnsibleRun, RunSpec, default_actor, inventory_addresses, new_run_id
from modelfleet.runners.events import RunEvent
from modelfleet.runners.executor import ExecResult
from modelfleet.runners.infra_state import InfraState
from modelfleet.runners.records import RunIdentity, RunRecorder, close_dead_runs, ended_runs
from modelfleet.runners.requests import PreparedRun, Progress, RunRequest
from modelfleet.runners.runstate import HostRun, RunState, artifact_status, iter_artifact_events

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.deploy import Release
    from modelfleet.core.ledger import Ledger
    from modelfleet.runners.terraform import TerraformRun

EventCallback = Callable[[Any], None]  # RunEvent (playbooks) or TerraformEvent
RawEventCallback = Callable[[dict[str, Any]], None]
#: run kinds whose nodes take the model's deploy lock (the nodes are told which lock holders have ended)
LOCKING_KINDS = frozenset({"deploy", "rollback", "unlock"})
#: run kinds that first close this host's dead runs of the model (a reconcile reads what a dead run did)
CLOSING_KINDS = LOCKING_KINDS | {"reconcile"}


@dataclass(frozen=True)
class RunResult:
    """How a run ended, folded once: the same for the CLI's recap, ``--json``, the console and ``run_end``."""

    run_id: str
    kind: str
    summary: str
    outcome: str  # ok | failed | incomplete
    status: str  # the executor's: successful | failed | canceled | timeout | error
    rc: int | None
    hosts: Mapping[str, HostRun]
    counts: Mapping[str, int]
    batches: list[list[str]]
    started: datetime
    ended: datetime
    artifact_dir: Path
    problem: str | None = None
    release: Release | None = None
    check: bool = False
    executor_result: ExecResult | None = None  # what the executor returned (a Terraform run: plan, outputs, ...)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def duration_s(self) -> float:
        return (self.ended - self.started).total_seconds()

    @property
    def changed(self) -> int:
        return sum(1 for h in self.hosts.values() if h.changed)

    def outcome_of(self, host: str) -> str:
        return self.hosts[host].outcome(self.kind, final=True).value

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "kind": self.kind, "summary": self.summary, "outcome": self.outcome,
            "ok": self.ok, "status": self.status, "rc": self.rc, "problem": self.problem, "check": self.check,
            "counts": dict(self.counts), "changed": self.changed, "batches": self.batches,
            "started": self.started.isoformat(), "ended": self.ended.isoformat(),
            "duration_s": round(self.duration_s, 3), "artifacts": str(self.artifact_dir),
            "release": self.release.to_dict() if self.release else None,
            "hosts": {name: h.to_dict(self.kind) for name, h in self.hosts.items()},
            **({"executor": self.executor_result.ledger_details()} if self.executor_result is not None else {}),
        }


def prepare(settings: Settings, request: RunRequest, *, run_id: str | None = None,
            progress: Progress | None = None) -> PreparedRun:
    """Check, pin and bundle what ``request`` needs; writes nothing. Raises a ModelfleetError when refused."""
    return request.prepare(settings, run_id=run_id or new_run_id(), progress=progress)


class RunHandle:
    """A started run. Thread-safe: events arrive from the executor's thread, callers wait or cancel from theirs."""

    def __init__(self, settings: Settings, prepared: PreparedRun, actor: str) -> None:
        self.settings = settings
        self.prepared = prepared
        self.run_id = prepared.run_id
        self.kind = prepared.kind
        self.actor = actor
        self._lock = threading.RLock()
        self._state: RunState | InfraState
        if prepared.executor == "terraform":
            self._state = InfraState(self.run_id, kind=prepared.kind)
        else:
            addresses = inventory_addresses(prepared.inventory)
            self._state = RunState(self.run_id, kind=prepared.kind, hosts=prepared.hosts, addresses=addresses)
        self._subscribers: list[EventCallback] = []
        self._pending_subscribers: list[Any] = []  # a Terraform run's, until its executor exists
        self._raw_subscribers: list[RawEventCallback] = []
        self._queue: queue.Queue[RunEvent | None] = queue.Queue()
        self._done = threading.Event()
        self._result: RunResult | None = None
        self._executor: AnsibleRun | TerraformRun | None = None
        self._recorder: RunRecorder | None = None
        self._ledger: Ledger | None = None
        self._started = datetime.now(UTC)

    # -- subscribing -----------------------------------------------------------------------------------------

    def subscribe(self, callback: EventCallback) -> None:
        """``callback(event)`` for every later typed event (from the executor's thread: keep it quick). A
        Terraform run's typed events come from its executor (they include its steps' starts and ends)."""
        with self._lock:
            executor = self._executor
            if self.prepared.executor != "terraform":
                self._subscribers.append(callback)
                return
            if executor is None:
                self._pending_subscribers.append(callback)
                return
        executor.subscribe(callback)  # type: ignore[union-attr]

    def subscribe_raw(self, callback: RawEventCallback) -> None:
        """``callback(raw)`` with ansible-runner's event dict, e.g. to feed a RunState of your own."""
        with self._lock:
            self._raw_subscribers.append(callback)

    def events(self, poll_s: float = 0.2) -> Iterator[RunEvent]:
        """Yield the typed events as they arrive, until the run is over (one consumer)."""
        while True:
            try:
                event = self._queue.get(timeout=poll_s)
            except queue.Empty:
                if self._done.is_set() and self._queue.empty():
                    return
                continue
            if event is None:
                return
            yield event

    # -- state ---------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """A snapshot of the fold so far (``RunState.to_dict()``)."""
        with self._lock:
            return self._state.to_dict()

    def hosts(self) -> dict[str, HostRun]:
        """The hosts folded so far (shared objects: read them, don't keep them across events)."""
        with self._lock:
            return dict(self._state.hosts)

    @property
    def artifact_dir(self) -> Path:
        return Path(self.settings.state_dir) / "runs" / self.run_id / "artifacts" / self.run_id

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends (RunError after ``timeout``) and return its result."""
        if not self._done.wait(timeout):
            raise RunError(f"run {self.run_id} did not finish within {timeout:g}s",
                           hint="cancel it (handle.cancel()) or wait longer")
        assert self._result is not None
        return self._result

    def hold(self) -> None:
        """Hold the run before its next play or wave: the wave in progress finishes its tasks, no further host
        is touched until :meth:`resume` (or :meth:`cancel`). The console holds a run while it asks whether to
        cancel it, so that what the question promises stays true however long the operator takes."""
        with self._lock:
            executor = self._executor
        if isinstance(executor, AnsibleRun) and not self.done:
            executor.hold()

    def resume(self) -> None:
        with self._lock:
            executor = self._executor
        if isinstance(executor, AnsibleRun):
            executor.resume()

    def cancel(self) -> None:
        """Stop the run: ansible-playbook and whatever it left running are stopped; run_end says incomplete."""
        with self._lock:
            executor = self._executor
        if executor is not None:
            executor.cancel()

    # -- driven by launch() and the executor ---------------------------------------------------------------------

    def _on_raw(self, raw: dict[str, Any]) -> None:
        with self._lock:
            event: Any = self._state.feed(raw)
            subscribers = list(self._subscribers)
            raw_subscribers = list(self._raw_subscribers)
        self._queue.put(event)
        for callback in raw_subscribers:
            with contextlib.suppress(Exception):
                callback(raw)
        for sub in subscribers:
            with contextlib.suppress(Exception):
                sub(event)

    def _on_finish(self, result: ExecResult) -> None:
        with self._lock:
            self._state.finish(result.status, result.rc, result.error)
            state = self._state
            try:
                if self._recorder is not None:
                    self._recorder.end(state, duration_s=result.duration_s, **result.ledger_details())
            finally:
                if self._ledger is not None:
                    self._ledger.close()
            self._result = _result_of(state, self.prepared, self._started, result.ended, result.artifact_dir,
                                      result)
        self._queue.put(None)
        self._done.set()

    def _refused_start(self, error: str) -> None:
        with self._lock:
            self._state.finish("error", None, error)
            if self._recorder is not None:
                with contextlib.suppress(Exception):
                    self._recorder.end(self._state)
            if self._ledger is not None:
                self._ledger.close()
            self._result = _result_of(self._state, self.prepared, self._started, datetime.now(UTC),
                                      self.artifact_dir)
        self._queue.put(None)
        self._done.set()


def _result_of(state: RunState | InfraState, prepared: PreparedRun, started: datetime, ended: datetime,
               artifact_dir: Path, executor_result: ExecResult | None = None) -> RunResult:
    return RunResult(
        run_id=state.run_id, kind=state.kind, summary=prepared.summary, outcome=state.outcome(),
        status=state.status, rc=state.rc, hosts=dict(state.hosts), counts={k: v for k, v in state.counts().items()
                                                                           if v},
        batches=state.batches, started=started, ended=ended, artifact_dir=artifact_dir, problem=state.problem(),
        release=prepared.release, check=prepared.check, executor_result=executor_result)


def launch(
    settings: Settings,
    run: RunRequest | PreparedRun,
    *,
    on_event: EventCallback | None = None,
    on_raw_event: RawEventCallback | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> RunHandle:
    """Prepare ``run`` (unless it is prepared already), record ``run_start`` and start it; returns at once.

    Raises a ModelfleetError, having written nothing, when the request is refused."""
    from modelfleet.core.ledger import Ledger

    prepared = run if isinstance(run, PreparedRun) else prepare(settings, run, run_id=run_id, progress=progress)
    actor = prepared.request.actor or default_actor()
    handle = RunHandle(settings, prepared, actor)
    if on_event is not None:
        handle.subscribe(on_event)
    if on_raw_event is not None:
        handle.subscribe_raw(on_raw_event)
    ledger = Ledger(settings.ledger.url)
    extra_vars = dict(prepared.extra_vars)
    details = dict(prepared.details)
    try:
        ledger.ensure_schema()
        if prepared.kind in CLOSING_KINDS and prepared.model and not prepared.check:
            closed, _ = close_dead_runs(ledger, prepared.model, actor=actor, by_run=prepared.run_id)
            if closed:
                details["closed_dead_runs"] = closed
        if prepared.kind in LOCKING_KINDS and prepared.model and not prepared.check:
            extra_vars["model_release_ended_runs"] = ended_runs(ledger, prepared.model)
        executor: AnsibleRun | TerraformRun
        where: dict[str, Any]
        if prepared.executor == "terraform":
            from modelfleet.runners.terraform import InfraRequest, TerraformRun

            assert isinstance(prepared.request, InfraRequest)
            executor = TerraformRun(settings, prepared.request, run_id=prepared.run_id, actor=actor,
                                    on_raw_event=handle._on_raw, on_finish=handle._on_finish)
            for callback in handle._pending_subscribers:
                executor.subscribe(callback)
            where = {"artifacts": str(executor.run_dir)}
        else:
            spec = RunSpec(prepared.playbook, prepared.inventory, extra_vars=extra_vars, limit=prepared.limit,
                           check=prepared.check, hosts=prepared.hosts, kind=prepared.kind)
            executor = AnsibleRun(settings, spec, run_id=prepared.run_id, actor=actor, on_raw_event=handle._on_raw,
                                  on_finish=handle._on_finish, ledger_owner=True)
            where = {"playbook": executor.playbook.name, "artifacts": str(executor.artifact_dir)}
        _write_run_files(settings, prepared)
        if prepared.governance is not None:  # the break-glass records this run uses: loud, before it starts
            seqs = prepared.governance.record(ledger, settings, prepared.run_id)
            if seqs:
                details["governance"] = {**details.get("governance", {}), "break_glass_ledger_seq": seqs}
        recorder = RunRecorder(ledger, RunIdentity(prepared.run_id, prepared.kind, actor,
                                                   prepared.limit or prepared.details.get("env"), prepared.model,
                                                   prepared.version, prepared.digest))
        recorder.start(**{**details, "summary": prepared.summary, "hosts": len(prepared.hosts), **where,
                          "warnings": list(prepared.warnings)})
    except BaseException:
        ledger.close()
        raise
    handle._ledger, handle._recorder, handle._executor = ledger, recorder, executor
    try:
        executor.start()
    except Exception as exc:
        handle._refused_start(str(exc))
        raise
    return handle


def _write_run_files(settings: Settings, prepared: PreparedRun) -> None:
    """The files a prepared run carries (a deploy's clearance.json) into ``<state_dir>/runs/<run id>/``."""
    if not prepared.files:
        return
    run_dir = Path(settings.state_dir) / "runs" / prepared.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in prepared.files.items():
        (run_dir / name).write_text(text, encoding="utf-8")


# -- past runs -----------------------------------------------------------------------------------------------


def replay(settings: Settings, run_id: str, on_raw_event: RawEventCallback | None = None) -> RunState:
    """A past playbook run folded again from its artifact folder: what its live view showed."""
    run_dir, meta = _past_run(settings, run_id)
    state = RunState(run_id, kind=str(meta.get("kind") or ""), hosts=meta.get("hosts") or (),
                     addresses=inventory_addresses(Path(meta.get("inventory") or "")))
    artifacts = run_dir / "artifacts" / run_id
    for raw in iter_artifact_events(artifacts):
        state.feed(raw)
        if on_raw_event is not None:
            on_raw_event(raw)
    status, rc = artifact_status(artifacts)
    ended = meta.get("result")
    result: dict[str, Any] = ended if isinstance(ended, dict) else {}
    state.finish(str(result.get("status") or status), result.get("rc", rc), result.get("error"))
    return state


def replay_any(settings: Settings, run_id: str) -> RunState | InfraState:
    """A past run of either executor folded again: a Terraform run from its ``events.jsonl``, a playbook run from
    its artifact folder (:func:`replay`)."""
    from modelfleet.runners.infra_state import EVENTS, replay_infra

    run_dir, meta = _past_run(settings, run_id)
    if (run_dir / EVENTS).is_file() and meta.get("env"):
        return replay_infra(run_dir, meta)
    return replay(settings, run_id)


def _past_run(settings: Settings, run_id: str) -> tuple[Path, dict[str, Any]]:
    """The folder of a past run and its ``run.json`` (empty when unreadable); RunError when there is none."""
    run_dir = Path(settings.state_dir) / "runs" / run_id
    if not run_dir.is_dir():
        raise RunError(f"no run {run_id} under {run_dir.parent}",
                       hint="only runs started from this machine keep their events; see modelfleet ledger runs")
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((run_dir / RUN_META).read_text(encoding="utf-8"))
    return run_dir, meta
