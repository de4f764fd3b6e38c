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

    Focus starts on Cancel, so no single key ever confirms. ``typed_prompt`` replaces the fleet-wide wording of the
    typed word's prompt; ``reason`` adds a text box with that label (``reason_required``: no confirming while it is
    empty), whose text is :attr:`reason_text` once dismissed; ``confirm_label=None`` shows no confirm button at all
    (a refusal that only explains)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, body: str, *, typed: str | None = None, confirm_label: str | None = "Run",
                 dismiss_label: str = "Cancel", typed_prompt: str | None = None, reason: str | None = None,
                 reason_required: bool = False) -> None:
        super().__init__()
        self.dismiss_label = dismiss_label
        self.title_text = title
        self.body = body
        self.typed = typed
        self.confirm_label = confirm_label
        self.typed_prompt = typed_prompt
        self.reason = reason
        self.reason_required = reason_required
        self.reason_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            # plain text: commands, JSON and people's reasons may hold [brackets]
            yield Static(self.title_text, classes="title", markup=False)
            yield Static(self.body, id="confirm-body", markup=False)
            if self.reason is not None:
                yield Static(self.reason, markup=False)
                yield Input(id="confirm-reason")
            if self.typed is not None and self.confirm_label is not None:
                yield Static(self.typed_prompt or f"This is fleet-wide. Type [b]{self.typed}[/b] to confirm:")
                yield Input(placeholder=self.typed, id="confirm-typed")
            with Horizontal(classes="buttons"):
                yield Button(self.dismiss_label, id="cancel", variant="primary")
                if self.confirm_label is not None:
                    yield Button(self.confirm_label, id="confirm", variant="error", disabled=not self._confirmable())

    def on_mount(self) -> None:
        first = "#confirm-reason" if self.reason is not None else "#confirm-typed"
        if self.query(first):
            self.query_one(first, Input).focus()
        else:
            self.query_one("#cancel", Button).focus()

    def _value(self, selector: str) -> str:
        found = self.query(selector)
        return found.first(Input).value.strip() if found else ""

    def _confirmable(self) -> bool:
        if self.confirm_label is None:
            return False
        if self.typed is not None and self._value("#confirm-typed") != self.typed:
            return False
        return not (self.reason_required and not self._value("#confirm-reason"))

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        if self.query("#confirm"):
            self.query_one("#confirm", Button).disabled = not self._confirmable()

    @on(Input.Submitted, "#confirm-typed")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        if self._confirmable():  # the typed word is the confirmation
            self._accept()

    @on(Input.Submitted, "#confirm-reason")
    def _next(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if self._confirmable():
            self._accept()

    def _accept(self) -> None:
        self.reason_text = self._value("#confirm-reason")
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)
