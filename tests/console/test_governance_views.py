"""Governance in the console on fixed data (tests/console/fakes.py): the Approvals view (approve / reject within
your roles, typed confirmation), gate verdicts and the break-glass mark in the Models view, and a deploy to a
protected environment refused with what is missing before anything runs. tests/console/test_governance_real.py
drives the same views on the seeded demo registry and a real ledger."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.widgets import Button, Input

from modelfleet.console.screens.approvals import ApprovalsScreen
from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.models import VersionsScreen
from modelfleet.console.screens.runs import RunFormScreen
from modelfleet.console.widgets.filterable_table import FilterableTable
from tests.console.conftest import SIZE, make_app, screen_text, settle, until
from tests.console.fakes import FakeServices

pytestmark = pytest.mark.anyio


async def test_approvals_list_what_you_may_decide_and_approve_after_typing_the_id() -> None:
    services = FakeServices()
    app = make_app(services=services, start_view="approvals")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ApprovalsScreen)
        table = app.screen.query_one("#approvals", FilterableTable)
        assert table.shown == ["b2e4d6f8", "3a7c19e2", "c0ffee01"]  # pending first
        text = screen_text(app)
        assert "you are mona (manager)" in text and "prod needs manager+qa" in text
        assert "3a7c19e2 pending credit-risk/3 prod manager as manager dana quinn (qa)" in text

        table.select_key("c0ffee01")
        await pilot.press("a")  # decided already: nothing to confirm, and why
        await settle(pilot)
        assert isinstance(app.screen, ApprovalsScreen)
        assert any("cannot decide on request c0ffee01: rejected" in str(n.message) for n in app._notifications)

        table.select_key("3a7c19e2")
        await pilot.press("a")
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and confirm.typed == "3a7c19e2"
        assert confirm.title_text == "Approve request 3a7c19e2 as manager?" and "quarterly retrain" in confirm.body
        assert confirm.query_one("#confirm", Button).disabled
        confirm.query_one("#confirm-typed", Input).focus()
        await pilot.press(*"3a7c19e2", "enter")
        await until(pilot, lambda: "3a7c19e2" in services.decided, "the decision")
        assert [d.record["decision"] for d in services.decided["3a7c19e2"]] == ["approve"]
        await settle(pilot)
        assert any("request 3a7c19e2 is approved" in str(n.message) for n in app._notifications)
        assert "3a7c19e2 approved credit-risk/3 prod" in screen_text(app)  # reloaded


async def test_reject_needs_a_reason_and_a_refused_approval_says_why() -> None:
    services = FakeServices()
    app = make_app(services=services, start_view="approvals")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")  # b2e4d6f8, the first row
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and confirm.reason_required
        assert app.focused is confirm.query_one("#confirm-reason", Input)
        confirm.query_one("#confirm-typed", Input).value = "b2e4d6f8"
        await pilot.pause()
        assert confirm.query_one("#confirm", Button).disabled  # the typed id alone is not enough
        await pilot.press(*"unfair to group D")
        await pilot.pause()
        assert not confirm.query_one("#confirm", Button).disabled
        confirm.query_one("#confirm", Button).press()
        await until(pilot, lambda: "b2e4d6f8" in services.decided, "the rejection")
        assert services.decided["b2e4d6f8"][0].record["reason"] == "unfair to group D"

    services = FakeServices()
    app = make_app(services=services, start_view="approvals")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "(an approval attests a passed gate: it would be refused)" in screen_text(app)
        app.request_decision(app.state.approvals.rows[0], "approve")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        app.screen.query_one("#confirm-typed", Input).value = "b2e4d6f8"
        await pilot.pause()
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot)
        assert not services.decided
        assert any("cannot approve request b2e4d6f8: the gate failed" in str(n.message) for n in app._notifications)


async def test_read_only_disables_deciding() -> None:
    services = FakeServices()
    app = make_app(services=services, start_view="approvals", read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#approvals", FilterableTable).select_key("3a7c19e2")
        for key in ("a", "x"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, ApprovalsScreen)
        assert "read-only: deciding is disabled" in screen_text(app)


async def test_versions_show_gate_verdicts_per_environment_and_open_break_glass_in_red() -> None:
    app = make_app(start_view="models")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VersionsScreen)
        text = screen_text(app)
        assert "v3 champion prod✔ staging✔" in text and "v2 challenger ‼prod prod✘" in text
        cell = app.screen.query_one("#versions", FilterableTable).table.get_row("2")[2]
        assert isinstance(cell, Text) and cell.spans[0].style == "bold white on red"  # the break-glass mark
        assert "gate prod      passed  (ledger #7" in text and "approval prod  pending" in text
        app.screen.query_one("#versions", FilterableTable).select_key("2")
        await settle(pilot)
        text = screen_text(app)
        assert "‼ BREAK-GLASS OPEN on prod: omar" in text and "fraud spike: roll now" in text
        assert "failed: Equal opportunity (FPR gap)" in text


async def test_a_deploy_to_a_protected_environment_shows_what_is_missing_and_starts_nothing() -> None:
    services = FakeServices()
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.push_screen(RunFormScreen({"kind": "deploy", "model": "credit-risk", "ref": "champion",
                                       "target": "edge-cpu-03"}))  # a production node
        await pilot.pause()
        app.screen.query_one("#launch", Button).press()
        await settle(pilot)
        refused = app.screen
        assert isinstance(refused, ConfirmScreen) and not refused.query("#confirm")  # nothing to confirm
        assert "request 3a7c19e2 still needs approval by manager" in refused.body
        assert "no gate verdict for credit-risk/3" in refused.body and "Nothing was started." in refused.body
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunFormScreen) and not services.launched

        app.screen.query_one("#target", Input).value = "edge-cpu-01"  # staging: unprotected
        await pilot.pause()
        app.screen.query_one("#launch", Button).press()
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and app.screen.query("#confirm")


async def test_a_view_key_is_remapped_by_console_keys_and_listed_in_help() -> None:
    app = make_app(start_view="approvals", keys={"approve": "y"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#approvals", FilterableTable).select_key("3a7c19e2")
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ApprovalsScreen)  # `a` approves no more
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and app.screen.typed == "3a7c19e2"
        assert ("y", "approve… (in :approvals)") in app.key_help()
        assert ("p", "plan… (in :infra)") in app.key_help()
