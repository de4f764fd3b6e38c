"""Typed playbook events and per-host state, from ansible-runner's raw event dicts.

Pure (no Ansible, no ansible-runner import): the live run (:mod:`modelfleet.runners.ansible`) and the replay of a
past run's ``artifacts/<ident>/job_events/*.json`` feed the same :class:`RunTracker`, so a replayed run shows
exactly what the live one showed.

Batches: with ``serial`` Ansible starts the play again for every batch (``playbook_on_play_start`` repeats with
the same play uuid). The tracker numbers those starts and assigns each host to the batch in which it first
reports a result, so ``[1, "25%", "100%"]`` on 6 nodes shows as batches of 1, 2 and 3 hosts.

Failed: a host is failed when its latest result is a failure (a failure followed by more results was rescued),
or when the final stats count failures for it.

Rolled back: a host whose health gate failed and that was switched back to its previous release. A result marks
it when it carries ``modelfleet_rolled_back: true`` or the fact ``model_release_outcome: rolled_back``, or when a
task whose name says "roll back" / "revert" / "switch ... back" reports ``changed``. A delegated result (the
model_release role reverts other nodes of the run from one host when the budget is spent) marks the node it was
delegated to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
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


class HostStatus(StrEnum):
    PENDING = "pending"  # targeted, no result yet (or in a batch that never started)
    RUNNING = "running"
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    ROLLED_BACK = "rolled_back"  # failed its health gate and is back on its previous release
    SKIPPED = "skipped"

    @property
    def bad(self) -> bool:
        return self in (HostStatus.FAILED, HostStatus.UNREACHABLE, HostStatus.ROLLED_BACK)


_ROLLBACK_TASK = re.compile(r"\broll(?:ed|ing)?[ _-]?back\b|\brevert|\bswitch\b.*\bback\b", re.I)
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
    rolled_back: bool = False
    ignored: bool = False  # a failure with ignore_errors
    data: Mapping[str, Any] = field(default_factory=dict)
    raw_event: str = ""  # the ansible-runner event name

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "counter": self.counter,
            "created": self.created.isoformat() if self.created else None, "play": self.play,
            "batch": self.batch, "task": self.task, "action": self.action, "host": self.host,
            "message": self.message, "rolled_back": self.rolled_back, "ignored": self.ignored,
            "data": dict(self.data), "event": self.raw_event,
        }


@dataclass(frozen=True)
class HostState:
    """What one host did in a run (counts per result kind, its batch and its final status)."""

    host: str
    status: HostStatus = HostStatus.PENDING
    batch: int | None = None
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    rolled_back: bool = False
    failing: bool = False  # the latest result failed (not rescued) or the stats count failures
    last_task: str | None = None
    message: str | None = None  # the first failure message
    agent_port: int | None = None  # the model agent's port, when a task reported it

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "status": self.status.value, "batch": self.batch, "ok": self.ok,
            "changed": self.changed, "failed": self.failed, "unreachable": self.unreachable,
            "skipped": self.skipped, "rescued": self.rescued, "ignored": self.ignored,
            "rolled_back": self.rolled_back, "failing": self.failing, "last_task": self.last_task,
            "message": self.message, "agent_port": self.agent_port,
        }


def _parse_created(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _message(res: Mapping[str, Any]) -> str | None:
    for key in ("msg", "stderr", "reason"):
        value = res.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().splitlines()[0][:500]
    results = res.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, Mapping) and item.get("failed"):
                found = _message(item)
                if found:
                    return found
    return None


def delegated_host(res: Mapping[str, Any]) -> str | None:
    """The inventory name a task was delegated to, when the result names it (ansible-core < 2.19)."""
    delegated = res.get("_ansible_delegated_vars")
    if isinstance(delegated, Mapping) and delegated.get("ansible_delegated_host"):
        return str(delegated["ansible_delegated_host"])
    return None


def delegated_address(res: Mapping[str, Any]) -> str | None:
    """The address (``ansible_host``) a task was delegated to, if any (what ansible-core 2.19 keeps)."""
    delegated = res.get("_ansible_delegated_vars")
    if isinstance(delegated, Mapping) and delegated.get("ansible_host"):
        return str(delegated["ansible_host"])
    return None


def _trim(res: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: res[k] for k in _RESULT_KEEP if k in res}
    if delegated_host(res):
        out["delegated_host"] = delegated_host(res)
    if delegated_address(res):
        out["delegated_address"] = delegated_address(res)
    facts = res.get("ansible_facts")
    if isinstance(facts, Mapping):
        small = {k: v for k, v in facts.items() if k.startswith(("model_", "modelfleet_"))}
        if small:
            out["ansible_facts"] = small
    return out


def is_rollback_result(task: str | None, res: Mapping[str, Any], changed: bool) -> bool:
    """True when a task result says the host was switched back to its previous release."""
    facts = res.get("ansible_facts") if isinstance(res.get("ansible_facts"), Mapping) else {}
    assert isinstance(facts, Mapping)
    if res.get("modelfleet_rolled_back") is True or facts.get("modelfleet_rolled_back") is True:
        return True
    if facts.get("model_release_outcome") == "rolled_back":
        return True
    return bool(changed and task and _ROLLBACK_TASK.search(task))


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
    """One ansible-runner event dict as a :class:`RunEvent` (batch numbers are set by :class:`RunTracker`)."""
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
                        rolled_back=is_rollback_result(common["task"], res, changed), message=_message(res), **common)
    if name == "runner_on_failed":
        ignored = bool(data.get("ignore_errors"))
        return RunEvent(EventKind.HOST_OK if ignored else EventKind.HOST_FAILED, data=_trim(res), ignored=ignored,
                        rolled_back=is_rollback_result(common["task"], res, bool(res.get("changed"))),
                        message=_message(res), **common)
    if name == "runner_on_unreachable":
        return RunEvent(EventKind.HOST_UNREACHABLE, data=_trim(res), message=_message(res), **common)
    if name == "runner_on_skipped":
        return RunEvent(EventKind.HOST_SKIPPED, **common)
    if name == "runner_on_start":
        return RunEvent(EventKind.HOST_START, **common)
    if name == "runner_retry":
        return RunEvent(EventKind.HOST_RETRY, data=_trim(res), message=_message(res), **common)
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


class RunTracker:
    """Folds events into per-host states and batch numbers. Not thread-safe: the owner serializes calls."""

    def __init__(self, hosts: Iterable[str] = (), *, ignore_hosts: Iterable[str] = ("localhost",),
                 addresses: Mapping[str, str] | None = None) -> None:
        """``addresses``: ansible_host -> inventory name, to place results delegated to another node."""
        self.ignore_hosts = frozenset(ignore_hosts)  # controller-side plays are not fleet hosts
        self.hosts: dict[str, HostState] = {h: HostState(h) for h in hosts}
        self._batches: list[tuple[str, list[str]]] = []  # (play key, hosts) per batch, in order
        self._by_address: dict[str, str] = dict(addresses or {})
        self._play_batches: dict[str, int] = {}  # play uuid -> batches started so far
        self._play: str | None = None
        self._batch: int | None = None
        self._batch_index: int | None = None  # index into self.batches
        self.stats: dict[str, Any] | None = None

    @property
    def batches(self) -> list[list[str]]:
        """The hosts of each batch of the rollout play (the play with the most batches; the last on a tie)."""
        counts: dict[str, int] = {}
        for key, _ in self._batches:
            counts[key] = counts.get(key, 0) + 1
        if not counts:
            return []
        best = max(counts.values())
        play = next(k for k, _ in reversed(self._batches) if counts[k] == best)
        return [list(hosts) for key, hosts in self._batches if key == play]

    def feed(self, event: RunEvent) -> RunEvent:
        """Update the state with ``event``; return the event with its batch number filled in."""
        if event.kind is EventKind.PLAY_START:
            key = event.play_uuid or event.play or ""
            self._play_batches[key] = self._play_batches.get(key, 0) + 1
            self._play = key
            self._batch = self._play_batches[key]
            self._batch_index = None
            return replace(event, batch=self._batch)
        if event.host is None:
            if event.kind is EventKind.STATS:
                self._apply_stats(event.data)
            return replace(event, batch=self._batch) if event.kind is EventKind.TASK_START else event
        event = replace(event, batch=self._batch)
        if event.host in self.ignore_hosts:
            return event
        if event.kind in HOST_RESULT_KINDS:
            self._apply_host(event)
        return event

    def _note_batch(self, host: str) -> None:
        if self._batch_index is None:
            self._batches.append((self._play or "", []))
            self._batch_index = len(self._batches) - 1
        hosts = self._batches[self._batch_index][1]
        if host not in hosts:
            hosts.append(host)

    def _apply_host(self, event: RunEvent) -> None:
        host = event.host
        assert host is not None
        address = event.data.get("delegated_address")
        target = (event.data.get("delegated_host") or self._by_address.get(str(address))
                  or (address if address in self.hosts else None) or (address and "?"))
        if event.rolled_back and isinstance(target, str) and target == "?":
            event = replace(event, rolled_back=False)  # delegated to a node we cannot name: not this host's revert
        elif event.rolled_back and isinstance(target, str) and target != event.host:
            other = self.hosts.get(target) or HostState(target)
            other = replace(other, rolled_back=True)
            self.hosts[target] = replace(other, status=_status(other, final=False))
            event = replace(event, rolled_back=False)
        self._note_batch(host)
        st = self.hosts.get(host) or HostState(host)
        changes: dict[str, Any] = {"last_task": event.task or st.last_task}
        if st.batch is None:
            changes["batch"] = self._batch
        kind = event.kind
        if kind is EventKind.HOST_OK:
            changes["ok"] = st.ok + 1
            if event.ignored:
                changes["ignored"] = st.ignored + 1
        elif kind is EventKind.HOST_CHANGED:
            changes["ok"] = st.ok + 1
            changes["changed"] = st.changed + 1
        elif kind is EventKind.HOST_FAILED:
            changes["failed"] = st.failed + 1
        elif kind is EventKind.HOST_UNREACHABLE:
            changes["unreachable"] = st.unreachable + 1
        elif kind is EventKind.HOST_SKIPPED:
            changes["skipped"] = st.skipped + 1
        if kind in (EventKind.HOST_FAILED, EventKind.HOST_UNREACHABLE):
            changes["failing"] = True
            changes["message"] = event.message or st.message
        else:
            changes["failing"] = st.unreachable > 0
        if event.rolled_back:
            changes["rolled_back"] = True
        port = agent_port_of(event.data)
        if port is not None:
            changes["agent_port"] = port
        new = replace(st, **changes)
        self.hosts[host] = replace(new, status=_status(new, final=False))

    def _apply_stats(self, stats: Mapping[str, Any]) -> None:
        self.stats = dict(stats)
        for host, n in (stats.get("rescued") or {}).items():
            if host not in self.ignore_hosts:
                self.hosts[host] = replace(self.hosts.get(host) or HostState(host), rescued=int(n))
        custom = stats.get("custom") or {}
        rolled = custom.get("modelfleet_rolled_back") if isinstance(custom, Mapping) else None
        if isinstance(rolled, list):
            for host in rolled:
                if host in self.hosts:
                    self.hosts[host] = replace(self.hosts[host], rolled_back=True)
        failures, dark = stats.get("failures") or {}, stats.get("dark") or {}
        for host, st in list(self.hosts.items()):
            if dark.get(host) and not st.unreachable:
                st = replace(st, unreachable=int(dark[host]))
            st = replace(st, failing=bool(failures.get(host) or dark.get(host)),
                         failed=max(st.failed, int(failures.get(host) or 0)))
            self.hosts[host] = replace(st, status=_status(st, final=True))

    def finish(self) -> None:
        """Settle every host's status at the end of a run (also when no stats arrived: killed, canceled)."""
        for host, st in list(self.hosts.items()):
            self.hosts[host] = replace(st, status=_status(st, final=True))


def settled_status(st: HostState) -> HostStatus:
    """The status ``st`` would have if the run ended now (for a host whose wave is over)."""
    return _status(st, final=True)


def _status(st: HostState, *, final: bool) -> HostStatus:
    if st.unreachable:
        return HostStatus.UNREACHABLE
    if st.failing:
        return HostStatus.ROLLED_BACK if st.rolled_back else HostStatus.FAILED
    if st.rolled_back:
        return HostStatus.ROLLED_BACK
    if not final:
        return HostStatus.RUNNING if (st.ok or st.skipped) else HostStatus.PENDING
    if st.changed:
        return HostStatus.CHANGED
    if st.ok:
        return HostStatus.OK
    if st.skipped:
        return HostStatus.SKIPPED
    return HostStatus.PENDING
