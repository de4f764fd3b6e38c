"""Reconciling the ledger with what a node holds after a run lost it (runners/records.reconcile_event, the
node_reconcile rule of core/placement.py): the node's journal names the run that put ``current`` where it is.

The fault suite (tests/faults/, the ``after_switch`` cases) runs the same over SSH on the simulated fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelfleet.core.ledger import Ledger
from modelfleet.core.placement import PLACING_ACTIONS, placements
from modelfleet.runners.records import RunIdentity, RunRecorder, explaining_line, reconcile_event
from modelfleet.runners.runstate import HostRun

R1, R2 = "1-" + "a" * 12, "2-" + "b" * 12


def _line(action: str, outcome: str, run_id: str, current: str, **kw: Any) -> dict[str, Any]:
    return {"action": action, "outcome": outcome, "run_id": run_id, "current": current, "model": "m", **kw}


def test_the_journal_line_that_put_current_there() -> None:
    base = _line("deploy", "deployed", "r-base", R1)
    switched = _line("switch", "switching", "r-lost", R2)
    # lost during its gate: the write-ahead switch line is the last word, and current is what it meant
    assert explaining_line(R2, [base, switched]) == switched
    # lost before its rename: the intent was not carried out, the line before explains current
    assert explaining_line(R1, [base, switched]) == base
    # a run that finished: its last line names current after its step
    done = _line("deploy", "deployed", "r-lost", R2)
    assert explaining_line(R2, [base, switched, done]) == done
    # the node switched itself back (gate failed): current is the old release, put back by that run
    back = _line("deploy", "rolled_back", "r-lost", R1, release=R2)
    assert explaining_line(R1, [base, switched, back]) == back
    # current moved after the last journaled step: nobody's run did it
    assert explaining_line(R2, [base]) is None
    # lines without current (a broken lock, older journals) say nothing either way
    assert explaining_line(R1, [base, {"action": "break_lock", "run_id": "x", "model": "m"}]) == base
    assert explaining_line(R1, [{"action": "deploy", "outcome": "deployed", "run_id": "old"}]) is None


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with Ledger(f"sqlite:///{tmp_path}/ledger.db") as led:
        led.ensure_schema()
        yield led


def _run(ledger: Ledger, run_id: str, version: str, nodes: dict[str, str], *, end: bool = True) -> None:
    """A deploy run of ``m``/``version``: run_start, node_deploy per node (node -> outcome), run_end."""
    rec = RunRecorder(ledger, RunIdentity(run_id, "deploy", "t", model="m", version=version))
    rec.start()
    for node, outcome in nodes.items():
        ledger.append("node_deploy", actor="t", model="m", version=version, node=node, run_id=run_id,
                      outcome=outcome, details={"kind": "deploy"})
    if end:
        ledger.append("run_end", actor="t", model="m", version=version, run_id=run_id, outcome="failed",
                      details={"kind": "deploy"})


def _observed(name: str, current: str, journal: list[dict[str, Any]]) -> HostRun:
    host = HostRun(name, ok=1, done=True)
    host.observed = {"current": current, "previous": "", "lock_holder": None, "journal": journal}
    return host


def _record(ledger: Ledger, host: HostRun, run_id: str = "r-rec") -> str:
    action, outcome, version, details = reconcile_event(ledger, host, model="m", check=False)
    ledger.append(action, actor="t", model="m", version=version, node=host.name, run_id=run_id, outcome=outcome,
                  details=details)
    return outcome


def _placed(ledger: Ledger) -> dict[str, tuple[str | None, str | None, bool]]:
    got = placements((e for e in ledger.events(model="m") if e.action in PLACING_ACTIONS), model="m")
    return {n: (p.version, p.intended_version, p.behind) for (n, _), p in got.items()}


def test_a_node_lost_after_its_switch_is_placed_by_the_run_that_switched_it(ledger: Ledger) -> None:
    _run(ledger, "r-base", "1", {"a": "changed", "b": "changed", "c": "changed"})
    _run(ledger, "r-dark", "2", {"a": "unreachable"})  # a went dark after switching
    _run(ledger, "r-killed", "2", {}, end=False)  # b switched, then the controller was killed: no node event
    assert _placed(ledger) == {"a": ("1", "2", True), "b": ("1", "1", False), "c": ("1", "1", False)}
    base = _line("deploy", "deployed", "r-base", R1)
    assert _record(ledger, _observed("a", R2, [base, _line("switch", "switching", "r-dark", R2)])) == "reconciled"
    assert _record(ledger, _observed("b", R2, [base, _line("switch", "switching", "r-killed", R2),
                                               _line("deploy", "deployed", "r-killed", R2)])) == "reconciled"
    assert _record(ledger, _observed("c", R1, [base])) == "agrees"
    assert _placed(ledger) == {"a": ("2", "2", False), "b": ("2", "2", False), "c": ("1", "1", False)}
    [ev] = ledger.events(node="a", action="node_reconcile")
    assert ev.details["by_run"] == "r-dark" and ev.details["placed_version"] == "1" and ev.version == "2"
    assert "put there by run r-dark" in ev.details["message"]
    assert ledger.verify().ok


def test_a_version_no_recorded_run_put_there_is_reported_and_not_placed(ledger: Ledger) -> None:
    _run(ledger, "r-base", "1", {"a": "changed", "b": "changed"})
    base = _line("deploy", "deployed", "r-base", R1)
    assert _record(ledger, _observed("a", R2, [base])) == "unexplained"  # switched by hand
    assert _record(ledger, _observed("b", R2, [base, _line("switch", "switching", "elsewhere", R2)])) == \
        "unexplained"  # a run of another ledger
    assert _placed(ledger) == {"a": ("1", "1", False), "b": ("1", "1", False)}
    [ev] = ledger.events(node="b", action="node_reconcile")
    assert "names run elsewhere, which this ledger does not know" in ev.details["message"]


def test_a_later_runs_intent_is_kept_when_an_older_lost_run_is_reconciled(ledger: Ledger) -> None:
    _run(ledger, "r-base", "1", {"a": "changed"})
    _run(ledger, "r-killed", "2", {}, end=False)  # switched a, lost
    _run(ledger, "r-later", "3", {"a": "unreachable"})  # meant 3, never reached a
    journal = [_line("deploy", "deployed", "r-base", R1), _line("switch", "switching", "r-killed", R2)]
    assert _record(ledger, _observed("a", R2, journal)) == "reconciled"
    assert _placed(ledger) == {"a": ("2", "3", True)}  # runs 2 (r-killed put it there); r-later's 3 is still due


def test_an_unreachable_node_or_a_check_run_places_nothing(ledger: Ledger) -> None:
    _run(ledger, "r-base", "1", {"a": "changed"})
    dark = HostRun("a", unreachable=1, failing=True, done=True)
    action, outcome, version, details = reconcile_event(ledger, dark, model="m", check=False)
    assert (action, outcome, version) == ("node_reconcile", "unreachable", None)
    host = _observed("a", R2, [_line("switch", "switching", "r-base", R2)])
    action, outcome, version, details = reconcile_event(ledger, host, model="m", check=True)
    ledger.append(action, actor="t", model="m", version=version, node="a", run_id="r-check", outcome=outcome,
                  details=details)
    assert outcome == "reconciled" and _placed(ledger) == {"a": ("1", "1", False)}  # check mode places nothing


def test_health_names_reconcile_for_a_node_that_runs_another_version() -> None:
    import httpx

    from modelfleet.runners.health import Target, probe

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model": "m", "version": "2"})

    [row] = probe([Target("a", "http://127.0.0.1:9", "m", "1")], transport=httpx.MockTransport(handler))
    assert row.verdict == "wrong_version" and "`modelfleet reconcile m --limit a`" in (row.reason or "")
