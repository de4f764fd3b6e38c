"""The Infrastructure view on fixed data (tests/console/fakes.py): environments, the saved plan, plan / apply /
destroy as runs of the run pipeline with their confirmations, the live view of a Terraform run, the inventory
written after an apply. tests/console/test_infra_terraform.py drives the same view with real Terraform."""

from __future__ import annotations

import pytest
from textual.widgets import Button

from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.infra import InfraRunScreen, InfraScreen
from modelfleet.console.screens.runs import RunsScreen
from modelfleet.console.widgets.filterable_table import FilterableTable
from modelfleet.runners.infra_state import InfraState
from tests.console.conftest import SIZE, make_app, screen_text, settle, until
from tests.console.fakes import ARM_NODE, CPU_NODE, FakeServices

pytestmark = pytest.mark.anyio


def _infra_run(app: object, kind: str) -> InfraState:
    runs = [s for s in app.state.live.values() if isinstance(s, InfraState) and s.kind == kind]  # type: ignore[attr-defined]
    assert runs, f"no {kind} run"
    return runs[-1]


async def test_environments_saved_plan_resources_and_outputs() -> None:
    app = make_app(start_view="infra")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, InfraScreen)
        table = app.screen.query_one("#infra", FilterableTable)
        assert table.shown == ["aws", "local"]
        text = screen_text(app)
        assert "never initialised here: plan it first (p)" in text  # aws: the first row
        assert "no plan · p" in text and "+1 ~0 -0" in text and "ready · a" in text
        await pilot.press("down")
        await settle(pilot)
        text = screen_text(app)
        assert "run 20250615T140000Z-cccccc by console:ops" in text
        assert f"+ {ARM_NODE}  create" in text  # the saved plan, resource by resource
        assert "resources in state (1)" in text and CPU_NODE in text
        assert 'connection = "modelfleet-sim"' in text and "edge-cpu-01    127.0.10.1" in text


async def test_apply_the_saved_plan_after_typing_apply_then_destroy_naming_the_environment() -> None:
    services = FakeServices()
    app = make_app(services=services, start_view="infra")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "a")
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and confirm.typed == "apply"
        assert f"+ {ARM_NODE}  create" in confirm.body and "$ modelfleet infra apply --env local" in confirm.body
        await pilot.press(*"appl", "enter")  # not the word: nothing happens
        assert isinstance(app.screen, ConfirmScreen) and app.screen.query_one("#confirm", Button).disabled
        await pilot.press("y", "enter")
        await until(pilot, lambda: isinstance(app.screen, InfraRunScreen), "the live view")
        assert app.current_mode == "infra"  # the run shows over the view it was started from
        await until(pilot, lambda: _infra_run(app, "infra_apply").finished, "the apply")
        st = _infra_run(app, "infra_apply")
        assert st.outcome() == "ok" and st.counts() == {"created": 1} and st.planned == {ARM_NODE: "create"}
        await until(pilot, lambda: "local" in app.state.infra_inventory, "the inventory written after the apply")
        assert app.state.infra_inventory["local"].not_in_fleet == ("edge-arm-01",)
        # the live view redraws at most 4 times a second
        await until(pilot, lambda: "1 created" in screen_text(app), "the live view's counts")
        text = screen_text(app)
        assert "terraform apply local" in text and f"{ARM_NODE} terraform_data create created" in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, InfraScreen)
        text = screen_text(app)
        assert f"applied by {st.run_id}" in text and "resources in state (2)" in text
        assert "the Fleet view reads .modelfleet/sim/inventory.yml, which lacks edge-arm-01" in text

        await pilot.press("a")  # that plan was applied: refused before anything runs, with the fix
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("has no saved plan" in str(n.message) for n in app._notifications)

        await pilot.press("x")  # destroy: a destroy plan first (no typing: it changes nothing) ...
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and confirm.typed is None and "destroy plan of local" in \
            confirm.title_text
        confirm.query_one("#confirm", Button).press()
        # ... then, once it is made, its apply, confirmed by typing the environment's name
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen.typed == "local",
                    "the confirmation of the destroy plan's apply")
        assert isinstance(app.screen, ConfirmScreen) and "DESTROYS every resource of local" in str(
            app.screen.typed_prompt)
        await pilot.press(*"local", "enter")
        await until(pilot, lambda: services.in_state["local"] == [], "the destroy")
        await until(pilot, lambda: len([s for s in app.state.live.values() if s.finished]) == 3, "three runs")
        assert [p.kind for p in services.prepared] == ["infra_apply", "infra_plan", "infra_apply"]
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        assert screen_text(app).count("terraform apply") == 2 and "terraform plan" in screen_text(app)


async def test_read_only_disables_plan_apply_and_destroy() -> None:
    services = FakeServices()
    app = make_app(services=services, start_view="infra", read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in ("p", "a", "x"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, InfraScreen)
        assert not services.prepared
        app.request_infra("apply", "local")  # the app refuses too, whatever calls it
        await settle(pilot)
        assert not services.prepared and not isinstance(app.screen, ConfirmScreen)
        shown = {k[2] for k in app.screen.query_one("KeyBar").keys}  # type: ignore[attr-defined]
        assert not shown & {"plan…", "apply plan…", "destroy…"} and "filter" in shown  # left out, as the run keys
        assert "read-only: plan, apply and destroy are disabled" in screen_text(app)
