"""Messages the app's workers post (up) and the state screens read (down)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

from modelfleet.runners.infra_state import InfraState
from modelfleet.runners.runstate import RunState

if TYPE_CHECKING:  # pragma: no cover (numpy and the statistics: imported with the first monitoring pass's answer)
    from modelfleet.core.monitor_view import MonitorView


class Loaded(Message):
    """A worker finished loading ``kind`` (models, versions, detail, fleet, releases, ledger, verify, runs, pin)."""

    def __init__(self, kind: str, payload: Any, key: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.payload = payload
        self.key = key


class LoadFailed(Message):
    def __init__(self, kind: str, message: str, hint: str | None = None, key: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.message = message
        self.hint = hint
        self.key = key


class RunEvent(Message):
    """One ansible-runner event of a live run (posted from the runner's thread)."""

    def __init__(self, run_id: str, event: dict[str, Any]) -> None:
        super().__init__()
        self.run_id = run_id
        self.event = event


class RunStarted(Message):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id


class RunFinished(Message):
    """A run ended; ``result`` is what its executor returned (a Terraform run's InfraRunResult), when known."""

    def __init__(self, run_id: str, status: str, rc: int | None, error: str | None = None,
                 result: Any = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.status = status
        self.rc = rc
        self.error = error
        self.result = result


@dataclass
class ConsoleState:
    """Everything loaded so far; screens read it, only the app writes it."""

    context: dict[str, str] = field(default_factory=dict)
    models: list[Any] | None = None
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> {versions, placements, flags}
    details: dict[str, Any] = field(default_factory=dict)  # "model/version" -> VersionDetail
    fleet: list[Any] | None = None
    fleet_at: float | None = None
    fleet_error: str | None = None
    monitor: MonitorView | None = None  # the last monitoring pass: verdicts per model version, p95 history
    monitor_error: str | None = None
    releases: dict[str, Any] = field(default_factory=dict)  # node -> list[Release] | None
    node_events: dict[str, list[Any]] = field(default_factory=dict)
    ledger: list[Any] | None = None
    ledger_filters: dict[str, str] = field(default_factory=dict)
    verify: Any = None
    runs: list[Any] | None = None
    live: dict[str, RunState | InfraState] = field(default_factory=dict)  # run_id -> state (live and replayed)
    handles: dict[str, Any] = field(default_factory=dict)  # run_id -> RunHandle of runs started here
    launched: dict[str, Any] = field(default_factory=dict)  # run_id -> RunInfo of runs started here
    inventory: Any = None  # the Inventory (run form: what a target selects)
    notable: list[Any] | None = None  # core.notable.Notable, newest first (Events view)
    ledger_head: int | None = None  # the ledger's last sequence number, as last polled
    sorts: dict[str, tuple[int, bool] | None] = field(default_factory=dict)  # "Screen#table" -> (column, desc)
    errors: dict[str, str] = field(default_factory=dict)  # kind -> last error
    infra: list[Any] | None = None  # InfraEnvInfo per Terraform environment
    infra_details: dict[str, Any] = field(default_factory=dict)  # env -> InfraEnvDetail
    infra_inventory: dict[str, Any] = field(default_factory=dict)  # env -> InfraInventory written after an apply
    approvals: Any = None  # ApprovalsData
