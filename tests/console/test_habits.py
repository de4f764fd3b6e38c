"""The habits of k9s / lazygit operators (issue 19), on fixed data: palette, form defaults, navigation to a view's
root, q and Esc, a live ledger, one runs list, read-only keys, sorting, logs, shell, copy, the Events view."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Button, Input, RichLog, Static

from modelfleet.console.keys import KEYMAP
from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.events import EventsScreen
from modelfleet.console.screens.fleet import FleetScreen, NodeScreen
from modelfleet.console.screens.logs import LogScreen
from modelfleet.console.screens.models import ModelsScreen, VersionsScreen
from modelfleet.console.screens.run_live import RunLiveScreen
from modelfleet.console.screens.runs import RunFormScreen, RunsScreen
from modelfleet.console.widgets.filterable_table import FilterableTable
from modelfleet.console.widgets.header import ContextHeader
from modelfleet.console.widgets.key_bar import KeyBar
from modelfleet.core.errors import NodeUnreachable
from modelfleet.core.ledger import OUTCOMES
from tests.console.conftest import SIZE, make_app, screen_text, settle
from tests.console.fakes import AGENT_LOG, FakeServices, events

pytestmark = pytest.mark.anyio


def _table(app: Any, id_: str) -> FilterableTable:
    return app.screen.query_one(f"#{id_}", FilterableTable)  # type: ignore[no-any-return]


def _notes(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def _until(pilot: Pilot[Any], cond: Callable[[], bool], what: str, rounds: int = 60) -> None:
    for _ in range(rounds):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


async def _launch_healthcheck(pilot: Pilot[Any], target: str) -> str:
    return await _launch(pilot, "h", target)


async def _launch(pilot: Pilot[Any], key: str, target: str, **fields: str) -> str:
    """Open the run form with ``key`` (h, d), fill ``target`` and ``fields`` (model, ref), launch, confirm, wait
    for the end of the run; its run id."""
    app = pilot.app
    await pilot.press(key)
    await pilot.pause()
    form = app.screen
    assert isinstance(form, RunFormScreen)
    for name, value in fields.items():
        form.query_one(f"#{name}", Input).value = value
    form.query_one("#target", Input).value = target
    form.query_one("#launch", Button).press()
    await settle(pilot)
    assert isinstance(app.screen, ConfirmScreen)
    if app.screen.typed is not None:
        await pilot.press(*target, "enter")
    else:
        app.screen.query_one("#confirm", Button).press()
    await settle(pilot)
    live = app.screen
    assert isinstance(live, RunLiveScreen)
    await _until(pilot, lambda: app.state.live[live.run_id].finished, "the run to finish")
    return live.run_id


# -- command palette --------------------------------------------------------------------------------------------


async def test_the_palette_finds_views_actions_and_commands_with_their_keys() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for expected in ("Deploy…  (d)", "Health check…  (h)", "Rollback…  (:rollback)", "Provision…  (:provision)",
                         "Fleet view  (2, :fleet)", "Events view  (8, :events)", "Filter the table  (/)",
                         "Logs of the node  (l)", "Shell on the node  (s)", "Copy  (y)", "Quit  (^q)", "Theme"):
            assert expected in titles, titles
        assert "Cancel the run…  (c)" not in titles  # not on the fleet view: nothing runs here
        assert any(t.startswith("Sort by p95 ms") for t in titles)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)

        def first_hit() -> str:
            hits = app.screen.query_one(CommandList)
            return str(hits.get_option_at_index(0).prompt) if hits.option_count else ""

        for query, found in (("dep", "Deploy…  (d)"), ("health", "Health check…  (h)"), ("events view", "Events")):
            app.screen.query_one(Input).value = query
            await _until(pilot, lambda f=found: first_hit().startswith(f), f"{found!r} first for {query!r}")
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, EventsScreen)


async def test_an_unknown_command_says_what_exists_and_changes_nothing() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"deplyo", "enter")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen) and not app.screen_stack[1:]
        note = next(n for n in _notes(app) if "deplyo" in n)
        assert note.startswith("unknown command :deplyo; try :models, :fleet") and "Ctrl+P lists everything" in note
        await pilot.press("ctrl+p")
        await pilot.pause()
        app.screen.query_one(Input).value = "zzqx"

        def says_no_match() -> bool:
            hits = app.screen.query_one(CommandList)
            return bool(hits.option_count) and "No matches found" in str(hits.get_option_at_index(0).prompt)

        await _until(pilot, says_no_match, "the palette saying no match")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)


async def test_a_view_added_to_the_registry_is_in_the_palette_keys_and_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generic: the palette and help come from KEYMAP / VIEWS, not from a list of their own."""
    from modelfleet.console import palette

    assert {b for b in KEYMAP if b not in palette.NOT_IN_PALETTE} <= set(palette.TITLES) | set(KEYMAP)
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = " ".join(c.title for c in app.get_system_commands(app.screen))
        assert "Deploy" not in titles and "Shell" not in titles and "Rollback" not in titles  # read-only
        assert "Logs of the node" in titles
        keys = dict((d, k) for k, d in app.key_help())
        assert keys["events"] == "8" and keys["logs"] == "l"


# -- the run form -----------------------------------------------------------------------------------------------


async def test_deploy_from_a_node_row_targets_that_node_and_says_so() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _table(app, "fleet").select_key("edge-arm-06")
        await pilot.press("d")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RunFormScreen)
        assert form.query_one("#model", Input).value == "credit-risk"  # the model the node runs
        assert form.query_one("#target", Input).value == "edge-arm-06"
        assert str(form.query_one("#target-note", Static).render()) == "→ 1 node: edge-arm-06"
        form.query_one("#target", Input).value = "edge_cpu"
        await pilot.pause()
        assert "3 nodes: edge-cpu-01, edge-cpu-02, edge-cpu-03" in str(form.query_one("#target-note").render())
        form.query_one("#target", Input).value = "edge_cpuu"
        await pilot.pause()
        assert "'edge_cpuu' is neither a node nor a group" in str(form.query_one("#target-note").render())


async def test_deploy_command_from_the_fleet_does_not_take_the_node_under_the_cursor() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _table(app, "fleet").select_key("edge-arm-06")
        await pilot.press("colon", *"deploy", "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RunFormScreen)
        assert form.query_one("#target", Input).value == "edge"
        assert str(form.query_one("#target-note", Static).render()) == "→ 6 nodes: every node in the inventory"
        assert form.query_one("#model", Input).value == "credit-risk"  # what the whole fleet runs
        assert "$ modelfleet deploy credit-risk@champion --limit edge " in screen_text(app)


async def test_without_a_model_in_context_the_form_asks_and_shows_no_made_up_value() -> None:
    services = FakeServices()
    services.probe = lambda: []  # type: ignore[method-assign]  # an empty fleet: no model to assume
    app = make_app(services=services, start_view="models")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"deploy", "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RunFormScreen)
        model = form.query_one("#model", Input)
        assert model.value == ""  # two models registered: no guess
        assert "credit-risk" not in model.placeholder and "fraud" not in model.placeholder
        assert not any(c.isdigit() for c in form.query_one("#ref", Input).placeholder)
        text = screen_text(app)
        assert "$ modelfleet deploy MODEL --limit edge" in text
        assert "✘ a deploy needs a model" in text


async def test_the_deploy_form_from_a_version_starts_with_that_version() -> None:
    app = make_app(start_view="models")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # credit-risk: its versions
        await settle(pilot)
        _table(app, "versions").select_key("2")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RunFormScreen)
        assert (form.query_one("#model", Input).value, form.query_one("#ref", Input).value) == ("credit-risk", "2")


async def test_the_health_check_form_shows_only_the_target() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RunFormScreen)
        shown = {f: form.query_one(f"#f-{f}").display for f in ("model", "ref", "target", "waves", "max_fail", "check")}
        assert shown == {"model": False, "ref": False, "target": True, "waves": False, "max_fail": False,
                         "check": False}
        form.query_one("#kind").value = "rollback"  # type: ignore[attr-defined]
        await pilot.pause()
        assert form.query_one("#f-model").display and form.query_one("#f-ref").display
        assert not form.query_one("#f-waves").display
        assert form.query_one("#ref", Input).value == ""  # a rollback: blank = each node's previous release


# -- navigation: a view's root, q and Esc ---------------------------------------------------------------------


async def test_runs_never_nest_and_view_keys_land_on_the_view_root() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        first = await _launch_healthcheck(pilot, "edge-cpu-01")
        assert app.screen.query_one(ContextHeader).crumbs == ["Runs", first]
        await pilot.press("2")  # after a launch: the fleet, not the form it was launched from
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen) and len(app.screen_stack) == 1
        second = await _launch_healthcheck(pilot, "edge-cpu-02")
        assert app.screen.query_one(ContextHeader).crumbs == ["Runs", second]  # not Runs > first > second
        await pilot.press("colon", *"runs", "enter")  # the list, not the last run
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen) and len(app.screen_stack) == 1
        await pilot.press("1", "enter")
        await settle(pilot)
        assert isinstance(app.screen, VersionsScreen)
        await pilot.press("2", "1")  # back to models: its root, not the versions left open
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen) and len(app.screen_stack) == 1


async def test_q_quits_from_a_root_and_goes_back_from_a_drill_down() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = app.screen.query_one(KeyBar)
        assert ("q", "quit") in [(k, d) for k, _disp, d, _on in bar.keys]
        _table(app, "fleet").select_key("edge-cpu-01")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, NodeScreen)
        descriptions = [d for *_k, d, _on in app.screen.query_one(KeyBar).keys]
        assert "back" in descriptions and "quit" not in descriptions  # off the root, q is not "quit"
        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen) and app.is_running
        assert app.return_code is None  # q off the root went back; it did not exit
        await pilot.press("q")
        for _ in range(250):  # the app's message loop ends on its own, not at the end of run_test
            if not app.is_running:
                break
            await asyncio.sleep(0.02)
        assert not app.is_running, "q at a view's root did not stop the app"
        assert app.return_code == 0  # stopped by App.exit(), with success (not a crash: that is 1)


# -- ledger and runs --------------------------------------------------------------------------------------------


def _event(seq: int, **kw: Any) -> Any:
    return dataclasses.replace(events()[-1], seq=seq, **kw)


async def test_the_ledger_follows_new_events_and_its_detail_follows_the_cursor() -> None:
    services = FakeServices()
    app = make_app(services=services, start_view="ledger", follow_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = _table(app, "ledger")
        assert table.shown[0] == "6"
        services.extra_events.append(_event(7, action="node_deploy", node="edge-gpu-04",
                                            run_id="20250615T150640Z-000042", outcome="failed"))
        await _until(pilot, lambda: table.shown[:1] == ["7"], "event 7 shown without r")
        detail = app.screen.query_one("#ledger-event", Static)
        for key in ("6", "5", "4"):
            await pilot.press("down")
            await pilot.pause()
            assert table.cursor_key == key and str(detail.render()).startswith(f"event {key}")
        run_column = table.table.ordered_columns[5]
        assert str(run_column.label).startswith("run") and run_column.get_render_width(table.table) >= 23 + 2
        assert "20250615T150640Z-000042" in screen_text(app)


async def test_runs_launched_here_show_the_same_fields_and_words_as_the_others_newest_first() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        run_id = await _launch_healthcheck(pilot, "edge-cpu-01")
        await pilot.press("3")
        await settle(pilot)
        table = _table(app, "runs")
        assert table.shown == [run_id, "20250614T100000Z-aaaaaa"]  # newest first
        rows = {r.key: [c.plain if hasattr(c, "plain") else str(c) for c in r.cells] for r in table.rows}
        here = rows[run_id]
        assert here[1:7] == ["health-check", "-", "-", "edge-cpu-01", "2025-06-15 15:06", "ok"]
        assert "this session" not in screen_text(app) and "successful" not in screen_text(app)
        assert rows["20250614T100000Z-aaaaaa"][6] == "ok"


async def test_deploys_launched_here_show_model_version_and_target_and_the_ledgers_outcome_words() -> None:
    app = make_app(services=FakeServices(fail_host="edge-cpu-02"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        ok = await _launch(pilot, "d", "edge-cpu-01", model="credit-risk", ref="champion")
        await pilot.press("escape")
        await settle(pilot)
        failed = await _launch(pilot, "d", "edge-cpu-02", model="credit-risk", ref="2")
        await pilot.press("3")
        await settle(pilot)
        table = _table(app, "runs")
        assert table.shown == [failed, ok, "20250614T100000Z-aaaaaa"]  # newest first
        rows = {r.key: [c.plain if hasattr(c, "plain") else str(c) for c in r.cells] for r in table.rows}
        # (run, kind, model, version, target, started, outcome): the fields a deploy from the CLI has
        assert rows[ok][1:7] == ["deploy", "credit-risk", "3", "edge-cpu-01", "2025-06-15 15:06", "ok"]  # champion
        assert rows[failed][1:7] == ["deploy", "credit-risk", "2", "edge-cpu-02", "2025-06-15 15:06", "failed"]
        cli = rows["20250614T100000Z-aaaaaa"]  # a deploy the ledger has from the CLI: the same columns, words
        assert cli[1:5] == ["deploy", "credit-risk", "2", "edge"] and cli[6] == "ok"
        assert {rows[ok][6], rows[failed][6]} <= set(OUTCOMES)  # the ledger's run_end words, nothing else
        text = screen_text(app)
        assert "this session" not in text and "successful" not in text
        assert " - " not in " ".join(rows[ok][1:7] + rows[failed][1:7])


# -- read-only --------------------------------------------------------------------------------------------------


async def test_read_only_hides_disabled_keys_and_says_so_when_pressed() -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = {d for *_k, d, _on in app.screen.query_one(KeyBar).keys}
        assert not shown & {"run…", "deploy…", "health…", "shell"} and {"logs", "copy", "quit"} <= shown
        for key, what in (("d", "launching runs"), ("n", "launching runs"), ("s", "shell")):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, FleetScreen)
            assert any(f"read-only mode: {what}" in n for n in _notes(app)), (key, _notes(app))


# -- sorting ----------------------------------------------------------------------------------------------------


async def test_shift_letter_sorts_repeat_reverses_and_each_view_remembers() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = _table(app, "fleet")
        p95 = table.labels.index("p95 ms")
        letter = table.letters[p95]
        assert letter is not None
        await pilot.press(letter.upper())
        await pilot.pause()
        cpu_staging = [k for k in table.shown if k in ("edge-cpu-01", "edge-cpu-02")]
        assert cpu_staging == ["edge-cpu-01", "edge-cpu-02"]  # 8.9 before 61.0, inside its group
        assert str(table.table.ordered_columns[p95].label).endswith("▲")
        await pilot.press(letter.upper())
        await pilot.pause()
        assert [k for k in table.shown if k in ("edge-cpu-01", "edge-cpu-02")] == ["edge-cpu-02", "edge-cpu-01"]
        assert table.shown[0].startswith("group:")  # headings stay on top of their group
        await pilot.press("3", "2")
        await settle(pilot)
        assert _table(app, "fleet").sort == (p95, True)
        await pilot.press("1", "enter")
        await settle(pilot)
        versions = _table(app, "versions")
        await pilot.press("V")  # version: lowest first
        await pilot.pause()
        assert versions.shown == ["1", "2", "3"]
        await pilot.press("escape", "enter")  # a new versions screen: the same order
        await settle(pilot)
        assert _table(app, "versions").shown == ["1", "2", "3"]


# -- logs, shell, copy ------------------------------------------------------------------------------------------


async def test_l_streams_the_node_log_with_follow_search_and_wrap() -> None:
    services = FakeServices()
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _table(app, "fleet").select_key("edge-cpu-02")
        await pilot.press("l")
        await _until(pilot, lambda: isinstance(app.screen, LogScreen), "the log screen")  # (its worker follows)
        screen = app.screen
        assert isinstance(screen, LogScreen) and screen.node == "edge-cpu-02"
        log = screen.query_one(RichLog)
        await _until(pilot, lambda: len(log.lines) == len(AGENT_LOG), "the first lines")
        services.streams[-1].push("2025-06-15T15:09:00+0000 ERROR modelfleet.agent: a new line")
        await _until(pilot, lambda: len(log.lines) == len(AGENT_LOG) + 1, "the followed line")
        assert "following" in str(screen.query_one("#log-summary", Static).render())
        await pilot.press("slash", *"warning", "enter")
        await pilot.pause()
        assert len(log.lines) == 1 and "slow request" in "".join(s.text for s in log.lines[0])
        await pilot.press("w")
        await pilot.pause()
        assert log.wrap
        await pilot.press("w")
        await pilot.pause()
        assert not log.wrap  # (one line, one row again)
        await pilot.press("f")
        await pilot.pause()
        assert not log.auto_scroll and "held" in str(screen.query_one("#log-summary").render())
        await pilot.press("escape")  # clears the search
        await pilot.pause()
        assert len(log.lines) == len(AGENT_LOG) + 1
        await pilot.press("y")
        assert app.clipboard == "modelfleet logs edge-cpu-02 -f"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen) and services.streams[-1].closed  # ssh ended with the screen


async def test_logs_of_a_run_host_and_an_unreachable_node_say_what_went_wrong() -> None:
    services = FakeServices()
    services.log_error = NodeUnreachable("cannot reach edge-cpu-01 over ssh: Connection refused",
                                         hint="check that edge-cpu-01 is up")
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await _launch_healthcheck(pilot, "edge-cpu-01")
        _table(app, "hosts").select_key("edge-cpu-01")
        await pilot.press("l")
        await settle(pilot)
        assert isinstance(app.screen, LogScreen) and app.screen.node == "edge-cpu-01"
        await _until(pilot, lambda: "Connection refused" in str(app.screen.query_one("#log-summary").render()),
                     "the error")
        assert "fix: check that edge-cpu-01 is up" in str(app.screen.query_one("#log-summary").render())


async def test_s_needs_a_terminal_and_says_which_command_to_run() -> None:
    services = FakeServices()
    services.shell = ["ssh", "-o", "Port=2222", "-t", "127.0.10.1", "cd /opt/modelfleet"]
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:  # headless: Textual cannot suspend; the real one: test_tmux
        await settle(pilot)
        _table(app, "fleet").select_key("edge-cpu-01")
        await pilot.press("s")
        await settle(pilot)
        assert any("ssh -o Port=2222 -t 127.0.10.1" in n for n in _notes(app)), _notes(app)


async def test_y_copies_the_row_key_or_the_shown_command() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _table(app, "fleet").select_key("edge-gpu-04")
        await pilot.press("y")
        assert app.clipboard == "edge-gpu-04"
        await pilot.press("1", "enter")
        await settle(pilot)
        _table(app, "versions").select_key("2")
        await settle(pilot)
        await pilot.press("y")
        assert app.clipboard == "credit-risk/2"
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        assert app.clipboard.startswith("modelfleet deploy credit-risk/2 --limit edge")
        assert any("copied" in n for n in _notes(app))


# -- events -----------------------------------------------------------------------------------------------------


async def test_the_events_view_lists_what_needs_attention_newest_first_and_live() -> None:
    services = FakeServices()
    services.extra_events += [
        _event(7, action="node_deploy", node="edge-arm-05", run_id="r2", outcome="unreachable"),
        _event(8, action="run_end", run_id="r2", outcome="failed", details={"kind": "deploy", "problem": "budget"}),
    ]
    app = make_app(services=services, follow_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("8")
        await settle(pilot)
        assert isinstance(app.screen, EventsScreen)
        table = _table(app, "events")
        assert table.shown == ["8", "7"]
        text = screen_text(app)
        assert "deploy credit-risk v3 failed: budget" in text and "edge-arm-05 unreachable in" in text
        services.extra_events.append(_event(9, action="drift_alert", node="edge-cpu-02", outcome="breach",
                                            details={"severity": "critical", "summary": "psi 0.4 on income"}))
        await _until(pilot, lambda: table.shown[:1] == ["9"], "the new alert")
        assert "drift alert on credit-risk v3 edge-cpu-02: psi 0.4 on income" in screen_text(app)
        await pilot.press("down")  # event 8: a run_end names no node
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, EventsScreen) and any("names no node" in n for n in _notes(app))


async def test_the_infra_approvals_and_drift_views_come_from_the_registry_with_their_own_keys() -> None:
    """Keys 5/6/7 and their ``:`` words (``:a`` is approvals); a view's own keys (p/a/x) are in its palette with
    their key, nowhere else, and leave the palette and the key bar in read-only mode."""
    from modelfleet.console.screens.approvals import ApprovalsScreen
    from modelfleet.console.screens.drift import DriftScreen
    from modelfleet.console.screens.infra import InfraScreen

    app = make_app(start_view="infra")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, InfraScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for expected in ("Terraform plan…  (p)", "Apply the saved plan…  (a)", "Destroy the environment…  (x)",
                         "Infrastructure view  (5, :infra)", "Approvals view  (6, :approvals)",
                         "Drift and latency view  (7, :drift)"):
            assert expected in titles, titles
        assert not any(t.startswith("Approve") for t in titles)
        for word, screen in (("a", ApprovalsScreen), ("latency", DriftScreen), ("terraform", InfraScreen),
                             ("i", InfraScreen), ("approvals", ApprovalsScreen)):
            await pilot.press("colon", *word, "enter")
            await settle(pilot)
            assert isinstance(app.screen, screen), word
        for key, screen in (("7", DriftScreen), ("6", ApprovalsScreen), ("8", EventsScreen), ("5", InfraScreen)):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, screen), key
        help_keys = dict((d, k) for k, d in app.key_help())
        assert help_keys["plan… (in :infra)"] == "p" and help_keys["approve… (in :approvals)"] == "a"
    app = make_app(start_view="approvals", read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = " ".join(c.title for c in app.get_system_commands(app.screen))
        assert "Approve" not in titles and "Reject" not in titles
        shown = {d for *_k, d, _on in app.screen.query_one(KeyBar).keys}
        assert not shown & {"approve…", "reject…"} and "filter" in shown
