"""The bottom key bar: the screen's shown bindings on one line, each key clickable.

Textual's ``Footer`` recomposes one widget per key (and restyles each) on every bindings change: every view switch
and focus move. That was half of a view switch's time at 15 keys. ``KeyBar`` is a single ``Static`` whose content
is rebuilt only when the shown keys (key, label, enabled) actually differ from what it draws.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

KeySpec = tuple[str, str, str, bool]  # key, key display, description, enabled


class KeyBar(Static):
    """One line docked at the bottom: `` ^q quit  1 models  2 fleet …``; disabled keys are dimmed, a click on a
    key presses it."""

    ALLOW_SELECT = False
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        color: $footer-foreground;
        background: $footer-background;
    }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False)
        self.keys: tuple[KeySpec, ...] = ()
        self._spans: list[tuple[int, int, str]] = []  # cells [start, end) -> the key they press

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self.show_keys(self.shown_keys(screen))

    def shown_keys(self, screen: Screen[object]) -> tuple[KeySpec, ...]:
        """The screen's active bindings with ``show=True``, one per action (its first key), in binding order; the
        command palette's key last, as in Textual's Footer."""
        active = screen.active_bindings
        palette = active.get(self.app.COMMAND_PALETTE_BINDING) if self.app.ENABLE_COMMAND_PALETTE else None
        shown = [b for b in active.values() if b.binding.show and b is not palette] + ([palette] if palette else [])
        seen: set[str] = set()
        keys: list[KeySpec] = []
        for _node, binding, enabled, _tooltip in shown:
            if binding.action in seen:
                continue
            seen.add(binding.action)
            keys.append((binding.key, self.app.get_key_display(binding), binding.description, enabled))
        return tuple(keys)

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                event.stop()
                self.app.simulate_key(key)
                return

    def show_keys(self, keys: tuple[KeySpec, ...]) -> None:
        if keys == self.keys:
            return
        self.keys = keys
        parts: list[tuple[str, str]] = []
        self._spans = []
        x = 0
        for key, display, description, enabled in keys:
            dim = "" if enabled else " dim"
            label, text = f" {display} ", f"{description} "
            parts += [(label, "bold $footer-key-foreground" + dim), (text, "$footer-description-foreground" + dim)]
            width = cell_len(label) + cell_len(text)
            if enabled:
                self._spans.append((x, x + width, key))
            x += width
        self.update(Content.assemble(*parts))
