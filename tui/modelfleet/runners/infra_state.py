"""The fold of a Terraform run's events: what the pipeline, the CLI and the console read of a plan or an apply.

The counterpart of :class:`modelfleet.runners.runstate.RunState` for runs whose units are resources, not hosts:
fed the executor's raw records (``{"step": ..., "line": {...}}``, as ``events.jsonl`` keeps them), it counts
planned changes and applied resources and keeps the errors, and offers the same reading API (``outcome()``,
``problem()``, ``counts()``, ``to_dict()``) to the ledger's rules (runners/records.py) and to the run handle.

Outcome: ``incomplete`` when cancelled, timed out or not started; ``failed`` when an engine step failed or an
error diagnostic was printed; else ``ok``.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelfleet.runners.runstate import FINISHED, INCOMPLETE_STATUSES, MAX_LINES
from modelfleet.runners.terraform_events import (
    ChangeSummary,
    Diagnostic,
    LogLine,
    PlannedChange,
    ResourceProgress,
    TerraformEvent,
    parse_ui_line,
)

EVENTS = "events.jsonl"  # every engine line of a run, as runners/terraform.py writes it
#: what an applied resource's last action becomes in the counts
APPLIED = {"create": "created", "update": "updated", "delete": "destroyed", "replace": "replaced",
           "read": "read"}


class InfraState:
    """Folds one Terraform run's raw records. Not thread-safe: one owner feeds it."""

    def __init__(self, run_id: str, *, kind: str = "", max_lines: int = MAX_LINES) -> None:
        self.run_id = run_id
        self.kind = kind
        self.status = "pending"
        self.rc: int | None = None
        self.error: str | None = None
        self.events = 0
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.dropped_lines = 0
        self.planned: dict[str, str] = {}  # address -> planned action (drift excluded)
        self.drift: dict[str, str] = {}
        self.applied: dict[str, str] = {}  # address -> created | updated | destroyed | replaced | errored
        self.summary_event: ChangeSummary | None = None
        self.errors: list[Diagnostic] = []
        self.current_task = ""
        self.hosts: dict[str, Any] = {}  # a Terraform run targets no inventory host
        self.targeted = 0
        self._batches: list[list[str]] = []

    def feed(self, raw: Mapping[str, Any]) -> TerraformEvent:
        self.events += 1
        if self.status == "pending":
            self.status = "running"
        step = str(raw.get("step") or "")
        line = raw.get("line")
        event = parse_ui_line(dict(line) if isinstance(line, Mapping) else {}, step)
        self.current_task = step
        text = getattr(event, "text", "") or (event.message if isinstance(event, LogLine) else "")
        if text:
            if len(self.lines) == self.lines.maxlen:
                self.dropped_lines += 1
            self.lines.append(f"[{step}] {text}")
        if isinstance(event, PlannedChange) and event.address:
            (self.drift if event.drift else self.planned)[event.address] = event.action
        elif isinstance(event, ResourceProgress) and event.address and event.action not in ("refresh", "read"):
            if event.phase == "complete":
                self.applied[event.address] = APPLIED.get(event.action, event.action)
            elif event.phase == "errored":
                self.applied[event.address] = "errored"
        elif isinstance(event, ChangeSummary):
            self.summary_event = event
        elif isinstance(event, Diagnostic) and event.severity == "error":
            self.errors.append(event)
        return event

    def finish(self, status: str, rc: int | None = None, error: str | None = None) -> None:
        self.status = status
        self.rc = rc
        self.error = error or self.error

    # -- reading (the same API as RunState) --------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def batches(self) -> list[list[str]]:
        return self._batches

    @property
    def changed_hosts(self) -> int:
        """Resources this run changed (an apply), or would change (a plan)."""
        if self.applied:
            return sum(1 for v in self.applied.values() if v not in ("errored", "read"))
        return sum(1 for a in self.planned.values() if a not in ("no-op", "noop", "read"))

    def counts(self) -> dict[str, int]:
        """Resources per what the apply did to them (``created``...), or per what the plan would do (``to
        create``...)."""
        if self.applied:
            values = list(self.applied.values())
        else:
            values = [f"to {a}" for a in self.planned.values() if a not in ("no-op", "noop", "read")]
        out: dict[str, int] = {}
        for value in values:
            out[value] = out.get(value, 0) + 1
        return out

    def outcome(self) -> str:
        if not self.finished:
            return "running"
        if self.status in INCOMPLETE_STATUSES:
            return "incomplete"
        if self.status != "successful" or self.errors or "errored" in self.applied.values():
            return "failed"
        return "ok"

    def problem(self) -> str | None:
        outcome = self.outcome()
        if outcome in ("ok", "running"):
            return None
        if self.errors:
            first = self.errors[0]
            return first.summary + (f" ({first.address})" if first.address else "") + (
                f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else "")
        if outcome == "incomplete":
            return self.error or {"canceled": "cancelled", "timeout": "timed out"}.get(self.status, self.status)
        return self.error or f"terraform ended {self.status} (rc {self.rc})"

    def progress(self) -> tuple[int, int | None]:
        done = len(self.applied)
        total = len(self.planned) or None
        return (done, total) if not self.finished else (total or done, total or done)

    def search(self, needle: str) -> list[str]:
        n = needle.lower()
        return [line for line in self.lines if n in line.lower()] if n else list(self.lines)

    def summary(self) -> str:
        counts = self.counts()
        parts = [f"{n} {k}" for k, n in counts.items()]
        return f"{self.kind or 'run'} {self.run_id}: {self.outcome()}" + (f" ({', '.join(parts)})" if parts else "")

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "kind": self.kind, "outcome": self.outcome(), "status": self.status,
                "rc": self.rc, "problem": self.problem(), "counts": self.counts(), "planned": dict(self.planned),
                "drift": dict(self.drift), "applied": dict(self.applied)}


def replay_infra(run_dir: Path, meta: Mapping[str, Any]) -> InfraState:
    """A past Terraform run folded again from its ``events.jsonl`` (what its live view showed) and ``run.json``'s
    ``meta`` (kind, how it ended)."""
    state = InfraState(run_dir.name, kind=str(meta.get("kind") or ""))
    with contextlib.suppress(OSError), open(run_dir / EVENTS, encoding="utf-8") as log:
        for line in log:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    state.feed(record)
    ended = meta.get("result")
    result: Mapping[str, Any] = ended if isinstance(ended, Mapping) else {}
    state.finish(str(result.get("status") or meta.get("status") or "incomplete"), result.get("rc"),
                 result.get("error"))
    return state
