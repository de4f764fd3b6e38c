"""Folding ansible-runner events into what the live run view shows (plays, hosts, tasks, bounded output).

Headless (no Textual): the same :class:`RunState` is fed live events by a launcher and replayed events from a
past run's artifact folder (``<private_data_dir>/artifacts/<ident>/job_events/*.json``), so a replay looks
exactly like the live view did.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LINES = 5000  # run output kept in memory (older lines are dropped; the artifact folder keeps everything)
MAX_RESULT_CHARS = 4000  # a task result kept for the drill-down, truncated
HOST_STATES = ("pending", "running", "ok", "changed", "failed", "unreachable", "rolled_back", "skipped")
_ROLLBACK_WORDS = ("rollback", "roll back", "rolled back", "switch back")


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
class HostState:
    name: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    rolled_back: bool = False
    done: bool = False
    tasks: list[TaskResult] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.rolled_back:
            return "rolled_back"
        if self.failed:
            return "failed"
        if not self.done:
            return "running" if self.tasks else "pending"
        if self.changed:
            return "changed"
        return "ok" if self.ok else "skipped"


@dataclass
class PlayState:
    name: str
    uuid: str
    hosts: set[str] = field(default_factory=set)
    tasks: int = 0
    done: bool = False


class RunState:
    """Everything the live view needs about one run, built only from runner events."""

    def __init__(self, run_id: str, *, kind: str = "", total_hosts: int | None = None,
                 max_lines: int = MAX_LINES) -> None:
        self.run_id = run_id
        self.kind = kind
        self.total_hosts = total_hosts
        self.plays: list[PlayState] = []
        self.hosts: dict[str, HostState] = {}
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.dropped_lines = 0
        self.status = "pending"  # pending | running | successful | failed | canceled | error
        self.rc: int | None = None
        self.current_task = ""
        self.events = 0
        self.stats_seen = False

    # -- folding -------------------------------------------------------------------------------------------
    def feed(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        if self.status == "pending":
            self.status = "running"
        stdout = event.get("stdout")
        if stdout:
            for line in str(stdout).splitlines():
                if len(self.lines) == self.lines.maxlen:
                    self.dropped_lines += 1
                self.lines.append(line)
        name = event.get("event", "")
        data: Mapping[str, Any] = event.get("event_data") or {}
        if name == "playbook_on_play_start":
            if self.plays:
                self._finish_play(self.plays[-1])
            self.plays.append(PlayState(str(data.get("play") or data.get("name") or "play"),
                                        str(data.get("play_uuid") or len(self.plays))))
        elif name == "playbook_on_task_start":
            self.current_task = str(data.get("task") or data.get("name") or "")
            if self.plays:
                self.plays[-1].tasks += 1
        elif name.startswith("runner_on_") or name.startswith("runner_item_on_"):
            self._host_event(name, data, int(event.get("counter") or 0))
        elif name == "playbook_on_stats":
            self._stats(data)

    def _host_event(self, name: str, data: Mapping[str, Any], counter: int) -> None:
        host = data.get("host")
        if not host or name in ("runner_on_start", "runner_item_on_ok", "runner_item_on_failed",
                                "runner_item_on_skipped", "runner_on_async_poll"):
            return
        hs = self.hosts.setdefault(str(host), HostState(str(host)))
        if self.plays:
            self.plays[-1].hosts.add(hs.name)
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        assert isinstance(res, dict)
        task = str(data.get("task") or self.current_task)
        if name == "runner_on_ok":
            status = "changed" if res.get("changed") else "ok"
            hs.ok += 1
            if status == "changed":
                hs.changed += 1
            if any(w in task.lower() for w in _ROLLBACK_WORDS):
                hs.rolled_back = True
        elif name == "runner_on_failed":
            if data.get("ignore_errors"):
                status = "ok"
                hs.ok += 1
            else:
                status = "failed"
                hs.failed += 1
        elif name == "runner_on_unreachable":
            status = "unreachable"
            hs.unreachable += 1
        elif name == "runner_on_skipped":
            status = "skipped"
            hs.skipped += 1
        else:
            return
        msg = res.get("msg") or res.get("stderr") or ""
        try:
            text = json.dumps(res, indent=2, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = str(res)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f"\n... ({len(text) - MAX_RESULT_CHARS} more characters)"
        play = self.plays[-1].name if self.plays else ""
        hs.tasks.append(TaskResult(play, task, hs.name, status, str(msg)[:500], text, counter))

    def _finish_play(self, play: PlayState) -> None:
        play.done = True
        for h in play.hosts:
            if h in self.hosts:
                self.hosts[h].done = True

    def _stats(self, data: Mapping[str, Any]) -> None:
        self.stats_seen = True
        for play in self.plays:
            self._finish_play(play)
        for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                          ("skipped", "skipped"), ("rescued", "rescued")):
            for host, n in (data.get(key) or {}).items():
                hs = self.hosts.setdefault(str(host), HostState(str(host)))
                setattr(hs, attr, int(n))
                hs.done = True
                if key == "rescued" and n:
                    hs.rolled_back = True

    def finish(self, status: str, rc: int | None = None) -> None:
        self.status = status
        self.rc = rc
        for play in self.plays:
            self._finish_play(play)

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.status in ("successful", "failed", "canceled", "error")

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in HOST_STATES}
        for h in self.hosts.values():
            out[h.status] += 1
        return out

    def progress(self) -> tuple[int, int | None]:
        """(hosts done, hosts expected or None)."""
        done = sum(1 for h in self.hosts.values() if h.done)
        total = self.total_hosts if self.total_hosts is not None else (len(self.hosts) or None)
        if self.finished and total is not None:
            return total, total
        return done, total

    def search(self, needle: str) -> list[str]:
        n = needle.lower()
        return [line for line in self.lines if n in line.lower()] if n else list(self.lines)

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{c[s]} {s.replace('_', ' ')}" for s in ("ok", "changed", "failed", "unreachable", "rolled_back")
                 if c[s]]
        return f"{self.kind or 'run'} {self.run_id}: {self.status}" + (f" ({', '.join(parts)})" if parts else "")


# -- artifacts (replay) -----------------------------------------------------------------------------------------


def iter_artifact_events(artifact_dir: Path) -> Iterator[dict[str, Any]]:
    """Events of a finished ansible-runner run from ``.../artifacts/<ident>`` (``job_events/*.json``), in order."""
    events_dir = artifact_dir / "job_events"
    if not events_dir.is_dir():
        return
    files: list[tuple[int, Path]] = []
    for p in events_dir.glob("*.json"):
        head = p.name.split("-", 1)[0]
        files.append((int(head) if head.isdigit() else 1 << 30, p))
    for _, p in sorted(files):
        try:
            yield json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue


def artifact_status(artifact_dir: Path) -> tuple[str, int | None]:
    """(status, rc) from an artifact folder's ``status`` and ``rc`` files."""
    def read(name: str) -> str | None:
        try:
            return (artifact_dir / name).read_text(encoding="utf-8").strip()
        except OSError:
            return None

    status = read("status") or "unknown"
    rc = read("rc")
    return status, int(rc) if rc and rc.lstrip("-").isdigit() else None


def replay(run_id: str, artifact_dir: Path, *, kind: str = "") -> RunState:
    state = RunState(run_id, kind=kind)
    for ev in iter_artifact_events(artifact_dir):
        state.feed(ev)
    status, rc = artifact_status(artifact_dir)
    state.finish(status, rc)
    return state


def find_artifact_dirs(root: Path) -> list[tuple[str, Path]]:
    """``(run_id, artifact_dir)`` for every run under ``root`` (``<root>/**/artifacts/<ident>``), newest first."""
    out: list[tuple[float, str, Path]] = []
    if not root.is_dir():
        return []
    for artifacts in root.glob("**/artifacts"):
        if not artifacts.is_dir():
            continue
        for ident in artifacts.iterdir():
            if (ident / "job_events").is_dir() or (ident / "status").is_file():
                try:
                    mtime = ident.stat().st_mtime
                except OSError:
                    mtime = 0.0
                out.append((mtime, ident.name, ident))
    out.sort(key=lambda t: t[0], reverse=True)
    return [(name, path) for _, name, path in out]


def feed_all(state: RunState, events: Iterable[Mapping[str, Any]]) -> RunState:
    for ev in events:
        state.feed(ev)
    return state
