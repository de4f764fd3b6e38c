"""Breaches -> ledger events, an Alertmanager-compatible webhook (a real HTTP receiver on loopback, started here),
and the model's action: notify, a command hook with the evidence on stdin, rollback (the not-yet-wired seam);
rate-limited, idempotent, every attempt recorded."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.core.alerts import Alerter, launch_rollback
from modelfleet.core.config import Settings, load_settings
from modelfleet.core.ledger import Ledger
from modelfleet.core.monitor import Breach
from modelfleet.core.monitor_policy import load_policy
from tests.webhook_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _settings(project: Path, policy: str = "") -> Settings:
    (project / "modelfleet.toml").write_text(f'[ledger]\nurl = "sqlite:///{project}/ledger.db"\n'
                                             f'[paths]\nstate_dir = "{project}/state"\n')
    if policy:
        (project / "policy").mkdir(exist_ok=True)
        (project / "policy" / "monitoring.yaml").write_text(policy)
    return load_settings(config_file=project / "modelfleet.toml", env={})


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


DRIFT = Breach("dataset_drift", "credit-risk", "2", "edge-cpu-01", "credit-risk@2 on edge-cpu-01: 6 of 10 drift",
               {"drifted": ["income"], "rows": 500})


def _alerter(settings: Settings, url: str | None, clock: Clock) -> tuple[Alerter, Ledger]:
    ledger = Ledger(settings.ledger.url)
    return Alerter(settings, load_policy(settings), ledger, webhook_url=url, clock=clock), ledger


def test_a_breach_fires_once_acts_once_and_resolves(tmp_path: Path, receiver: Receiver) -> None:
    settings = _settings(tmp_path)
    clock = Clock()
    alerter, ledger = _alerter(settings, receiver.url, clock)
    first = alerter.process([DRIFT])
    assert first.fired == [DRIFT.key] and [a.outcome for a in first.actions] == ["ok"]
    body = receiver.bodies[0]
    assert body["version"] == "4" and body["status"] == "firing"
    alert = body["alerts"][0]
    assert alert["labels"] == {"alertname": "ModelfleetDatasetDrift", "model": "credit-risk", "version": "2",
                               "severity": "warning", "kind": "dataset_drift", "node": "edge-cpu-01"}
    assert alert["annotations"]["runbook_url"].endswith("#modelfleetdatasetdrift")
    clock.t += 60
    again = alerter.process([DRIFT])  # the breach persists: nothing new anywhere
    assert again.persisting == [DRIFT.key] and not again.fired and not again.actions
    assert len(receiver.bodies) == 1
    clock.t += 60
    gone = alerter.process([])
    assert gone.resolved == [DRIFT.key] and receiver.bodies[-1]["status"] == "resolved"
    assert receiver.bodies[-1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    events = [(e.action, e.outcome, e.node) for e in ledger.events()]
    assert events == [("alert_firing", "firing", "edge-cpu-01"), ("alert_action", "ok", "edge-cpu-01"),
                      ("alert_resolved", "resolved", "edge-cpu-01")]
    assert ledger.verify().ok


def test_actions_are_rate_limited_per_breach_when_it_flaps(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "models:\n  credit-risk:\n    cooldown: 30m\n")
    clock = Clock()
    alerter, ledger = _alerter(settings, None, clock)
    alerter.process([DRIFT])
    clock.t += 120
    alerter.process([])
    clock.t += 120
    flap = alerter.process([DRIFT])  # fires again (recorded) but does not act again within 30 minutes
    assert flap.fired == [DRIFT.key] and [a.outcome for a in flap.actions] == ["rate_limited"]
    clock.t += 1800
    alerter.process([])
    later = alerter.process([DRIFT])
    assert [a.outcome for a in later.actions] == ["ok"]
    actions = [e.outcome for e in ledger.events(action="alert_action")]
    assert actions == ["ok", "rate_limited", "ok"]


def test_command_hook_gets_the_evidence_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "evidence.json"
    hook = tmp_path / "hook.py"
    hook.write_text(f"import sys, pathlib\npathlib.Path({str(out)!r}).write_text(sys.stdin.read())\n"
                    "print('retraining queued')\n")
    settings = _settings(tmp_path, f"models:\n  credit-risk:\n    action: command\n"
                                   f"    command: [{sys.executable!r}, {str(hook)!r}]\n")
    alerter, ledger = _alerter(settings, None, Clock())
    result = alerter.process([DRIFT]).actions[0]
    assert (result.action, result.outcome) == ("command", "ok") and "retraining queued" in result.detail
    evidence = json.loads(out.read_text())
    assert evidence["breach"]["key"] == DRIFT.key and evidence["breach"]["evidence"]["drifted"] == ["income"]
    record = ledger.events(action="alert_action")[0]
    assert record.details["action"] == "command" and record.outcome == "ok"


def test_rollback_goes_through_the_single_seam_which_is_not_wired_yet(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "models:\n  credit-risk:\n    action: rollback\n")
    alerter, ledger = _alerter(settings, None, Clock())
    node = alerter.process([DRIFT]).actions[0]
    assert (node.action, node.outcome) == ("rollback", "not_wired") and "not wired" in node.detail
    fleet = Breach("slo_breach", "credit-risk", "2", None, "p95 over budget")
    assert alerter.process([DRIFT, fleet]).actions[0].outcome == "skipped"  # no node to roll back
    assert [e.outcome for e in ledger.events(action="alert_action")] == ["not_wired", "skipped"]
    calls: list[tuple[str, str, str]] = []

    def wired(s: Settings, model: str, target: str, reason: str) -> str:
        calls.append((model, target, reason))
        return "run-123"

    other = Alerter(settings, load_policy(settings), ledger, webhook_url=None, clock=Clock(), rollback=wired,
                    state_path=tmp_path / "other-alerts.json")
    assert other.process([DRIFT]).actions[0].detail == "run run-123"
    assert calls == [("credit-risk", "edge-cpu-01", f"dataset_drift: {DRIFT.summary}")]
    with pytest.raises(Exception, match="not wired"):
        launch_rollback(settings, "credit-risk", "edge-cpu-01", "test")


def test_a_receiver_that_is_down_does_not_stop_the_record(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    alerter, ledger = _alerter(settings, "http://127.0.0.1:9/alerts", Clock())
    done = alerter.process([DRIFT])
    assert done.fired == [DRIFT.key] and done.webhook_errors and DRIFT.key in done.webhook_errors[0]
    assert [e.action for e in ledger.events()] == ["alert_firing", "alert_action"]
