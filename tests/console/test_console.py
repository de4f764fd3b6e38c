"""Pilot tests: every view and action of the console on fixed data (no network, no Ansible)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Select

from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.fleet import FleetScreen, NodeScreen
from modelfleet.console.screens.help import HelpScreen
from modelfleet.console.screens.ledger import LedgerScreen
from modelfleet.console.screens.models import ModelsScreen, VersionsScreen
from modelfleet.console.screens.run_live import HostTasksScreen, RunLiveScreen
from modelfleet.console.screens.runs import RunFormScreen, RunsScreen
from modelfleet.console.widgets.filterable_table import FilterableTable
from modelfleet.console.widgets.header import ContextHeader
from tests.console.conftest import SIZE, make_app, screen_text, settle
from tests.console.fakes import FakeServices, runner_events

pytestmark = pytest.mark.anyio


def _table(app: object, id_: str) -> FilterableTable:
    return app.screen.query_one(f"#{id_}", FilterableTable)  # type: ignore[attr-defined]


async def test_fleet_view_groups_marks_and_filters() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen)
        table = _table(app, "fleet")
        assert table.shown[0] == "group:arm:staging"
        text = screen_text(app)
        assert "UNREACHABLE" in text and "STALE" in text and "SLO breach" in text
        assert "120!" in text  # p99 over the SLO is marked
        assert "5m ago" in text  # the stale node's last seen
        header = app.screen.query_one(ContextHeader)
        assert header.crumbs == ["Fleet"] and header.context["inventory"].endswith("inventory.yml")

        await pilot.press("slash")
        await pilot.press(*"cpu staging")
        await pilot.pause()
        assert [k for k in table.shown if not k.startswith("group:")] == ["edge-cpu-01", "edge-cpu-02"]
        await pilot.press("escape")  # closes the filter input, keeps the filter
        await pilot.press("escape")  # clears the filter
        await pilot.pause()
        assert len([k for k in table.shown if not k.startswith("group:")]) == 6


async def test_switch_views_with_numbers_command_bar_and_palette_commands() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, LedgerScreen)
        await pilot.press("colon", *"runs", "enter")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("colon", *"fleet", "enter")
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("colon", *"nope", "enter")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)


async def test_models_versions_drilldown_detail_and_alias_flag() -> None:
    app = make_app(start_view="models")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # fleet was never probed in this view: placements come from the ledger only
        app.refresh_fleet()
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VersionsScreen)
        assert app.screen.query_one(ContextHeader).crumbs == ["Models", "credit-risk"]
        text = screen_text(app)
        assert "champion is v3 but 5 nodes run v2" in text
        assert "auc 0.912" in text
        assert "sha256:" + "03" * 32 in text  # the detail pane: digest of the highlighted version
        assert '"income"' in text  # its signature
        assert "max_depth = 5" in text  # run parameters
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ModelsScreen)


async def test_node_drilldown_shows_history_and_releases() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _table(app, "fleet").select_key("edge-cpu-01")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, NodeScreen)
        text = screen_text(app)
        assert "p95 history" in text and "min 8.1  max 12.5" in text
        assert "credit-risk/2-bbbbbbbbbbbb" in text and "current" in text
        assert "node_deploy" in text  # ledger events of the node
        assert app.screen.query_one(ContextHeader).crumbs == ["Fleet", "edge-cpu-01"]
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_ledger_verify_status_and_filters() -> None:
    app = make_app(start_view="ledger")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "chain verified" in text and "6 events" in text
        assert len(_table(app, "ledger").shown) == 6
        assert not app.screen.query_one("#lf-node", Input).can_focus  # out of the focus chain until asked for
        await pilot.press("f", "tab")  # f: the field filters (model first), Tab: node
        assert app.focused is app.screen.query_one("#lf-node", Input)
        await pilot.press(*"edge-cpu-02", "enter")
        await settle(pilot)
        assert _table(app, "ledger").shown == ["3"]
        assert "node=edge-cpu-02" in screen_text(app)
        assert app.focused is _table(app, "ledger").table  # Enter applies and returns to the table
        assert not app.screen.query_one("#lf-node", Input).can_focus


async def test_healthcheck_from_form_is_fleet_wide_needs_typed_confirmation_and_runs_live() -> None:
    services = FakeServices()
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, RunFormScreen)
        assert form.query_one("#kind", Select).value == "healthcheck"
        assert form.query_one("#target", Input).value == "edge-arm-05"  # the highlighted node
        form.query_one("#target", Input).value = "edge"
        await pilot.pause()
        text = screen_text(app)
        assert "$ modelfleet health --limit edge\n" in text  # `modelfleet health` takes no --yes / --check
        assert "ansible-playbook -i .modelfleet/sim/inventory.yml playbooks/healthcheck.yml --limit edge" in text
        form.query_one("#launch", Button).press()
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and confirm.typed == "edge"
        assert confirm.query_one("#confirm", Button).disabled
        await pilot.press("enter")  # focus is on the typed input: Enter with nothing typed confirms nothing
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press(*"edge", "enter")
        await settle(pilot)
        live = app.screen
        assert isinstance(live, RunLiveScreen)
        for _ in range(40):
            await pilot.pause(0.05)
            st = app.state.live[live.run_id]
            if st.finished:
                break
        await pilot.pause(0.3)
        assert st.outcome() == "ok" and st.counts()["ok"] == 6
        assert services.launched[0].kind == "healthcheck" and services.launched[0].target == "edge"
        text = screen_text(app)
        assert "6 ok" in text and "edge-gpu-04" in text
        assert any("run finished" in (n.title or "") for n in app._notifications)
        _table(app, "hosts").select_key("edge-cpu-01")
        _table(app, "hosts").table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HostTasksScreen)
        assert "Version is the expected one" in screen_text(app)


async def test_deploy_form_pins_before_launch_and_single_node_needs_no_typing() -> None:
    services = FakeServices(fail_host="edge-cpu-01")
    app = make_app(services=services, start_view="models")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, RunFormScreen)
        form.query_one("#target", Input).value = "edge-cpu-01"
        form.query_one("#ref", Input).value = "champion"
        form.query_one("#preview", Button).press()
        await settle(pilot)
        assert "pinned: credit-risk champion → v3" in screen_text(app)
        assert "modelfleet deploy credit-risk/3 --limit edge-cpu-01" in screen_text(app)
        form.query_one("#launch", Button).press()
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and confirm.typed is None
        assert app.focused is confirm.query_one("#cancel", Button)  # no single key confirms
        await pilot.press("enter")
        await pilot.pause()
        assert not services.launched and isinstance(app.screen, RunFormScreen)
        form.query_one("#launch", Button).press()
        await settle(pilot)
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot)
        for _ in range(40):
            await pilot.pause(0.05)
            if all(s.finished for s in app.state.live.values()):
                break
        req = services.launched[0]
        assert (req.kind, req.model, req.version, req.digest) == ("deploy", "credit-risk", 3, "03" * 32)
        st = next(iter(app.state.live.values()))
        assert st.outcome() == "failed" and st.counts()["failed"] == 1


async def test_cancel_a_running_run() -> None:
    gate = threading.Event()
    services = FakeServices(gate=gate)
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _table(app, "fleet").select_key("edge-cpu-02")
        await pilot.press("h")
        await pilot.pause()
        assert app.screen.query_one("#target", Input).value == "edge-cpu-02"
        app.screen.query_one("#launch", Button).press()
        await settle(pilot)
        app.screen.query_one("#confirm", Button).press()
        await pilot.pause(0.3)
        assert isinstance(app.screen, RunLiveScreen)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        handle = app.state.handles[next(iter(app.state.live))]
        assert handle.held  # held while the question is open
        app.screen.query_one("#cancel", Button).press()  # "Keep going"
        await pilot.pause()
        assert not handle.held and not services.canceled.is_set()
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and handle.held
        app.screen.query_one("#confirm", Button).press()
        for _ in range(40):
            await pilot.pause(0.05)
            if services.canceled.is_set():
                break
        await pilot.pause(0.2)
        assert services.canceled.is_set()
        assert next(iter(app.state.live.values())).outcome() == "incomplete"
        gate.set()


async def test_read_only_disables_every_action() -> None:
    services = FakeServices()
    app = make_app(services=services, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.screen.query_one(ContextHeader).read_only
        for key in ("h", "d", "n"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, FleetScreen)
        await pilot.press("colon", *"deploy", "enter")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        app.push_screen(RunFormScreen({"kind": "healthcheck"}))
        await pilot.pause()
        assert app.screen.query_one("#launch", Button).disabled
        app.request_launch(app.screen)  # type: ignore[arg-type]
        await settle(pilot)
        assert not services.launched


async def test_replay_past_run_from_artifacts(tmp_path: Path) -> None:
    art = tmp_path / "artifacts" / "20250615T090000Z-bbbbbb"
    (art / "job_events").mkdir(parents=True)
    for ev in runner_events(["edge-cpu-01", "edge-cpu-02"], fail="edge-cpu-02"):
        (art / "job_events" / f"{ev['counter']}-x.json").write_text(json.dumps(ev))
    (art / "status").write_text("failed")
    (art / "rc").write_text("2")
    app = make_app(services=FakeServices(artifacts=art), start_view="runs")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert _table(app, "runs").shown[0] == "20250615T090000Z-bbbbbb"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunLiveScreen)
        st = app.state.live["20250615T090000Z-bbbbbb"]
        assert st.outcome() == "failed" and st.counts()["failed"] == 1
        assert "replayed from artifacts" in screen_text(app)
        search = app.screen.query_one("#run-search", Input)
        search.value = "fatal"
        search.focus()
        await pilot.press("enter")
        await pilot.pause(0.3)
        log = app.screen.query_one("#run-output")
        assert [str(line) for line in log.lines] == ["fatal: [edge-cpu-02]"]  # type: ignore[attr-defined]


async def test_help_screen_and_remapped_keys() -> None:
    app = make_app(keys={"fleet": "f2", "models": "m"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("f2")
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = dict((d, k) for k, d in app.screen.keys)
        assert keys["fleet"] == "f2" and keys["filter"] == "/"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)


async def test_command_bar_opens_from_any_view_and_never_types_into_a_filter() -> None:
    """The old focus race: after `4` the cursor must be in the ledger table, so `:` opens the command line."""
    from modelfleet.console.widgets.command_bar import CommandBar

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key, screen_type in (("1", ModelsScreen), ("4", LedgerScreen), ("2", FleetScreen), ("4", LedgerScreen)):
            await pilot.press(key, "colon")  # no pause in between: switching must not steal the next key
            bar = app.screen.query_one(CommandBar)
            assert isinstance(app.screen, screen_type) and bar.has_class("-open") and app.focused is bar
            assert all(not i.value for i in app.screen.query("#ledger-filters Input"))  # type: ignore[attr-defined]
            await pilot.press("escape")
            assert not bar.has_class("-open")
            assert not isinstance(app.focused, Input)  # focus back where it was, not the next text box
        # in the ledger, the field filters take `:` as text only once the user opened them
        await pilot.press("f", *"a:b")
        assert app.screen.query_one("#lf-model", Input).value == "a:b"
        assert not app.screen.query_one(CommandBar).has_class("-open")
        await pilot.press("escape", "colon")
        assert app.screen.query_one(CommandBar).has_class("-open")


def test_unknown_key_action_is_a_config_error() -> None:
    from modelfleet.core.errors import ModelfleetError

    with pytest.raises(ModelfleetError, match="unknown action 'flet'"):
        make_app(keys={"flet": "x"})


async def test_first_visit_to_a_view_does_not_restyle_the_whole_app_but_a_theme_change_does() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        calls: list[bool] = []
        refresh_css = app.refresh_css

        def counting(animate: bool = True) -> None:
            calls.append(animate)
            refresh_css(animate)

        app.refresh_css = counting  # type: ignore[method-assign]
        for key in ("1", "3", "4", "2"):
            await pilot.press(key)
            await settle(pilot)
        assert calls == []  # each new view was styled as it mounted
        app.theme = "textual-light"
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert calls and isinstance(app.screen, ModelsScreen)
        from textual.color import Color

        light = Color.parse(app.theme_variables["background"])
        assert app.screen.styles.background.hex == light.hex  # the hidden view was restyled when shown
