"""Confirmation for actions that change nodes: the exact commands, and for fleet-wide actions a typed word."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses True only on an explicit "Run" press; with ``typed``, only once that word is typed exactly.

    Focus starts on Cancel, so no single key ever confirms.
    """

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, body: str, *, typed: str | None = None, confirm_label: str = "Run",
                 dismiss_label: str = "Cancel") -> None:
        super().__init__()
        self.dismiss_label = dismiss_label
        self.title_text = title
        self.body = body
        self.typed = typed
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.title_text, classes="title")
            yield Static(self.body, id="confirm-body")
            if self.typed is not None:
                yield Static(f"This is fleet-wide. Type [b]{self.typed}[/b] to confirm:")
                yield Input(placeholder=self.typed, id="confirm-typed")
            with Horizontal(classes="buttons"):
                yield Button(self.dismiss_label, id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="error", disabled=self.typed is not None)

    def on_mount(self) -> None:
        if self.typed is not None:
            self.query_one("#confirm-typed", Input).focus()
        else:
            self.query_one("#cancel", Button).focus()

    @on(Input.Changed, "#confirm-typed")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value.strip() != self.typed

    @on(Input.Submitted, "#confirm-typed")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip() == self.typed:  # the typed word is the confirmation
            self.dismiss(True)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if self.typed is None or self.query_one("#confirm-typed", Input).value.strip() == self.typed:
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)
