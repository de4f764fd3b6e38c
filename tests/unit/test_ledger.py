"""The deployment ledger: append, hash chain, verify, tampering, concurrent writers, runs, export, CLI.

The ``check_*`` functions take a database URL and are reused by tests/integration/test_ledger_postgres.py.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelfleet.core.config import Settings
from modelfleet.core.errors import ConfigError, LedgerError, LedgerIntegrityError
from modelfleet.core.ledger import GENESIS_HASH, Ledger, compute_hash, verify_chain

# -- reusable checks (SQLite here, PostgreSQL in the integration test) --------------------------------------------


def _sql(url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


def _deploy_run(ledger: Ledger, run_id: str = "run-1", nodes: int = 3, end: bool = True) -> None:
    ledger.append("run_start", actor="alice", model="credit-risk", version="2", digest="ab" * 32,
                  target="edge_cpu", run_id=run_id, outcome="started", details={"kind": "deploy"})
    for i in range(nodes):
        ledger.append("node_deploy", actor="alice", model="credit-risk", version="2", digest="ab" * 32,
                      target="edge_cpu", node=f"cpu-{i + 1}", run_id=run_id, outcome="changed",
                      details={"latency_ms": 1.5 + i, "release": "2-abababababab"})
    if end:
        ledger.append("run_end", actor="alice", model="credit-risk", version="2", target="edge_cpu",
                      run_id=run_id, outcome="ok")


def check_append_and_chain(url: str) -> None:
    with Ledger(url) as ledger:
        first = ledger.append("approval", actor="bob", model="credit-risk", version=2, outcome="approved",
                              details={"role": "qa"})
        assert first.seq == 1 and first.prev_hash == GENESIS_HASH
        assert first.version == "2" and first.ts.tzinfo is not None
        _deploy_run(ledger)
        events = ledger.events()
        assert [e.seq for e in events] == list(range(1, 7))
        for prev, ev in itertools.pairwise(events):
            assert ev.prev_hash == prev.hash
            assert ev.hash == compute_hash(ev.to_dict())
        assert events[1].details == {"kind": "deploy"}
        result = ledger.verify()
        assert result.ok and result.count == 6 and result.first_bad_seq is None
        assert result.head_hash == events[-1].hash


def check_filters(url: str) -> None:
    with Ledger(url) as ledger:
        _deploy_run(ledger, "run-a")
        ledger.append("node_rollback", actor="ci", model="fraud", version="9", node="cpu-2", run_id="run-b",
                      outcome="rolled_back")
        assert [e.node for e in ledger.events(node="cpu-2")] == ["cpu-2", "cpu-2"]
        assert [e.action for e in ledger.events(model="fraud")] == ["node_rollback"]
        assert len(ledger.events(actor="alice")) == 5
        assert len(ledger.events(run_id="run-a", action="node_deploy")) == 3
        newest = ledger.events(limit=2)
        assert [e.seq for e in newest] == [5, 6]
        assert ledger.events(since=datetime.now(UTC) + timedelta(hours=1)) == []


def check_tamper_field(url: str) -> None:
    with Ledger(url) as ledger:
        _deploy_run(ledger)
        assert ledger.verify().ok
    _sql(url, "UPDATE ledger_events SET node = 'cpu-9' WHERE seq = 3")
    with Ledger(url) as ledger:
        result = ledger.verify()
    assert not result.ok and result.first_bad_seq == 3
    assert "edited" in (result.reason or "")


def check_tamper_details(url: str) -> None:
    with Ledger(url) as ledger:
        _deploy_run(ledger)
    _sql(url, "UPDATE ledger_events SET details = '{\"latency_ms\": 0.1}' WHERE seq = 2")
    with Ledger(url) as ledger:
        result = ledger.verify()
    assert not result.ok and result.first_bad_seq == 2


def check_delete_row(url: str) -> None:
    with Ledger(url) as ledger:
        _deploy_run(ledger)
    _sql(url, "DELETE FROM ledger_events WHERE seq = 2")
    with Ledger(url) as ledger:
        result = ledger.verify()
    assert not result.ok and result.first_bad_seq == 2
    assert "missing" in (result.reason or "")


def check_delete_last_row(url: str) -> None:
    with Ledger(url) as ledger:
        _deploy_run(ledger)
    _sql(url, "DELETE FROM ledger_events WHERE seq = 5")
    with Ledger(url) as ledger:
        result = ledger.verify()
        assert not result.ok and result.first_bad_seq == 5
        # Appending afterwards keeps the gap visible instead of papering over it.
        ledger.append("run_end", actor="x", run_id="run-1", outcome="ok")
        assert ledger.verify().first_bad_seq == 5


def _append_worker(url: str, worker: int, count: int) -> None:
    with Ledger(url) as ledger:
        for i in range(count):
            ledger.append("node_deploy", actor=f"worker-{worker}", node=f"n{worker}", run_id=f"w{worker}",
                          outcome="ok", details={"i": i})


def check_concurrent_appends(url: str, workers: int = 4, count: int = 25) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(url, w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    with Ledger(url) as ledger:
        events = ledger.events()
        assert [e.seq for e in events] == list(range(1, workers * count + 1))
        for w in range(workers):
            assert [e.details["i"] for e in events if e.actor == f"worker-{w}"] == list(range(count))
        result = ledger.verify()
        assert result.ok and result.count == workers * count


def check_concurrent_first_use(url: str, workers: int = 4, count: int = 5) -> None:
    """Several processes creating the schema at the same moment on an empty database."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(url, w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    with Ledger(url) as ledger:
        assert ledger.verify().count == workers * count


def check_incomplete_runs(url: str) -> None:
    with Ledger(url) as ledger:
        _deploy_run(ledger, "run-done")
        _deploy_run(ledger, "run-killed", nodes=1, end=False)
        runs = {r.run_id: r for r in ledger.runs()}
        assert runs["run-done"].outcome == "ok" and runs["run-done"].action == "deploy"
        assert runs["run-killed"].outcome == "incomplete" and runs["run-killed"].ended is None
        result = ledger.verify()
        assert result.ok and result.incomplete_runs == ["run-killed"]
        closing = ledger.mark_incomplete("run-killed", actor="modelfleet")
        assert closing.action == "run_end" and closing.outcome == "incomplete"
        assert {r.run_id: r.outcome for r in ledger.runs()}["run-killed"] == "incomplete"
        assert ledger.verify().incomplete_runs == []


# -- SQLite ------------------------------------------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"


def test_append_and_chain(url: str) -> None:
    check_append_and_chain(url)


def test_filters(url: str) -> None:
    check_filters(url)


def test_tampered_field_names_the_seq(url: str) -> None:
    check_tamper_field(url)


def test_tampered_details_names_the_seq(url: str) -> None:
    check_tamper_details(url)


def test_deleted_row_names_the_seq(url: str) -> None:
    check_delete_row(url)


def test_deleted_last_row_is_noticed(url: str) -> None:
    check_delete_last_row(url)


def test_concurrent_appends_keep_one_chain(url: str) -> None:
    check_concurrent_appends(url)


def test_concurrent_first_use(url: str) -> None:
    check_concurrent_first_use(url)


def test_incomplete_runs(url: str) -> None:
    check_incomplete_runs(url)


def test_schema_creation_is_idempotent(url: str) -> None:
    for _ in range(3):
        with Ledger(url) as ledger:
            ledger.ensure_schema()
            ledger.append("approval", actor="a")
    with Ledger(url) as ledger:
        assert ledger.verify().count == 3


def test_injected_clock_and_ts_roundtrip(url: str) -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    with Ledger(url, clock=lambda: moment) as ledger:
        ev = ledger.append("approval", actor="a")
        assert ev.ts == moment
        assert ledger.events()[0].ts == moment
        assert ledger.events(since=moment) and not ledger.events(since=moment + timedelta(microseconds=1))


def test_rejects_raw_request_data_and_bad_fields(url: str) -> None:
    with Ledger(url) as ledger:
        with pytest.raises(LedgerError, match="raw request"):
            ledger.append("node_deploy", actor="a", details={"probe": {"dataframe_split": {"data": [[1]]}}})
        with pytest.raises(LedgerError, match="action"):
            ledger.append("Not An Action", actor="a")
        with pytest.raises(LedgerError, match="actor"):
            ledger.append("approval", actor="")
        with pytest.raises(LedgerError, match="timezone"):
            ledger.append("approval", actor="a", ts=datetime(2024, 1, 1))
        assert ledger.events() == []


def test_export_formats(url: str) -> None:
    with Ledger(url) as ledger:
        _deploy_run(ledger, nodes=2)
        lines = ledger.export_text("jsonl").splitlines()
        assert len(lines) == 4
        rows = [json.loads(line) for line in lines]
        assert verify_chain(rows).ok  # an export verifies offline
        as_json = json.loads(ledger.export_text("json"))
        assert as_json == rows
        table = list(csv.DictReader(io.StringIO(ledger.export_text("csv"))))
        assert [int(r["seq"]) for r in table] == [1, 2, 3, 4]
        assert json.loads(table[1]["details"])["release"] == "2-abababababab"
        assert table[0]["hash"] == rows[0]["hash"]
        with pytest.raises(LedgerError, match="format"):
            ledger.export("xml", io.StringIO())
    tampered = [dict(r) for r in rows]
    tampered[2]["outcome"] = "ok"
    assert verify_chain(tampered).first_bad_seq == 3


def test_empty_exports(url: str) -> None:
    with Ledger(url) as ledger:
        assert json.loads(ledger.export_text("json")) == []
        assert ledger.export_text("jsonl") == ""
        assert ledger.verify().ok and ledger.verify().count == 0


@pytest.mark.parametrize("bad", ["not a url", "foo://x", "mysql://u@h/db"])
def test_bad_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="ledger"):
        Ledger(bad)


def test_unreachable_database_is_a_ledger_error(tmp_path: Path) -> None:
    ledger = Ledger("postgresql+psycopg2://nobody@127.0.61.254:1/none?connect_timeout=2")
    with pytest.raises(LedgerError, match="cannot") as info:
        ledger.events()
    assert info.value.hint and "ledger.url" in info.value.hint
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(LedgerError):
        Ledger(f"sqlite:///{blocked / 'sub' / 'ledger.db'}")


# -- CLI ---------------------------------------------------------------------------------------------------------


def _cli(settings: Settings, *argv: str) -> int:
    import argparse

    from modelfleet.commands import ledger as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["ledger", *argv])
    return int(args.func(args, settings))


def test_cli_list_verify_export(settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with Ledger(settings.ledger.url) as ledger:
        _deploy_run(ledger, "run-1", nodes=2)
        _deploy_run(ledger, "run-2", nodes=1, end=False)
        # a cancelled run has its run_end, with the outcome "incomplete": it is not an open run
        ledger.append("run_start", actor="a", run_id="run-3", outcome="started", details={"kind": "deploy"})
        ledger.append("run_end", actor="a", run_id="run-3", outcome="incomplete", details={"status": "canceled"})
    assert settings.ledger.url.endswith("/.modelfleet/ledger.db")

    assert _cli(settings, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["events"]) == 8 and listed["open_runs"] == ["run-2"]
    assert _cli(settings, "list", "--run", "run-3") == 0
    out = capsys.readouterr().out
    assert "no run_end" not in out and "incomplete" in out

    assert _cli(settings, "list", "--node", "cpu-1", "--run", "run-1") == 0
    out = capsys.readouterr().out
    assert "cpu-1" in out and "run-2" not in out

    assert _cli(settings, "list") == 0
    assert "run run-2: no run_end yet" in capsys.readouterr().out

    assert _cli(settings, "runs", "--json") == 0
    assert {r["run_id"]: r["outcome"] for r in json.loads(capsys.readouterr().out)} == {
        "run-1": "ok", "run-2": "incomplete", "run-3": "incomplete"}

    assert _cli(settings, "verify", "--json") == 0
    assert json.loads(capsys.readouterr().out)["count"] == 8

    out_file = tmp_path / "export" / "ledger.csv"
    assert _cli(settings, "export", "--format", "csv", "-o", str(out_file)) == 0
    assert len(out_file.read_text().splitlines()) == 9

    _sql(settings.ledger.url, "UPDATE ledger_events SET actor = 'mallory' WHERE seq = 4")
    with pytest.raises(LedgerIntegrityError, match="event 4") as info:
        _cli(settings, "verify")
    assert info.value.exit_code == 1


def test_cli_main_exit_codes(settings: Settings, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from modelfleet.cli import main

    with Ledger(settings.ledger.url) as ledger:
        _deploy_run(ledger)
    assert main(["ledger", "verify"]) == 0
    _sql(settings.ledger.url, "DELETE FROM ledger_events WHERE seq = 3")
    assert main(["ledger", "verify"]) == 1
    err = capsys.readouterr().err
    assert "event 3" in err and "Traceback" not in err
    monkeypatch.setenv("MODELFLEET_LEDGER_URL", "nonsense")
    assert main(["ledger", "list"]) == 2
    assert "ledger.url" in capsys.readouterr().err
