"""The bottom key bar: the screen's shown bindings on one line, each key clickable.

Textual's ``Footer`` recomposes one widget per key (and restyles each) on every bindings change: every view switch
and focus move. That was half of a view switch's time at 15 keys. ``KeyBar`` is a single ``Static`` whose content
is rebuilt only when the shown keys (key, label, enabled) actually differ from what it draws.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.cells import cell_len
from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

KeySpec = tuple[str, str, str, bool]  # key, key display, description, enabled
VIEW_GROUP = ""  # the key of the one entry that stands for every view key (``1-5 views``): not clickable
VIEWS_MARK: KeySpec = (VIEW_GROUP, "", "", True)


def _key_range(keys: list[str]) -> str:
    """``1-5`` for consecutive digits, else the keys joined by ``/`` (``m/f2/3``)."""
    if len(keys) > 2 and all(k.isdigit() and len(k) == 1 for k in keys) and \
            [int(k) for k in keys] == list(range(int(keys[0]), int(keys[0]) + len(keys))):
        return f"{keys[0]}-{keys[-1]}"
    return "/".join(keys)


class KeyBar(Static):
    """One line docked at the bottom: `` : :cmd  1-5 views  / filter …``; a click on a key presses it. The views'
    keys are one entry (their names are in the header, the help and the palette), so that views can be added
    without pushing actions off the line. Keys of disabled actions are not shown, nor those
    ``advertise(binding)`` turns down (read-only mode, ``q`` off a view's root)."""

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

    def __init__(self, advertise: Callable[[Binding], bool] | None = None) -> None:
        super().__init__("", markup=False)
        self.advertise = advertise
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
        views: list[str] = []  # the view keys, drawn as one entry where the first one was
        for _node, binding, enabled, _tooltip in shown:
            if binding.action in seen or not enabled or (self.advertise and not self.advertise(binding)):
                continue
            seen.add(binding.action)
            if binding.action.startswith("view("):
                if not views:
                    keys.append(VIEWS_MARK)
                views.append(self.app.get_key_display(binding))
                continue
            keys.append((binding.key, self.app.get_key_display(binding), binding.description, enabled))
        return tuple((VIEW_GROUP, _key_range(views), "views", True) if k is VIEWS_MARK else k for k in keys)

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
            if enabled and key != VIEW_GROUP:
                self._spans.append((x, x + width, key))
            x += width
        self.update(Content.assemble(*parts))
