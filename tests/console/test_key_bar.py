"""The one-line key bar: the screen's keys, the views as one entry, the keys of actions disabled here left out (read-
only mode, ``q`` off a view's root), clickable, rebuilt only when they change."""

from __future__ import annotations

import pytest

from modelfleet.console.screens.fleet import FleetScreen
from modelfleet.console.screens.runs import RunFormScreen
from modelfleet.console.views import VIEWS
from modelfleet.console.widgets.key_bar import KeyBar
from tests.console.conftest import SIZE, make_app, settle

pytestmark = pytest.mark.anyio


def _bar(app: object) -> KeyBar:
    return app.screen.query_one(KeyBar)  # type: ignore[attr-defined]


async def test_key_bar_shows_the_keys_in_binding_order_the_views_as_one_entry_the_palette_last() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = _bar(app)
        descriptions = [d for _k, _disp, d, _on in bar.keys]
        assert descriptions[:3] == [":cmd", "views", "filter"]
        assert descriptions[-2:] == ["quit", "palette"] and "health…" in descriptions
        assert not {v.name for v in VIEWS} & set(descriptions)  # (each view is in the header, help and palette)
        assert all(enabled for *_rest, enabled in bar.keys)
        text = str(bar.render())
        assert f" 1-{len(VIEWS)} views " in text and " q quit " in text and "^q" not in text


async def test_read_only_leaves_out_the_run_keys_rather_than_dimming_them() -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = _bar(app)
        shown = {d for _k, _disp, d, _on in bar.keys}
        assert not shown & {"run…", "deploy…", "health…", "cancel run…", "shell"}
        assert {"views", "filter", "logs", "copy", "quit"} <= shown
        assert all(enabled for *_rest, enabled in bar.keys)  # nothing is drawn dimmed


async def test_a_click_on_a_key_presses_it_and_the_views_entry_is_not_a_key() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        views_x = str(_bar(app).render()).index(" 1-")
        await pilot.click(KeyBar, offset=(views_x + 2, 0))
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen) and len(app.screen_stack) == 1
        deploy_x = str(_bar(app).render()).index(" d deploy…")
        await pilot.click(KeyBar, offset=(deploy_x + 1, 0))
        await settle(pilot)
        assert isinstance(app.screen, RunFormScreen)


async def test_q_is_shown_at_a_views_root_and_esc_off_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "quit" in {d for *_k, d, _on in _bar(app).keys}
        await pilot.press("enter")  # the node under the cursor
        await settle(pilot)
        shown = {d for *_k, d, _on in _bar(app).keys}
        assert "back" in shown and "quit" not in shown


async def test_same_keys_do_not_rebuild_the_bar() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = _bar(app)
        drawn = bar.keys
        updates = []
        bar.update = lambda *a, **k: updates.append(a)  # type: ignore[method-assign]
        bar.show_keys(bar.shown_keys(app.screen))
        assert bar.keys is drawn and updates == []
