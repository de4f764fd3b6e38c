"""The ``:`` command line (k9s style): ``:fleet``, ``:models``, ``:runs``, ``:ledger``, ``:help``, ``:q``."""

from __future__ import annotations

from collections.abc import Sequence

from textual.binding import Binding
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Input


class CommandBar(Input):
    """Hidden until ``:``; Enter posts :class:`CommandBar.Command`, Esc hides it."""

    DEFAULT_CSS = """
    CommandBar { dock: bottom; display: none; height: 3; }
    CommandBar.-open { display: block; }
    """
    BINDINGS = [Binding("escape", "close", "close", show=False)]

    class Command(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, commands: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(placeholder=":command  (models, fleet, runs, ledger, help, deploy, health, q)",
                         suggester=SuggestFromList(list(commands), case_sensitive=False), id=id)
        self.can_focus = False  # only while open: never a target of auto focus or Tab
        self._before: Widget | None = None

    def open(self) -> None:
        focused = self.screen.focused
        self._before = focused if focused is not self else self._before
        self.value = ""
        self.can_focus = True
        self.add_class("-open")
        self.focus()

    def _hide(self) -> None:
        self.remove_class("-open")
        self.value = ""
        self.can_focus = False
        before, self._before = self._before, None
        if before is not None and before.is_attached and before.focusable:
            before.focus()  # back to where the user was, never to the next focusable box

    def action_close(self) -> None:
        self._hide()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip().lstrip(":")
        self._hide()
        self.post_message(self.Command(text))
