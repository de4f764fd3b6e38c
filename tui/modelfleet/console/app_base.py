"""What the app's parts (``infra_actions.py``, ``approval_actions.py``) use of ModelfleetApp, declared for the type
checker only: :class:`~modelfleet.console.app.ModelfleetApp` (``app.py``) defines each and mixes the parts in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import App

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.console.messages import ConsoleState
    from modelfleet.console.services import ConsoleServices
    from modelfleet.runners.requests import PreparedRun


class AppBase(App[None]):
    services: ConsoleServices
    state: ConsoleState
    read_only: bool

    if TYPE_CHECKING:  # pragma: no cover

        def _call(self, kind: str, fn: Callable[[], Any], key: str | None = None) -> None: ...

        def _launch(self, prepared: PreparedRun) -> None: ...
