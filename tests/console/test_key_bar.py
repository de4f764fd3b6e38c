"""The one-line key bar: the screen's keys, dimmed when disabled, clickable, rebuilt only when they change."""

from __future__ import annotations

import pytest

from modelfleet.console.screens.models import ModelsScreen
from modelfleet.console.widgets.key_bar import KeyBar
from tests.console.conftest import SIZE, make_app, settle

pytestmark = pytest.mark.anyio


def _bar(app: object) -> KeyBar:
    return app.screen.query_one(KeyBar)  # type: ignore[attr-defined]


async def test_key_bar_shows_the_screens_keys_in_binding_order_with_the_palette_last() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = _bar(app)
        descriptions = [d for _k, _disp, d, _on in bar.keys]
        assert descriptions[:4] == ["quit", ":cmd", "models", "fleet"]
        assert descriptions[-1] == "palette" and "health-check…" in descriptions
        assert all(enabled for *_rest, enabled in bar.keys)
        text = str(bar.render())
        assert " 1 models " in text and " ^q quit " in text


async def test_read_only_dims_the_run_keys_and_a_click_on_them_does_nothing() -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = _bar(app)
        state = {d: on for _k, _disp, d, on in bar.keys}
        assert state["deploy…"] is False and state["new run…"] is False and state["models"] is True
        deploy_x = str(bar.render()).index(" d deploy…")
        await pilot.click(KeyBar, offset=(deploy_x + 1, 0))
        await settle(pilot)
        assert len(app.screen_stack) == 1  # no run form opened


async def test_a_click_on_a_key_presses_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        models_x = str(_bar(app).render()).index(" 1 models")
        await pilot.click(KeyBar, offset=(models_x + 3, 0))
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)


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
