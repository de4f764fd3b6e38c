"""What the console skips to keep frames short must not change what is drawn: a tiled container's invisible
background (widgets/tiled.py) and a Static update that changes nothing or keeps the size (widgets/quiet_update.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static

from modelfleet.console.widgets import tiled
from modelfleet.console.widgets.quiet_update import same_content, update_static
from modelfleet.console.widgets.tiled import TiledHorizontal, TiledVertical
from tests.console.conftest import SIZE, make_app, settle

pytestmark = pytest.mark.anyio


def _frame(app: App[Any]) -> list[list[tuple[str, object]]]:
    """Every line of the screen as the compositor sends it: (text, style) pieces."""
    for widget in app.screen.walk_children(with_self=True):
        widget._styles_cache.clear()
    strips = app.screen._compositor.render_strips()
    return [[(seg.text, seg.style) for seg in strip] for strip in strips]


def _count_shortcuts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    used = [0, 0]
    cover = tiled.children_cover

    def counting(widget: Any) -> bool:
        covered = cover(widget)
        used[0 if covered else 1] += 1
        return covered

    monkeypatch.setattr(tiled, "children_cover", counting)
    return used


@pytest.mark.parametrize("key", ["2", "1", "3", "4"])
async def test_each_view_draws_the_same_with_and_without_the_tiled_shortcut(key: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        if key == "1":  # the versions view: a table beside a detail pane
            await pilot.press("enter")
            await settle(pilot)
        used = _count_shortcuts(monkeypatch)
        with_shortcut = _frame(app)
        assert used[0] > 0, "no tiled container was skipped on this view"
        monkeypatch.setattr(tiled, "children_cover", lambda widget: False)
        assert _frame(app) == with_shortcut


class Gapped(App[None]):
    CSS = ("TiledHorizontal { height: auto; } #gap > Static { margin: 0 1; width: 1fr; } #full > Static { width: 1fr; }"
           " #empty { height: 2; }")

    def compose(self) -> ComposeResult:
        with TiledHorizontal(id="full"):
            yield Static("a")
            yield Static("b")
        with TiledHorizontal(id="gap"):  # margins leave the container's background visible between the children
            yield Static("c")
            yield Static("d")
        with TiledVertical(id="empty"):
            pass


async def test_a_container_is_drawn_where_its_children_leave_gaps() -> None:
    app = Gapped()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        full, gap = app.query_one("#full", TiledHorizontal), app.query_one("#gap", TiledHorizontal)
        assert full.size.height == 1 and full.query_one(Static).size.width == 20  # Horizontal's own CSS applies
        assert tiled.children_cover(full)
        assert not tiled.children_cover(gap)
        assert not tiled.children_cover(app.query_one("#empty", TiledVertical))


class Summary(App[None]):
    CSS = "#auto { height: auto; } #fixed { height: 2; }"

    def compose(self) -> ComposeResult:
        yield Static("one line", id="auto")
        yield Static("fixed", id="fixed")


async def test_a_static_is_updated_only_when_it_changes_and_laid_out_only_when_its_size_can(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = Summary()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        auto, fixed = app.query_one("#auto", Static), app.query_one("#fixed", Static)
        calls: list[tuple[str | None, bool]] = []
        update = Static.update

        def recording(self: Static, content: Any = "", *, layout: bool = True) -> None:
            calls.append((self.id, layout))
            update(self, content, layout=layout)

        monkeypatch.setattr(Static, "update", recording)
        update_static(auto, "one line")  # the same: nothing
        update_static(auto, "two words")  # the same height
        update_static(auto, "two\nlines")  # taller: laid out
        update_static(auto, "x" * 60)  # wider than the screen: may wrap, laid out
        update_static(fixed, "fixed\nsize")  # a fixed height never needs it
        update_static(fixed, "fixed\nsize")
        assert calls == [("auto", False), ("auto", True), ("auto", True), ("fixed", False)]
        await pilot.pause()
        assert auto.size.height == 2 and str(auto.render()) == "x" * 60


def test_same_content_compares_what_is_drawn() -> None:
    assert same_content("a", "a") and not same_content("a", "b")
    assert same_content(Text("1%", style="red"), Text("1%", style="red"))
    assert not same_content(Text("1%", style="red"), Text("1%"))  # Text == would say equal
    assert not same_content(Text("a"), "a")
