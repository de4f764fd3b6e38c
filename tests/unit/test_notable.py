"""core/notable.py, the classification behind the console's Events view: failed gates, rollbacks (a rollback run's
and a deploy's revert), alerts, unreachable nodes and failed runs are listed, newest first; routine events are not.

The events are written to a real ledger (SQLite) in the shapes their writers give them: the ledger callback's node
events (``node_<kind>``, runners/records.node_event), the run recorder's ``run_end``, ``record_gate``'s ``gate``
and the alerter's ``alert_firing`` (core/alerts.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.core.ledger import Event, Ledger
from modelfleet.core.notable import Notable, classify, notable

RUN_A, RUN_B, RUN_C = "20261205T080000Z-000001", "20261205T081000Z-000002", "20261205T082000Z-000003"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path}/ledger.db") as led:
        led.ensure_schema()
        yield led


def _node(ledger: Ledger, kind: str, node: str, outcome: str, run_id: str, version: str | None = "3",
          model: str | None = "credit-risk", **details: object) -> Event:
    return ledger.append(f"node_{kind}", actor="ops", model=model, version=version, node=node,
                         target="all", run_id=run_id, outcome=outcome,
                         details={"kind": kind, "check": False, "message": "", **details})


def _history(ledger: Ledger) -> dict[str, int]:
    """A morning on the fleet, oldest first; returns the seq of each notable event by a short name."""
    seq: dict[str, int] = {}
    ledger.append("run_start", actor="ops", model="credit-risk", version="3", target="all", run_id=RUN_A,
                  outcome="started", details={"kind": "deploy"})
    _node(ledger, "deploy", "edge-cpu-01", "changed", RUN_A)
    seq["unreachable"] = _node(ledger, "deploy", "edge-gpu-04", "unreachable", RUN_A,
                               message="Failed to connect to the host via ssh").seq
    seq["reverted"] = _node(ledger, "deploy", "edge-arm-01", "reverted", RUN_A, to_version="2",
                            to_release="2-0123456789ab").seq
    seq["run_failed"] = ledger.append(
        "run_end", actor="ops", model="credit-risk", version="3", target="all", run_id=RUN_A, outcome="failed",
        details={"kind": "deploy", "status": "failed", "problem": "2 of 3 nodes failed (budget 0%)"}).seq
    seq["gate_failed"] = ledger.append(
        "gate", actor="dana", model="credit-risk", version="3", digest="ab" * 32, target="prod", outcome="failed",
        details={"verdict": "fail", "environment": "prod", "failed": ["fairness_fpr_gap"], "warnings": []}).seq
    ledger.append("gate", actor="dana", model="credit-risk", version="2", target="prod", outcome="ok",
                  details={"verdict": "pass", "environment": "prod", "failed": []})  # passed: routine
    seq["alert"] = ledger.append(
        "alert_firing", actor="modelfleet-monitor", model="credit-risk", version="3", node="edge-cpu-02",
        target="edge-cpu-02", outcome="firing",
        details={"kind": "slo_breach", "key": "slo_breach:credit-risk:3:edge-cpu-02", "severity": "critical",
                 "summary": "p99 412 ms over the 250 ms SLO"}).seq
    ledger.append("run_start", actor="ops", model="credit-risk", target="all", run_id=RUN_B, outcome="started",
                  details={"kind": "rollback"})
    seq["rollback"] = _node(ledger, "rollback", "edge-cpu-01", "rolled_back", RUN_B, version="2", to_version="2").seq
    ledger.append("run_end", actor="ops", model="credit-risk", target="all", run_id=RUN_B, outcome="ok",
                  details={"kind": "rollback", "status": "successful"})
    ledger.append("run_start", actor="ops", target="all", run_id=RUN_C, outcome="started",
                  details={"kind": "healthcheck"})
    # a health check is about every agent, not one model: its events carry no model or version (the ledger
    # callback takes them from model_release_model/_version, which healthcheck.yml is not given)
    seq["unreachable_health"] = _node(ledger, "healthcheck", "edge-gpu-04", "unreachable", RUN_C, version=None,
                                      model=None).seq
    _node(ledger, "healthcheck", "edge-cpu-01", "ok", RUN_C, version=None, model=None)
    ledger.append("run_end", actor="ops", target="all", run_id=RUN_C, outcome="failed",
                  details={"kind": "healthcheck", "status": "failed"})
    seq["run_failed_health"] = ledger.events(run_id=RUN_C, action="run_end")[0].seq
    return seq


def test_what_needs_attention_is_listed_newest_first_and_routine_events_are_not(ledger: Ledger) -> None:
    seq = _history(ledger)
    found = notable(ledger.events())
    assert [n.event.seq for n in found] == sorted(seq.values(), reverse=True)  # newest first, nothing routine
    by_seq = {n.event.seq: n for n in found}
    kinds = {name: (by_seq[s].kind, by_seq[s].severity) for name, s in seq.items()}
    assert kinds == {
        "unreachable": ("unreachable", "critical"), "reverted": ("reverted", "critical"),
        "run_failed": ("run_failed", "critical"), "gate_failed": ("gate_failed", "warning"),
        "alert": ("alert", "critical"),  # the alert's own severity
        "rollback": ("rollback", "warning"), "unreachable_health": ("unreachable", "critical"),
        "run_failed_health": ("run_failed", "critical"),
    }
    titles = {name: by_seq[s].title for name, s in seq.items()}
    assert titles["unreachable"] == "edge-gpu-04 unreachable in deploy credit-risk v3"
    assert titles["reverted"] == "edge-arm-01 reverted to its previous release after deploy credit-risk v3"
    assert titles["run_failed"] == "deploy credit-risk v3 failed: 2 of 3 nodes failed (budget 0%)"
    assert titles["gate_failed"] == "gate not passed by credit-risk v3 for prod: fairness_fpr_gap"
    assert titles["alert"] == "alert firing on credit-risk v3 edge-cpu-02: p99 412 ms over the 250 ms SLO"
    assert titles["rollback"] == "edge-cpu-01 rolled back by rollback credit-risk v2"
    assert titles["unreachable_health"] == "edge-gpu-04 unreachable in healthcheck"


def test_the_order_is_the_ledgers_whatever_order_the_events_come_in(ledger: Ledger) -> None:
    seq = _history(ledger)
    events = ledger.events()
    shuffled = list(events)
    random.Random(19).shuffle(shuffled)
    assert [n.event.seq for n in notable(shuffled)] == sorted(seq.values(), reverse=True)
    newest_three = notable(reversed(events), limit=3)
    assert [n.kind for n in newest_three] == ["run_failed", "unreachable", "rollback"]  # the healthcheck, then B
    assert notable(events, limit=0) == []


def test_a_new_event_comes_first(ledger: Ledger) -> None:
    _history(ledger)
    before = notable(ledger.events())
    late = _node(ledger, "deploy", "edge-arm-02", "failed", "20261205T090000Z-000004",
                 message="the health gate did not pass")
    after = notable(ledger.events())
    assert after[0] == Notable("failed", "critical", "edge-arm-02 failed deploy credit-risk v3", late)
    assert after[1:] == before


@pytest.mark.parametrize(("action", "outcome", "details"), [
    ("node_deploy", "changed", {"kind": "deploy"}),
    ("node_deploy", "ok", {"kind": "deploy"}),
    ("node_rollback", "skipped", {"kind": "rollback"}),
    ("run_start", "started", {"kind": "deploy"}),
    ("run_end", "ok", {"kind": "deploy"}),
    ("gate", "ok", {"failed": []}),
    ("approval_decision", "approved", {}),
])
def test_routine_events_are_not_notable(ledger: Ledger, action: str, outcome: str, details: dict[str, object]) -> None:
    event = ledger.append(action, actor="ops", model="credit-risk", version="3", node="edge-cpu-01",
                          run_id=RUN_A, outcome=outcome, details=details)
    assert classify(event) is None
    assert notable([event]) == []
