"""Snapshot tests (pytest-textual-snapshot) of every view at 160x48 on fixed data and a fixed clock.

Update after an intended change with ``pytest tests/console/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from modelfleet.console.screens.runs import RunFormScreen
from tests.console.conftest import SIZE, make_app, settle
from tests.console.fakes import FakeServices, runner_events


async def _settled(pilot: Pilot[Any]) -> None:
    await settle(pilot)


def test_snapshot_fleet(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_settled)


def test_snapshot_fleet_filtered(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("slash", *"staging")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_node(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("#fleet").select_key("edge-cpu-02")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_models(snap_compare: Any) -> None:
    assert snap_compare(make_app(start_view="models"), terminal_size=SIZE, run_before=_settled)


def test_snapshot_versions(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.refresh_fleet()  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(start_view="models"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_ledger(snap_compare: Any) -> None:
    assert snap_compare(make_app(start_view="ledger"), terminal_size=SIZE, run_before=_settled)


def test_snapshot_runs(snap_compare: Any) -> None:
    assert snap_compare(make_app(start_view="runs"), terminal_size=SIZE, run_before=_settled)


def test_snapshot_run_form(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.push_screen(RunFormScreen({"kind": "deploy", "model": "credit-risk", "ref": "champion",
                                             "target": "edge_cpu"}))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_run_replay(snap_compare: Any, tmp_path: Path) -> None:
    art = tmp_path / "artifacts" / "20250615T090000Z-bbbbbb"
    (art / "job_events").mkdir(parents=True)
    for ev in runner_events(["edge-cpu-01", "edge-cpu-02", "edge-gpu-04"], fail="edge-cpu-02"):
        (art / "job_events" / f"{ev['counter']}-x.json").write_text(json.dumps(ev))
    (art / "status").write_text("failed")
    (art / "rc").write_text("2")

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.pause(0.4)

    app = make_app(services=FakeServices(artifacts=art), start_view="runs")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_help(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_read_only_confirm(snap_compare: Any) -> None:
    from modelfleet.console.screens.confirm import ConfirmScreen

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.push_screen(ConfirmScreen("Start healthcheck?", "6 host(s)\n\n$ modelfleet health --limit edge",
                                            typed="edge"))
        await pilot.pause()

    assert snap_compare(make_app(read_only=True), terminal_size=SIZE, run_before=run_before)


def test_snapshot_drift(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("#drift-versions").select_key("credit-risk@2")  # type: ignore[attr-defined]
        await settle(pilot)

    assert snap_compare(make_app(start_view="drift"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_drift_detail(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("#drift-versions").select_key("credit-risk@2")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(start_view="drift"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_infra(snap_compare: Any) -> None:
    """Two environments: `local` with a saved plan that adds a node (its detail pane: plan, state, outputs)."""
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)

    assert snap_compare(make_app(start_view="infra"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_infra_run(snap_compare: Any) -> None:
    """A Terraform apply from the Infra view, live view at its end: resources created, the inventory written."""
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down", "a")  # local: apply its saved plan
        await settle(pilot)
        await pilot.press(*"apply", "enter")
        await settle(pilot)
        await pilot.pause(0.4)
        await settle(pilot)
        pilot.app.clear_notifications()  # ("preparing apply…" lasts 3 s: on a busy machine it may be gone already)
        await settle(pilot)

    assert snap_compare(make_app(start_view="infra"), terminal_size=SIZE, run_before=run_before)


def test_snapshot_approvals(snap_compare: Any) -> None:
    assert snap_compare(make_app(start_view="approvals"), terminal_size=SIZE, run_before=_settled)


def test_snapshot_approve_confirm(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()

    assert snap_compare(make_app(start_view="approvals"), terminal_size=SIZE, run_before=run_before)
