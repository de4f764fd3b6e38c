"""Breaches become alerts and actions: ledger events, Alertmanager-compatible webhooks, notify / command / rollback.

One :meth:`Alerter.process` per evaluation pass of the monitoring loop (``modelfleet monitor run``)::

    alerter = Alerter.from_settings(settings)
    outcome = alerter.process(status.breaches)          # what fired, resolved, acted, skipped

- a breach whose ``key`` is new fires: ledger ``alert_firing``, a webhook POST with ``status: firing`` (when
  ``monitor.webhook_url`` is set), then the model's action (policy ``action``):

  * ``notify`` (default): nothing more (the ledger event and the webhook are the notification);
  * ``command``: the policy's ``command`` runs with the breach's evidence as JSON on stdin (a retraining hook);
  * ``rollback``: :func:`launch_rollback` for the node (fleet-wide breaches name no node: recorded, not run);

  every action attempt is a ledger ``alert_action`` event with its outcome (``ok``, ``failed``,
  ``rate_limited``, ``not_wired``);
- a breach that persists does nothing more: no second event, no second action (idempotent);
- a breach that is gone resolves: ledger ``alert_resolved``, webhook ``status: resolved``;
- actions are rate-limited per breach key: one per ``cooldown`` (policy, default 1 h), even when a breach
  resolves and fires again (flapping); the alert itself still fires and is recorded.

What is active and when each key last acted lives in ``<state>/monitor/alerts.json`` (written atomically under a
lock), so two monitor loops, or a loop restarted, do not act twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import ModelfleetError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.monitor import Breach
    from modelfleet.core.monitor_policy import MonitorPolicy

ALERT_NAMES = {"dataset_drift": "ModelfleetDatasetDrift", "group_shift": "ModelfleetGroupShift",
               "slo_breach": "ModelfleetLatencySLOBreach", "latency_regression": "ModelfleetLatencyRegression"}
SEVERITY = {"dataset_drift": "warning", "group_shift": "warning", "slo_breach": "warning",
            "latency_regression": "warning"}
COMMAND_TIMEOUT_S = 300.0
ACTOR = "modelfleet-monitor"


class RollbackNotWired(ModelfleetError):
    """The rollback action cannot run yet: it must go through the run pipeline (runners/), not wired here."""


def launch_rollback(settings: Settings, model: str, node: str, reason: str) -> str:
    """Roll ``model`` back to the previous release on ``node`` through the normal run pipeline; returns the run id.

    The single seam between the monitoring loop and the run pipeline: a drift-triggered rollback is a run like
    any other (one request type, one ``launch()`` in ``runners/``, recorded in the ledger with ``reason``). The
    core cannot import ``runners/``, so the front ends inject ``runners.monitor_actions.rollback_node`` into the
    :class:`Alerter`; this default (an alerter built without it) raises :class:`RollbackNotWired`, which the
    alerter records as the action's outcome.
    """
    raise RollbackNotWired(
        f"rollback of {model} on {node} is not wired to the run pipeline yet ({reason})",
        hint=f"roll back by hand: modelfleet rollback {model} --limit {node} --yes",
    )


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def alert_payload(breach: Breach, status: str, starts_at: float, ends_at: float | None = None,
                  *, receiver: str = "modelfleet") -> dict[str, Any]:
    """An Alertmanager webhook body (``version: "4"``) carrying one alert for ``breach``."""
    labels = {"alertname": ALERT_NAMES.get(breach.kind, "ModelfleetBreach"), "model": breach.model,
              "version": breach.version, "severity": SEVERITY.get(breach.kind, "warning"), "kind": breach.kind}
    if breach.node:
        labels["node"] = breach.node
    annotations = {"summary": breach.summary,
                   "runbook_url": f"docs/runbook.md#{labels['alertname'].lower()}",
                   "evidence": json.dumps(breach.evidence, default=str, sort_keys=True)[:4000]}
    fingerprint = hashlib.sha256(breach.key.encode()).hexdigest()[:16]
    alert = {"status": status, "labels": labels, "annotations": annotations, "startsAt": _rfc3339(starts_at),
             "endsAt": _rfc3339(ends_at) if ends_at else "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": fingerprint}
    return {"version": "4", "groupKey": f"{{}}:{{alertname=\"{labels['alertname']}\"}}", "truncatedAlerts": 0,
            "status": status, "receiver": receiver, "groupLabels": {"alertname": labels["alertname"]},
            "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "", "alerts": [alert]}


@dataclass
class AlertState:
    """Active breaches (key -> when it started) and when each key last acted; persisted as JSON."""

    active: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_action: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> AlertState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            return cls()  # a damaged file forgets what was active: alerts fire again, never silently lost
        return cls(active=dict(raw.get("active") or {}),
                   last_action={k: float(v) for k, v in (raw.get("last_action") or {}).items()})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".alerts.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"active": self.active, "last_action": self.last_action}, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)


@dataclass(frozen=True)
class ActionResult:
    key: str
    action: str  # notify | command | rollback
    outcome: str  # ok | failed | rate_limited | not_wired | skipped
    detail: str = ""


@dataclass
class Processed:
    fired: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    persisting: list[str] = field(default_factory=list)
    actions: list[ActionResult] = field(default_factory=list)
    webhook_errors: list[str] = field(default_factory=list)


Post = Callable[[str, Mapping[str, Any]], None]


def _http_post(url: str, body: Mapping[str, Any]) -> None:
    import httpx

    r = httpx.post(url, json=dict(body), timeout=10.0, trust_env=False)
    if r.status_code >= 300:
        raise OSError(f"HTTP {r.status_code}: {r.text[:200]}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class Alerter:
    """Turns each pass's breaches into ledger events, webhooks and rate-limited, idempotent actions."""

    def __init__(self, settings: Settings, policy: MonitorPolicy, ledger: Ledger, *, webhook_url: str | None = None,
                 post: Post = _http_post, clock: Callable[[], float] = time.time,
                 rollback: Callable[[Settings, str, str, str], str] = launch_rollback,
                 state_path: Path | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.ledger = ledger
        self.webhook_url = webhook_url if webhook_url is not None else settings.monitor.webhook_url
        self.post = post
        self.clock = clock
        self.rollback = rollback
        self.state_path = state_path or Path(settings.state_dir) / "monitor" / "alerts.json"

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Alerter:
        from modelfleet.core.ledger import Ledger
        from modelfleet.core.monitor_policy import load_policy

        return cls(settings, load_policy(settings), Ledger.from_settings(settings), **kwargs)

    def _record(self, action: str, breach: Breach, outcome: str, details: Mapping[str, Any]) -> None:
        self.ledger.append(action, actor=ACTOR, model=breach.model, version=breach.version, node=breach.node,
                           target=breach.node or "fleet", outcome=outcome,
                           details={"kind": breach.kind, "key": breach.key, **details})

    def _webhook(self, breach: Breach, status: str, starts: float, out: Processed, ends: float | None = None) -> None:
        if not self.webhook_url:
            return
        try:
            self.post(self.webhook_url, alert_payload(breach, status, starts, ends))
        except Exception as exc:  # a receiver that is down must not stop the loop; say so in the result
            out.webhook_errors.append(f"{breach.key}: {type(exc).__name__}: {str(exc)[:200]}")

    def process(self, breaches: Iterable[Breach]) -> Processed:
        from modelfleet.core.monitor import Breach

        now = self.clock()
        out = Processed()
        current = {b.key: b for b in breaches}
        with _locked(self.state_path):
            state = AlertState.load(self.state_path)
            for key, breach in current.items():
                if key in state.active:
                    out.persisting.append(key)
                    continue
                state.active[key] = {"since": now, "kind": breach.kind, "model": breach.model,
                                     "version": breach.version, "node": breach.node, "summary": breach.summary}
                self._record("alert_firing", breach, "firing", {"summary": breach.summary,
                                                                  "evidence": breach.evidence})
                self._webhook(breach, "firing", now, out)
                out.fired.append(key)
                out.actions.append(self._act(breach, state, now))
                state.save(self.state_path)
            for key in [k for k in state.active if k not in current]:
                info = state.active.pop(key)
                gone = Breach(str(info.get("kind")), str(info.get("model")), str(info.get("version")),
                              None if info.get("node") is None else str(info["node"]), str(info.get("summary", "")))
                self._record("alert_resolved", gone, "resolved", {"summary": info.get("summary"),
                                                                  "since": _utc(float(info.get("since", now)))})
                self._webhook(gone, "resolved", float(info.get("since", now)), out, now)
                out.resolved.append(key)
            state.save(self.state_path)
        return out

    def _act(self, breach: Breach, state: AlertState, now: float) -> ActionResult:
        policy = self.policy.for_model(breach.model).action
        kind = policy.kind
        last = state.last_action.get(breach.key)
        if last is not None and now - last < policy.cooldown_s:
            result = ActionResult(breach.key, kind, "rate_limited",
                                  f"last acted {now - last:.0f}s ago; cooldown {policy.cooldown_s:g}s")
            self._record("alert_action", breach, result.outcome, {"action": kind, "detail": result.detail})
            return result
        state.last_action[breach.key] = now
        if kind == "notify":
            result = ActionResult(breach.key, kind, "ok", "recorded and sent")
        elif kind == "command":
            result = self._command(breach, policy.command)
        else:
            result = self._rollback(breach)
        self._record("alert_action", breach, result.outcome, {"action": kind, "detail": result.detail[:1000]})
        return result

    def _command(self, breach: Breach, argv: tuple[str, ...]) -> ActionResult:
        evidence = json.dumps({"breach": breach.to_dict(), "at": _utc(self.clock())}, default=str)
        try:
            done = subprocess.run(list(argv), input=evidence, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False, cwd=self.settings.project_dir)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return ActionResult(breach.key, "command", "failed", f"{argv[0]}: {type(exc).__name__}: {exc}")
        tail = (done.stdout or done.stderr).strip().splitlines()[-3:]
        outcome = "ok" if done.returncode == 0 else "failed"
        return ActionResult(breach.key, "command", outcome, f"exit {done.returncode}: {' | '.join(tail)}"[:1000])

    def _rollback(self, breach: Breach) -> ActionResult:
        if breach.node is None:
            return ActionResult(breach.key, "rollback", "skipped",
                                "a fleet-wide breach names no node; rollbacks act on the drifted node's breach")
        reason = f"{breach.kind}: {breach.summary}"
        try:
            run_id = self.rollback(self.settings, breach.model, breach.node, reason)
        except RollbackNotWired as exc:
            return ActionResult(breach.key, "rollback", "not_wired", exc.message)
        except ModelfleetError as exc:
            return ActionResult(breach.key, "rollback", "failed", exc.message)
        return ActionResult(breach.key, "rollback", "ok", f"run {run_id}")

