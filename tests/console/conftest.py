"""Console test helpers: an app on fixed data and a way to wait until every worker has posted its result."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from modelfleet.console.app import ModelfleetApp
from tests.console.fakes import FakeServices

SIZE = (160, 48)


def make_app(**kw: Any) -> ModelfleetApp:
    services = kw.pop("services", None) or FakeServices()
    kw.setdefault("refresh_s", 0)
    return ModelfleetApp(services=services, **kw)


async def settle(pilot: Pilot[Any], rounds: int = 3) -> None:
    """Let workers finish and their messages be handled (a few rounds: results can trigger more loads)."""
    for _ in range(rounds):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def until(pilot: Pilot[Any], cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Pause until ``cond()`` is true (workers and runs in threads post their results meanwhile)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await pilot.pause(0.05)


def screen_text(app: ModelfleetApp) -> str:
    """Everything visible on the current screen, as plain text."""
    from textual.widgets import DataTable, Static

    parts: list[str] = []
    for w in app.screen.query("*"):
        if isinstance(w, Static):
            parts.append(str(w.render()))
        elif isinstance(w, DataTable):
            for row_key in w.rows:
                parts.append(" ".join(str(c) for c in w.get_row(row_key)))
    return "\n".join(parts)


import pytest  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests are async: run them with anyio's pytest plugin on asyncio (no pytest-asyncio needed)."""
    return "asyncio"
