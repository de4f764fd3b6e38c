"""The one fold of a run's events into per-host outcomes.

Everything that shows or records what a run did reads it from :class:`RunState`: the CLI's live progress and
recap, the console's live and replayed run views, and the ledger callback inside ``ansible-playbook`` (which
records the per-node events). They all feed it ansible-runner's event dicts (the callback builds the same dicts
from its callback arguments), so a replay shows exactly what the live run showed and the ledger says what the
screen said. Pure: no Ansible, no ansible-runner, no Textual import.

Host outcomes depend on the kind of run (one rule, :meth:`HostRun.outcome`):

========== ===================================================================================================
outcome    meaning
========== ===================================================================================================
pending    targeted, no result yet (live only)
running    has results, its wave is not over (live only)
ok         done, nothing changed
changed    done, something changed
rolled_back  a rollback run switched it back (success)
reverted   a deploy failed its health gate (or the budget was spent) and it is back on its previous release
failed     a task failed and was not rescued, or the module refused (lock held, nothing to roll back to, ...)
unreachable  no connection
skipped    every task was skipped
not_started  the run ended (budget spent, cancelled, controller step failed) before this host's wave
interrupted  the run was cancelled (or timed out) while this host's wave was in progress: the node is on whatever
           its last atomic step left (its deployments.jsonl says which)
========== ===================================================================================================

A host is marked switched back when a result carries ``modelfleet_rolled_back: true`` (the ``modelfleet_release``
module's marker), the fact ``model_release_outcome: rolled_back``, or the run's custom stats list it; a result
delegated to another node (the revert of nodes a spent budget leaves updated) marks the node it was delegated to.
The fact ``model_release_outcome`` (the node module's own word: deployed, already_current, locked, ...) and
``model_release_version`` are kept per host as ``node_outcome`` and ``version``.

Run outcome (:meth:`RunState.outcome`): ``incomplete`` when the run was cancelled, timed out or could not start;
``failed`` when a controller step failed, any host's outcome is bad, or ansible-playbook failed; else ``ok``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelfleet.runners.events import (
    HOST_RESULT_KINDS,
    EventKind,
    RunEvent,
    agent_port_of,
    delegated,
    is_switch_back,
    parse_event,
)

MAX_LINES = 5000  # run output kept in memory (the artifact folder keeps everything)
MAX_TASKS_PER_HOST = 400  # task results kept per host for the drill-down
MAX_RESULT_CHARS = 4000  # one task result kept for the drill-down, truncated
CONTROLLER_HOSTS = frozenset({"localhost", "127.0.0.1"})
FINISHED = frozenset({"successful", "failed", "canceled", "timeout", "error"})
INCOMPLETE_STATUSES = frozenset({"canceled", "timeout", "error"})


class HostOutcome(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    CHANGED = "changed"
    ROLLED_BACK = "rolled_back"
    REVERTED = "reverted"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"
    NOT_STARTED = "not_started"
    INTERRUPTED = "interrupted"

    @property
    def bad(self) -> bool:
        return self in BAD_OUTCOMES

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


BAD_OUTCOMES = frozenset({HostOutcome.REVERTED, HostOutcome.FAILED, HostOutcome.UNREACHABLE,
                          HostOutcome.NOT_STARTED, HostOutcome.INTERRUPTED})
#: order in summaries
OUTCOME_ORDER = tuple(HostOutcome)


@dataclass
class TaskResult:
    play: str
    task: str
    host: str
    status: str  # ok | changed | failed | unreachable | skipped
    msg: str = ""
    result: str = ""  # JSON of the module result, truncated
    counter: int = 0


@dataclass
class HostRun:
    """What one host did in a run so far."""

    name: str
    batch: int | None = None
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    switched_back: bool = False
    failing: bool = False  # the latest result failed (not rescued), or the final stats count failures
    done: bool = False  # its wave (or the run) is over
    interrupted: bool = False  # the run stopped (cancelled, timed out) while its wave was in progress
    last_task: str | None = None
    message: str | None = None  # the latest failure message
    agent_port: int | None = None
    node_outcome: str | None = None  # model_release_outcome, the node module's own word
    version: str | None = None  # model_release_version as the node reported it
    old_release: str | None = None  # the release a reverted node is back on (model_release_old_link)
    broke_lock: dict[str, Any] | None = None
    observed: dict[str, Any] | None = None  # what the node holds for the model (a reconcile run's observe step)
    tasks: deque[TaskResult] = field(default_factory=lambda: deque(maxlen=MAX_TASKS_PER_HOST))

    def outcome(self, kind: str, *, final: bool | None = None) -> HostOutcome:
        """This host's outcome in a run of ``kind`` (see the module docstring); ``final`` settles a host
        whose wave is over (default: :attr:`done`)."""
        final = self.done if final is None else final
        if self.unreachable:
            return HostOutcome.UNREACHABLE
        if self.switched_back and kind != "rollback":
            return HostOutcome.REVERTED
        if self.failing:
            return HostOutcome.FAILED
        if self.switched_back:
            return HostOutcome.ROLLED_BACK
        if self.interrupted:
            return HostOutcome.INTERRUPTED
        if not final:
            return HostOutcome.RUNNING if (self.ok or self.skipped or self.tasks) else HostOutcome.PENDING
        if self.changed:
            return HostOutcome.CHANGED
        if self.ok:
            return HostOutcome.OK
        if self.skipped:
            return HostOutcome.SKIPPED
        return HostOutcome.NOT_STARTED

    def to_dict(self, kind: str) -> dict[str, Any]:
        return {
            "host": self.name, "outcome": self.outcome(kind).value, "batch": self.batch, "ok": self.ok,
            "changed": self.changed, "failed": self.failed, "unreachable": self.unreachable,
            "skipped": self.skipped, "rescued": self.rescued, "switched_back": self.switched_back,
            "last_task": self.last_task, "message": self.message, "agent_port": self.agent_port,
            "node_outcome": self.node_outcome, "version": self.version,
        }


@dataclass
class PlayState:
    name: str
    uuid: str
    batch: int = 1
    hosts: set[str] = field(default_factory=set)
    tasks: int = 0
    done: bool = False


class RunState:
    """Folds one run's ansible-runner event dicts. Not thread-safe: one owner feeds it."""

    def __init__(self, run_id: str, *, kind: str = "", hosts: Iterable[str] = (),
                 addresses: Mapping[str, str] | None = None, max_lines: int = MAX_LINES,
                 keep_tasks: bool = True) -> None:
        """``hosts``: the hosts the run targets (shown as pending until they report); ``addresses``:
        ansible_host -> inventory name, to place results delegated to another node; ``keep_tasks``: keep each
        host's task results for a drill-down (the console), not only its counts and outcome."""
        self.run_id = run_id
        self.kind = kind
        self.keep_tasks = keep_tasks
        self.hosts: dict[str, HostRun] = {h: HostRun(h) for h in hosts}
        self.targeted = len(self.hosts)
        self.plays: list[PlayState] = []
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.dropped_lines = 0
        self.status = "pending"  # pending | running | successful | failed | canceled | timeout | error
        self.rc: int | None = None
        self.error: str | None = None
        self.controller_error: str | None = None  # a failed controller-side step (the run cannot be ok)
        self.current_task = ""
        self.events = 0
        self.stats: dict[str, Any] | None = None
        self._by_address = dict(addresses or {})
        self._play_batches: dict[str, int] = {}
        self._batches: list[tuple[str, list[str]]] = []  # (play key, hosts) per batch, in order
        self._batch_index: int | None = None
        self._controller_failures: dict[str, int] = {}  # host -> failures of controller steps reported under it

    # -- folding -------------------------------------------------------------------------------------------

    def feed(self, raw: Mapping[str, Any]) -> RunEvent:
        """Fold one ansible-runner event dict; returns it typed, with its batch number."""
        self.events += 1
        if self.status == "pending":
            self.status = "running"
        stdout = raw.get("stdout")
        if stdout:
            for line in str(stdout).splitlines():
                if len(self.lines) == self.lines.maxlen:
                    self.dropped_lines += 1
                self.lines.append(line)
        event = parse_event(raw)
        play = self.plays[-1] if self.plays else None
        if event.kind is EventKind.PLAY_START:
            return self._play_start(event)
        if play is not None:
            event = event.with_batch(play.batch)
        if event.kind is EventKind.TASK_START:
            self.current_task = event.task or ""
            if play is not None:
                play.tasks += 1
        elif event.kind is EventKind.STATS:
            self._stats(event.data)
        elif event.kind in HOST_RESULT_KINDS and event.host:
            data = raw.get("event_data")
            res = data.get("res") if isinstance(data, Mapping) else None
            self._host_result(event, res if isinstance(res, Mapping) else {})
        return event

    def _play_start(self, event: RunEvent) -> RunEvent:
        if self.plays:
            self._close_play(self.plays[-1])
        key = event.play_uuid or event.play or str(len(self.plays))
        self._play_batches[key] = self._play_batches.get(key, 0) + 1
        batch = self._play_batches[key]
        self.plays.append(PlayState(event.play or "play", key, batch))
        self._batch_index = None
        return event.with_batch(batch)

    def target(self, hosts: Iterable[str]) -> None:
        """More hosts the run targets (a plain ansible-playbook run learns them play by play)."""
        for name in hosts:
            if name not in CONTROLLER_HOSTS and name not in self.hosts:
                self.hosts[name] = HostRun(name)
        self.targeted = max(self.targeted, len(self.hosts))

    def _host(self, name: str) -> HostRun:
        hs = self.hosts.get(name)
        if hs is None:
            hs = self.hosts[name] = HostRun(name)
        return hs

    def _note_batch(self, host: str) -> None:
        play = self.plays[-1] if self.plays else None
        if self._batch_index is None:
            self._batches.append((play.uuid if play else "", []))
            self._batch_index = len(self._batches) - 1
        hosts = self._batches[self._batch_index][1]
        if host not in hosts:
            hosts.append(host)

    def _host_result(self, event: RunEvent, res: Mapping[str, Any]) -> None:
        name = event.host or ""
        kind = event.kind
        target, address = delegated(res)
        if name in CONTROLLER_HOSTS or target in CONTROLLER_HOSTS or address in CONTROLLER_HOSTS:
            # the controller's own steps (the pin play's run_once tasks delegated to localhost report under the
            # first target node): they fail the run, and never make a node look reached
            if kind in (EventKind.HOST_FAILED, EventKind.HOST_UNREACHABLE):
                if not self.controller_error:
                    self.controller_error = f"{event.task or 'controller step'}: {event.message or 'failed'}"
                self._controller_failures[name] = self._controller_failures.get(name, 0) + 1
            return
        play = self.plays[-1] if self.plays else None
        if play is not None:
            play.hosts.add(name)
        self._note_batch(name)
        hs = self._host(name)
        if hs.batch is None:
            hs.batch = event.batch
        hs.last_task = event.task or hs.last_task
        switch_back = kind is not EventKind.HOST_SKIPPED and is_switch_back(res)
        if switch_back:
            if target is None and address:  # ansible-core 2.19 keeps only the delegate's ansible_host
                target = self._by_address.get(address) or (address if address in self.hosts else None)
            if address and target is None:
                switch_back = False  # delegated to a node we cannot name: not this host's revert
            elif target and target != name:
                self._host(target).switched_back = True
                switch_back = False
        if kind is EventKind.HOST_OK:
            hs.ok += 1
            hs.ignored += 1 if event.ignored else 0
        elif kind is EventKind.HOST_CHANGED:
            hs.ok += 1
            hs.changed += 1
        elif kind is EventKind.HOST_FAILED:
            hs.failed += 1
        elif kind is EventKind.HOST_UNREACHABLE:
            hs.unreachable += 1
        elif kind is EventKind.HOST_SKIPPED:
            hs.skipped += 1
        if kind in (EventKind.HOST_FAILED, EventKind.HOST_UNREACHABLE):
            hs.failing = True
            hs.message = event.message or hs.message  # the latest failure: a rescued one is superseded
        else:
            hs.failing = hs.unreachable > 0
        if switch_back:
            hs.switched_back = True
        port = agent_port_of(res)
        if port is not None:
            hs.agent_port = port
        self._facts(hs, res, kind)
        if self.keep_tasks:
            hs.tasks.append(self._task_result(event, res, name))

    def _facts(self, hs: HostRun, res: Mapping[str, Any], kind: EventKind) -> None:
        if kind is EventKind.HOST_SKIPPED:
            return
        facts = res.get("ansible_facts")
        if isinstance(facts, Mapping):
            if isinstance(facts.get("model_release_outcome"), str) and facts["model_release_outcome"]:
                hs.node_outcome = facts["model_release_outcome"]
            if facts.get("model_release_version") not in (None, ""):
                hs.version = str(facts["model_release_version"])
            old = facts.get("model_release_old_link")
            if isinstance(old, str) and old:
                hs.old_release = Path(old).name
        if isinstance(res.get("broke_lock"), Mapping):
            hs.broke_lock = dict(res["broke_lock"])
        if isinstance(res.get("observed"), Mapping):
            hs.observed = dict(res["observed"])

    def _task_result(self, event: RunEvent, res: Mapping[str, Any], host: str) -> TaskResult:
        status = event.kind.value.removeprefix("host_")
        try:
            text = json.dumps(dict(res), indent=2, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = str(res)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f"\n... ({len(text) - MAX_RESULT_CHARS} more characters)"
        play = self.plays[-1].name if self.plays else ""
        return TaskResult(play, event.task or self.current_task, host, status, (event.message or "")[:500], text,
                          event.counter)

    def _close_play(self, play: PlayState) -> None:
        """A play (or a serial batch of it) is over: its hosts' outcomes are settled for now."""
        play.done = True
        for name in play.hosts:
            if name in self.hosts:
                self.hosts[name].done = True

    def _stats(self, stats: Mapping[str, Any]) -> None:
        self.stats = dict(stats)
        for play in self.plays:
            self._close_play(play)
        custom = stats.get("custom") or {}
        rolled = custom.get("modelfleet_rolled_back") if isinstance(custom, Mapping) else None
        for name in rolled if isinstance(rolled, list) else []:
            if name in self.hosts:
                self.hosts[name].switched_back = True
        failures, dark = stats.get("failures") or {}, stats.get("dark") or {}
        for name in CONTROLLER_HOSTS:
            if (failures.get(name) or dark.get(name)) and not self.controller_error:
                self.controller_error = "a controller step failed"
        for name, n in (stats.get("rescued") or {}).items():
            if name in self.hosts:
                self.hosts[name].rescued = int(n)
        for name, hs in self.hosts.items():
            if dark.get(name) and not hs.unreachable:
                hs.unreachable = int(dark[name])
            own = int(failures.get(name) or 0) - self._controller_failures.get(name, 0)  # not the controller's
            hs.failing = bool(own > 0 or dark.get(name))
            hs.failed = max(hs.failed, own)
            if hs.ok or hs.changed or hs.failed or hs.unreachable or hs.skipped:
                hs.done = True

    def finish(self, status: str, rc: int | None = None, error: str | None = None) -> None:
        """The run is over (``status`` as ansible-runner says it); every host's outcome is final."""
        self.status = status
        self.rc = rc
        self.error = error or self.error
        stopped = status in INCOMPLETE_STATUSES
        for play in self.plays:
            play.done = True
        for hs in self.hosts.values():
            if stopped and not hs.done and (hs.ok or hs.skipped or hs.failed or hs.tasks):
                hs.interrupted = True
            hs.done = True

    # -- reading -------------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def host_outcome(self, name: str) -> HostOutcome:
        return self.hosts[name].outcome(self.kind)

    def outcomes(self) -> dict[str, HostOutcome]:
        return {name: hs.outcome(self.kind) for name, hs in self.hosts.items()}

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in OUTCOME_ORDER}
        for outcome in self.outcomes().values():
            out[outcome.value] += 1
        return out

    @property
    def batches(self) -> list[list[str]]:
        """The hosts of each batch of the rollout play (the play with the most batches; the last on a tie)."""
        per_play: dict[str, int] = {}
        for key, _ in self._batches:
            per_play[key] = per_play.get(key, 0) + 1
        if not per_play:
            return []
        best = max(per_play.values())
        play = next(k for k, _ in reversed(self._batches) if per_play[k] == best)
        return [list(hosts) for key, hosts in self._batches if key == play]

    @property
    def changed_hosts(self) -> int:
        return sum(1 for hs in self.hosts.values() if hs.changed)

    def outcome(self) -> str:
        """The run's outcome: running, ok, failed or incomplete (see the module docstring)."""
        if not self.finished:
            return "running"
        if self.status in INCOMPLETE_STATUSES:
            return "incomplete"
        if self.controller_error or self.status != "successful":
            return "failed"
        return "failed" if any(o.bad for o in self.outcomes().values()) else "ok"

    def problem(self) -> str | None:
        """One line on why the run is not ok (None when it is, or still running)."""
        outcome = self.outcome()
        if outcome in ("ok", "running"):
            return None
        if outcome == "incomplete":
            return self.error or {"canceled": "cancelled", "timeout": "timed out"}.get(self.status, self.status)
        if self.controller_error:
            return f"controller: {self.controller_error}"
        bad = [(n, o) for n, o in self.outcomes().items() if o.bad]
        if bad:
            name, o = bad[0]
            msg = self.hosts[name].message
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            return f"{name} {o.label}{': ' + msg if msg else ''}{more}"
        return self.error or f"ansible-playbook ended {self.status} (rc {self.rc})"

    def progress(self) -> tuple[int, int | None]:
        """(hosts whose wave is over, hosts expected or None)."""
        done = sum(1 for hs in self.hosts.values() if hs.done)
        total = self.targeted or len(self.hosts) or None
        if self.finished and total is not None:
            return total, total
        return done, total

    def search(self, needle: str) -> list[str]:
        n = needle.lower()
        return [line for line in self.lines if n in line.lower()] if n else list(self.lines)

    def summary(self) -> str:
        """``deploy 2026...-abc: ok (2 changed, 1 ok)`` in the one outcome vocabulary."""
        counts = self.counts()
        parts = [f"{counts[o.value]} {o.label}" for o in OUTCOME_ORDER if counts[o.value]]
        return f"{self.kind or 'run'} {self.run_id}: {self.outcome()}" + (f" ({', '.join(parts)})" if parts else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "kind": self.kind, "outcome": self.outcome(), "status": self.status,
            "rc": self.rc, "problem": self.problem(), "controller_error": self.controller_error,
            "batches": self.batches, "hosts": {n: hs.to_dict(self.kind) for n, hs in self.hosts.items()},
            "counts": {k: v for k, v in self.counts().items() if v},
        }


# -- replay from artifacts ------------------------------------------------------------------------------------


def iter_artifact_events(artifact_dir: Path) -> Iterator[dict[str, Any]]:
    """Events of an ansible-runner run from ``.../artifacts/<ident>/job_events/*.json``, in order."""
    events_dir = Path(artifact_dir) / "job_events"
    if not events_dir.is_dir():
        return
    files: list[tuple[int, Path]] = []
    for p in events_dir.glob("*.json"):
        if p.name.endswith("-partial.json"):
            continue
        head = p.name.split("-", 1)[0]
        files.append((int(head) if head.isdigit() else 1 << 30, p))
    for _, p in sorted(files):
        try:
            yield json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue


def artifact_status(artifact_dir: Path) -> tuple[str, int | None]:
    """(status, rc) from an artifact folder's ``status`` and ``rc`` files (``incomplete`` when missing)."""
    def read(name: str) -> str | None:
        try:
            return (Path(artifact_dir) / name).read_text(encoding="utf-8").strip()
        except OSError:
            return None

    status = read("status") or "incomplete"
    rc = read("rc")
    return status, int(rc) if rc and rc.lstrip("-").isdigit() else None
