"""A view switch shows the new view as soon as it has handled its resume (not after Textual's fixed 50 ms hold),
never before, and a view that never reports still shows after the hold."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from modelfleet.console.app import ModelfleetApp
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.screens.fleet import FleetScreen
from modelfleet.console.screens.ledger import LedgerScreen
from modelfleet.console.screens.runs import RunsScreen
from tests.console.conftest import SIZE, make_app, settle

pytestmark = pytest.mark.anyio


def _record_frames(app: ModelfleetApp, resumes: Counter[Any]) -> list[tuple[Any, int]]:
    """Frames that reach the terminal (none while frames are held), with how often their screen had resumed."""
    shown: list[tuple[Any, int]] = []
    display = app._display

    def recording(screen: Any, renderable: Any) -> None:
        if renderable is not None and not app._batch_count:
            shown.append((screen, resumes[screen]))
        display(screen, renderable)

    app._display = recording  # type: ignore[method-assign]
    return shown


@pytest.fixture
def resumes(monkeypatch: pytest.MonkeyPatch) -> Counter[Any]:
    """How often each view has handled a resume."""
    counts: Counter[Any] = Counter()
    resume = ViewScreen.on_screen_resume

    def counting(self: ViewScreen, event: Any) -> None:
        resume(self, event)
        counts[self] += 1

    monkeypatch.setattr(ViewScreen, "on_screen_resume", counting)
    return counts


async def test_a_switch_is_shown_once_the_view_has_resumed_and_never_before(monkeypatch: pytest.MonkeyPatch,
                                                                            resumes: Counter[Any]) -> None:
    monkeypatch.setattr(ModelfleetApp, "SWITCH_HOLD_MAX_S", 60.0)  # only the view's resume can release the frames
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = _record_frames(app, resumes)
        for key, view in (("4", LedgerScreen), ("2", FleetScreen), ("3", RunsScreen), ("4", LedgerScreen)):
            before = len(shown)
            await pilot.press(key)
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, view) and app._batch_count == 0, (key, app._batch_count)
            frames = [n for s, n in shown[before:] if s is screen]
            assert frames, f"no frame of {view.__name__} after pressing {key}"
            assert min(frames) == resumes[screen], "a frame of the new view went out before it had resumed"


async def test_a_view_that_never_reports_is_shown_after_the_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ModelfleetApp, "SWITCH_HOLD_MAX_S", 0.05)
    monkeypatch.setattr(ModelfleetApp, "view_ready", lambda self, screen: None)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = _record_frames(app, Counter())
        await pilot.press("4")
        await pilot.pause(0.2)
        await settle(pilot)
        assert isinstance(app.screen, LedgerScreen) and app._batch_count == 0
        assert any(s is app.screen for s, _ in shown)


async def test_views_are_composed_hidden_after_start_and_a_first_visit_uses_them(
        monkeypatch: pytest.MonkeyPatch, resumes: Counter[Any]) -> None:
    from tests.console.conftest import screen_text

    monkeypatch.setattr(ModelfleetApp, "PREPARE_VIEWS_AFTER_S", 0.02)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.3)
        await settle(pilot)
        prepared = {mode: app._screen_stacks.get(mode, []) for mode in app.MODES}
        assert all(len(stack) == 1 for stack in prepared.values()), prepared
        ledger = prepared["ledger"][0]
        assert isinstance(ledger, LedgerScreen) and ledger.is_mounted and resumes[ledger] == 0
        assert ledger.query("FilterableTable")  # composed, never shown
        await pilot.press("4")
        await settle(pilot)
        assert app.screen is ledger and resumes[ledger] == 1
        assert "node_deploy" in screen_text(app)  # its data loaded on the visit, as for one composed on the key press


async def test_no_view_is_composed_once_the_app_is_shutting_down() -> None:
    """Textual closes every mode's stack as it shuts down; a view composed then (the timer of
    _prepare_next_view, firing while it awaits) broke that loop ('dictionary changed size during iteration')."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        modes = set(app._screen_stacks)
        assert modes != set(app.MODES)  # views are still waiting to be composed
        app._running = False  # what App._shutdown sets first
        try:
            app._prepare_next_view()
            assert set(app._screen_stacks) == modes
        finally:
            app._running = True
