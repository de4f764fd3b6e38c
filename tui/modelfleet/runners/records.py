"""The ledger's rules for runs: one writer of ``run_start`` / ``run_end`` and of the per-node events.

Who writes what:

* a run started by modelfleet (CLI, console, a drift action): the pipeline (:mod:`modelfleet.runners.pipeline`)
  writes ``run_start`` before anything starts and ``run_end`` when it is over, through :class:`RunRecorder`;
* a plain ``ansible-playbook`` run: the ledger callback writes both, through the same :class:`RunRecorder`;
* in both cases the ledger callback writes one ``node_<kind>`` event per node as soon as the node is done, built
  by :func:`node_event` from the one fold (:class:`~modelfleet.runners.runstate.HostRun`); a reconcile run's
  node events (``node_reconcile``) by :func:`reconcile_event`, which compares what the node holds with the
  ledger's placement and, when they differ, names the run the node's journal says put it there.

A run that loses a node after the node switched (the node went dark, the controller was killed) cannot know
the node's end state; the node's journal does (a deploy journals ``switch`` before it moves ``current``, and
every line names ``current`` after its step). ``modelfleet reconcile MODEL`` reads it back and the ledger gains
a ``node_reconcile`` event (appended like any other, hash-chained): ``agrees``, ``reconciled`` (a run of this
ledger put the node there: placement follows it, core/placement.py) or ``unexplained`` (no run of this ledger
did: placement is left alone, so ``modelfleet health`` keeps saying ``wrong_version``).

A run refused before it starts (bad reference, unknown model, missing key, ...) writes nothing. A run whose
controller died leaves a ``run_start`` without ``run_end``; :func:`close_dead_runs` closes such runs of this host
as ``incomplete`` once their process is gone, and :func:`ended_runs` tells the nodes which lock holders are over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelfleet.core.release_names import release_version

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.ledger import Ledger
    from modelfleet.runners.runstate import HostRun

#: how many of a model's most recent ended runs the nodes are told about (locks of older runs are older still)
ENDED_RUNS_SENT = 500


class FoldedRun(Protocol):
    """What ``run_end`` is written from: a run's fold (``RunState`` for playbooks, ``InfraState`` for Terraform)."""

    status: str
    rc: int | None

    @property
    def changed_hosts(self) -> int: ...

    @property
    def batches(self) -> list[list[str]]: ...

    def outcome(self) -> str: ...

    def counts(self) -> dict[str, int]: ...

    def problem(self) -> str | None: ...


@dataclass(frozen=True)
class RunIdentity:
    """What every ledger event of one run shares."""

    run_id: str
    kind: str
    actor: str
    target: str | None = None
    model: str | None = None
    version: str | None = None
    digest: str | None = None


class RunRecorder:
    """Writes a run's ``run_start`` and ``run_end``."""

    def __init__(self, ledger: Ledger, ident: RunIdentity) -> None:
        self.ledger = ledger
        self.ident = ident

    def _append(self, action: str, outcome: str, details: Mapping[str, Any], **fields: Any) -> None:
        i = self.ident
        self.ledger.append(action, actor=i.actor, model=i.model, version=fields.get("version", i.version),
                           digest=i.digest, target=i.target or "all", run_id=i.run_id, outcome=outcome,
                           details=details)

    def start(self, **details: Any) -> None:
        self._append("run_start", "started", {"kind": self.ident.kind, **controller_identity(), **details})

    def end(self, state: FoldedRun, *, duration_s: float | None = None, **details: Any) -> str:
        """``run_end`` from the fold: outcome, per-outcome counts, batches, the problem in one line."""
        outcome = state.outcome()
        body: dict[str, Any] = {
            "kind": self.ident.kind, "status": state.status, "rc": state.rc,
            "outcomes": {k: v for k, v in state.counts().items() if v}, "changed": state.changed_hosts,
            "batches": [len(b) for b in state.batches], **details,
        }
        if duration_s is not None:
            body["duration_s"] = round(duration_s, 3)
        problem = state.problem()
        if problem:
            body["problem"] = problem[:500]
        self._append("run_end", outcome, body)
        return outcome


def node_event(kind: str, host: HostRun, *, check: bool) -> tuple[str, str, str | None, dict[str, Any]]:
    """(action, outcome, version, details) of the ledger event for one node of a run of ``kind``.

    ``version`` is what the node runs after the run when the run says so: the version a rollback switched to,
    or ``None`` (the run's own version applies). A reverted node names the release it is back on."""
    outcome = host.outcome(kind, final=True)
    details: dict[str, Any] = {
        "kind": kind, "check": check, "batch": host.batch, "ok": host.ok, "changed": host.changed,
        "failed": host.failed, "unreachable": host.unreachable, "skipped": host.skipped, "rescued": host.rescued,
        "last_task": host.last_task, "message": host.message, "agent_port": host.agent_port,
    }
    if host.node_outcome:
        details["node_outcome"] = host.node_outcome
    if host.broke_lock:
        details["broke_lock"] = host.broke_lock
    version: str | None = None
    if kind == "rollback" and host.version:
        version = details["to_version"] = host.version
    elif outcome.value == "reverted" and host.old_release:
        details["to_release"] = host.old_release
        details["to_version"] = release_version(host.old_release)
    return f"node_{kind}", outcome.value, version, details


def explaining_line(current: str, journal: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The node's journal line (of a run) that put ``current`` where it is; None when the journal cannot say.

    Read newest first: a ``switch`` line is a deploy's intent, written before its rename, so it explains
    ``current`` only when ``current`` is what it meant (else the rename never happened: read on); any other line
    names ``current`` after its step, and explains it when that is still where ``current`` points. A line that
    left ``current`` elsewhere means a change nobody journaled came after it (or lines older than this rule)."""
    for line in reversed(journal):
        after = line.get("current")
        if not isinstance(after, str) or not line.get("run_id"):
            continue
        if line.get("action") == "switch":
            if after == current:
                return line
            continue
        return line if after == current else None
    return None


def reconcile_event(ledger: Ledger | None, host: HostRun, *, model: str | None,
                    check: bool) -> tuple[str, str, str | None, dict[str, Any]]:
    """(action, outcome, version, details) of a reconcile run's event for one node: the ledger's placement of
    ``model`` there against what the node reported (:attr:`HostRun.observed`).

    Outcomes: ``agrees``; ``reconciled`` (the node's journal names a run of this ledger that put it there; the
    details carry that run, its kind, version and ``run_start`` seq, and placement follows); ``unexplained``
    (nothing in the journal and the ledger explains it); else the host's outcome (unreachable, failed)."""
    from modelfleet.core.placement import PLACING_ACTIONS, placements

    outcome = host.outcome("reconcile", final=True).value
    details: dict[str, Any] = {"kind": "reconcile", "check": check, "batch": host.batch, "ok": host.ok,
                               "failed": host.failed, "unreachable": host.unreachable, "last_task": host.last_task,
                               "message": host.message}
    observed = host.observed
    if host.outcome("reconcile", final=True).bad or observed is None or ledger is None or not model:
        return "node_reconcile", outcome, None, details
    current = str(observed.get("current") or "")
    version = release_version(current) if current else None
    events = (e for e in ledger.events(model=model, node=host.name) if e.action in PLACING_ACTIONS)
    placed = placements(events, model=model).get((host.name, model))
    details.update(observed_release=current, observed_version=version,
                   placed_version=placed.version if placed else None, lock_holder=observed.get("lock_holder"))
    if (placed.version if placed else None) == version:
        return "node_reconcile", "agrees", version, details
    journal = [line for line in observed.get("journal") or () if isinstance(line, Mapping)]
    line = explaining_line(current, journal)
    run_id = str(line["run_id"]) if line else None
    start = ledger.events(run_id=run_id, action="run_start", limit=1) if run_id else []
    if not start:
        details["message"] = (
            f"{host.name} holds {current or 'no release'} of {model}; "
            + (f"its journal names run {run_id}, which this ledger does not know" if run_id
               else "no run in its journal put it there")
            + "; placement is left as the ledger had it")
        return "node_reconcile", "unexplained", version, details
    run = start[0]
    details.update(by_run=run_id, by_kind=run.details.get("kind"), by_action=line.get("action") if line else None,
                   by_outcome=line.get("outcome") if line else None, run_version=run.version, run_seq=run.seq,
                   journal_line=dict(line) if line else None,
                   message=f"{host.name} holds {current} of {model}, put there by run {run_id} "
                           f"({line.get('action') if line else '?'} {line.get('outcome') if line else '?'}); "
                           f"the ledger placed {placed.version if placed else 'nothing'}")
    return "node_reconcile", "reconciled", version, details


def controller_identity() -> dict[str, Any]:
    """Who drives a run: this host and process (recorded in run_start to recognise runs that died)."""
    return {"controller": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_dead_runs(ledger: Ledger, model: str, *, actor: str, by_run: str,
                    pid_alive: Callable[[int], bool] = _pid_alive) -> tuple[list[str], list[str]]:
    """Close this host's runs of ``model`` whose controller process is gone: (closed, still open elsewhere).

    A run killed mid-rollout leaves its deploy locks on the nodes it was updating; once it is closed here its id
    is among :func:`ended_runs`, and the nodes break its locks. A run that may still be running (alive here, or
    driven from another controller) is left open."""
    me = socket.gethostname()
    closed: list[str] = []
    other: list[str] = []
    for run in ledger.runs(model=model):
        if run.ended is not None:
            continue
        start = ledger.events(run_id=run.run_id, action="run_start", limit=1)
        details = start[0].details if start else {}
        pid = details.get("pid")
        if details.get("controller") == me and isinstance(pid, int) and not pid_alive(pid):
            ledger.mark_incomplete(run.run_id, actor=actor,
                                   reason=f"controller process {pid} is gone; closed by run {by_run}")
            closed.append(run.run_id)
        else:
            other.append(run.run_id)
    return closed, other


def ended_runs(ledger: Ledger, model: str, *, limit: int = ENDED_RUNS_SENT) -> list[str]:
    """Ids of ``model``'s runs that have a ``run_end`` (newest ``limit``): a lock they hold is stale."""
    ended = [r.run_id for r in ledger.runs(model=model) if r.ended is not None]
    return ended[-limit:]


def artifact_dir(state_dir: Path, run_id: str) -> Path:
    return Path(state_dir) / "runs" / run_id / "artifacts" / run_id
