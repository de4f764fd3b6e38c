"""What the run pipeline needs from whatever executes a run (``ansible-playbook``, ``terraform``).

An executor starts in the background, hands every raw event it produces to one callback (from its own thread),
can be cancelled from any thread, and ends with an :class:`ExecResult`. It knows nothing of the ledger or of
per-host outcomes: the pipeline (:mod:`modelfleet.runners.pipeline`) records the run and folds the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

RawEventCallback = Callable[[dict[str, Any]], None]
FinishCallback = Callable[["ExecResult"], None]


@dataclass(frozen=True)
class ExecResult:
    """How an executor ended: ``status`` successful | failed | canceled | timeout | error."""

    status: str
    rc: int | None
    started: datetime
    ended: datetime
    artifact_dir: Path
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.ended - self.started).total_seconds()

    def ledger_details(self) -> dict[str, Any]:
        """What this executor adds to the run's ``run_end`` (a Terraform run: its plan and its digest)."""
        return {}


class Executor(Protocol):
    run_id: str
    artifact_dir: Path

    def start(self) -> Any:
        """Start in the background and return at once; raise RunError when it cannot start."""

    def cancel(self) -> None:
        """Ask it to stop (from any thread)."""

    def wait(self, timeout: float | None = None) -> ExecResult:
        """Block until it has ended (RunError after ``timeout``)."""
