"""Typed playbook events, from ansible-runner's raw event dicts.

Pure (no Ansible, no ansible-runner import). :func:`parse_event` gives one :class:`RunEvent` per raw dict; the
one fold of those events into per-host outcomes is :class:`modelfleet.runners.runstate.RunState`, which numbers
the serial batches (``RunEvent.batch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    PLAYBOOK_START = "playbook_start"
    PLAY_START = "play_start"  # also every new serial batch of the same play
    TASK_START = "task_start"
    HOST_OK = "host_ok"
    HOST_CHANGED = "host_changed"
    HOST_FAILED = "host_failed"
    HOST_UNREACHABLE = "host_unreachable"
    HOST_SKIPPED = "host_skipped"
    HOST_RESCUED = "host_rescued"  # synthesized from the stats: the host recovered in a rescue block
    HOST_START = "host_start"  # a host started a task
    HOST_RETRY = "host_retry"
    NO_HOSTS_REMAINING = "no_hosts_remaining"  # the play stopped: every host failed or the budget was spent
    MESSAGE = "message"  # verbose / warning / error output
    STATS = "stats"
    STATUS = "status"  # ansible-runner status: starting, running, successful, failed, canceled, timeout
    OTHER = "other"


HOST_RESULT_KINDS = frozenset({EventKind.HOST_OK, EventKind.HOST_CHANGED, EventKind.HOST_FAILED,
                               EventKind.HOST_UNREACHABLE, EventKind.HOST_SKIPPED})


_RESULT_KEEP = ("msg", "changed", "failed", "rc", "stderr", "stdout", "skip_reason", "unreachable",
                "modelfleet_rolled_back", "modelfleet", "status", "url", "elapsed", "attempts")


@dataclass(frozen=True)
class RunEvent:
    """One event of a run, typed. ``data`` holds a trimmed copy of the module result (``res``)."""

    kind: EventKind
    counter: int = 0
    created: datetime | None = None
    play: str | None = None
    play_uuid: str | None = None
    batch: int | None = None  # 1-based batch of the current play (serial), set on play and host events
    task: str | None = None
    action: str | None = None  # module name of the task
    host: str | None = None
    address: str | None = None  # the host's ansible_host
    message: str | None = None
    switched_back: bool = False  # the result says a node was switched back to an earlier release
    ignored: bool = False  # a failure with ignore_errors
    data: Mapping[str, Any] = field(default_factory=dict)
    raw_event: str = ""  # the ansible-runner event name

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "counter": self.counter,
            "created": self.created.isoformat() if self.created else None, "play": self.play,
            "batch": self.batch, "task": self.task, "action": self.action, "host": self.host,
            "message": self.message, "switched_back": self.switched_back, "ignored": self.ignored,
            "data": dict(self.data), "event": self.raw_event,
        }

    def with_batch(self, batch: int | None) -> RunEvent:
        return self if batch == self.batch else replace(self, batch=batch)


def _parse_created(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def one_line(text: str, limit: int = 500) -> str:
    """A message as one line: its first line, and when that line only announces what follows (it ends with a
    colon, as Mitogen's "EOF on stream; last 100 lines received:" does) the lines that follow, joined."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    out = lines[0]
    rest = lines[1:]
    while out.endswith(":") and rest:
        out += " " + " | ".join(rest)
        rest = []
    return out if len(out) <= limit else out[: limit - 1] + "…"


# Ansible's words for "see the details": a message that says only this gives way to the details.
GENERIC_MESSAGES = frozenset({"One or more items failed", "non-zero return code"})


def first_message(res: Mapping[str, Any]) -> str | None:
    """The line that says what happened: the first of msg, stderr, reason; for a loop, its failed item's. A
    generic message (a failed loop's "One or more items failed", a command's "non-zero return code") is used only
    when nothing more specific is there."""
    generic: str | None = None
    for key in ("msg", "stderr", "reason"):
        value = res.get(key)
        if isinstance(value, str) and value.strip():
            if value.strip() not in GENERIC_MESSAGES:
                return one_line(value)
            generic = generic or one_line(value)
    results = res.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, Mapping) and item.get("failed"):
                found = first_message(item)
                if found and found not in GENERIC_MESSAGES:
                    return found
                generic = generic or found
    return generic


def delegated(res: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(inventory name, address) a result was delegated to: ansible-core < 2.19 names the host, 2.19 keeps
    only its ``ansible_host``."""
    found = res.get("_ansible_delegated_vars")
    if not isinstance(found, Mapping):
        return None, None
    name, address = found.get("ansible_delegated_host"), found.get("ansible_host")
    return (str(name) if name else None), (str(address) if address else None)


def is_switch_back(res: Mapping[str, Any]) -> bool:
    """True when a module result says its node was switched back to an earlier release: the
    ``modelfleet_release`` module's ``modelfleet_rolled_back`` marker or the fact ``model_release_outcome:
    rolled_back``."""
    facts = res.get("ansible_facts")
    facts = facts if isinstance(facts, Mapping) else {}
    if res.get("modelfleet_rolled_back") is True or facts.get("modelfleet_rolled_back") is True:
        return True
    return facts.get("model_release_outcome") == "rolled_back"


def _trim(res: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: res[k] for k in _RESULT_KEEP if k in res}
    name, address = delegated(res)
    if name:
        out["delegated_host"] = name
    if address:
        out["delegated_address"] = address
    facts = res.get("ansible_facts")
    if isinstance(facts, Mapping):
        small = {k: v for k, v in facts.items() if k.startswith(("model_", "modelfleet_"))}
        if small:
            out["ansible_facts"] = small
    return out


def agent_port_of(res: Mapping[str, Any]) -> int | None:
    facts = res.get("ansible_facts")
    if isinstance(facts, Mapping):
        value = facts.get("model_agent_port")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None
    return None


def parse_event(raw: Mapping[str, Any]) -> RunEvent:
    """One ansible-runner event dict as a :class:`RunEvent` (batch numbers are set by the fold, ``RunState``)."""
    name = str(raw.get("event", ""))
    data = raw.get("event_data") if isinstance(raw.get("event_data"), Mapping) else {}
    assert isinstance(data, Mapping)
    common: dict[str, Any] = {
        "counter": int(raw.get("counter") or 0),
        "created": _parse_created(raw.get("created")),
        "play": data.get("play") or None,
        "play_uuid": str(data.get("play_uuid")).split("_")[0] if data.get("play_uuid") else None,
        "task": (data.get("task") or None) if isinstance(data.get("task"), str) else None,
        "action": data.get("task_action") or None,
        "host": data.get("host") or None,
        "address": data.get("remote_addr") or None,
        "raw_event": name,
    }
    res = data.get("res") if isinstance(data.get("res"), Mapping) else {}
    assert isinstance(res, Mapping)
    if name == "playbook_on_start":
        return RunEvent(EventKind.PLAYBOOK_START, message=data.get("playbook"), **common)
    if name == "playbook_on_play_start":
        common["play"] = data.get("name") or data.get("play") or None
        common["play_uuid"] = str(data.get("uuid") or "").split("_")[0] or None
        return RunEvent(EventKind.PLAY_START, message=data.get("pattern"), **common)
    if name in ("playbook_on_task_start", "playbook_on_handler_task_start"):
        return RunEvent(EventKind.TASK_START, **common)
    if name == "runner_on_ok":
        changed = bool(res.get("changed"))
        return RunEvent(EventKind.HOST_CHANGED if changed else EventKind.HOST_OK, data=_trim(res),
                        switched_back=is_switch_back(res), message=first_message(res), **common)
    if name == "runner_on_failed":
        ignored = bool(data.get("ignore_errors"))
        return RunEvent(EventKind.HOST_OK if ignored else EventKind.HOST_FAILED, data=_trim(res), ignored=ignored,
                        switched_back=is_switch_back(res), message=first_message(res), **common)
    if name == "runner_on_unreachable":
        return RunEvent(EventKind.HOST_UNREACHABLE, data=_trim(res), message=first_message(res), **common)
    if name == "runner_on_skipped":
        return RunEvent(EventKind.HOST_SKIPPED, **common)
    if name == "runner_on_start":
        return RunEvent(EventKind.HOST_START, **common)
    if name == "runner_retry":
        return RunEvent(EventKind.HOST_RETRY, data=_trim(res), message=first_message(res), **common)
    if name == "playbook_on_no_hosts_remaining":
        return RunEvent(EventKind.NO_HOSTS_REMAINING, **common)
    if name == "playbook_on_stats":
        stats = {k: dict(data.get(k) or {}) for k in ("ok", "changed", "failures", "dark", "skipped", "rescued",
                                                      "ignored", "processed")}
        stats["custom"] = dict(data.get("artifact_data") or {})
        return RunEvent(EventKind.STATS, data=stats, **common)
    if name in ("verbose", "warning", "error", "deprecated", "debug"):
        text = str(raw.get("stdout") or "").strip()
        return RunEvent(EventKind.MESSAGE, message=text or None, **common)
    return RunEvent(EventKind.OTHER, **common)
