"""The base of every view: context header with breadcrumbs, the view's body, the ``:`` command bar, key bar."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip

from modelfleet.console.keys import COMMAND_WORDS, VIEW_KEYMAP, VIEW_KEYS
from modelfleet.console.widgets.command_bar import CommandBar
from modelfleet.console.widgets.filterable_table import MORE_KEY, FilterableTable
from modelfleet.console.widgets.header import ContextHeader
from modelfleet.console.widgets.key_bar import KeyBar
from modelfleet.console.widgets.tiled import tiled_lines

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.console.app import ModelfleetApp
    from modelfleet.console.messages import ConsoleState


def view_bindings(view: str) -> list[BindingType]:
    """The own keys of ``view`` (``keys.VIEW_KEYS``), remapped by ``[console.keys]`` like the app's."""
    return [Binding(VIEW_KEYMAP[bid][0], VIEW_KEYMAP[bid][1], VIEW_KEYMAP[bid][2], show=VIEW_KEYMAP[bid][3], id=bid)
            for bid in VIEW_KEYS[view]]


class ViewScreen(Screen[None]):
    """Subclasses set ``crumb`` and ``kinds`` (state kinds they show) and implement ``body`` and ``refresh_view``;
    ``reload`` (``r``) asks the app for their data again. ``follows_ledger``: reloaded whenever the ledger grows
    while shown. Optional actions the key bar and palette offer only where a screen has them: ``action_logs``,
    ``action_shell``, ``action_cancel_run``, ``action_verify``."""

    crumb = ""
    kinds: tuple[str, ...] = ()
    follows_ledger = False

    def __init__(self) -> None:
        super().__init__()
        self._dirty = True
        self._changed_kinds: set[str] = set()
        self._css_seen: int | None = None
        # A new view is styled as it mounts, with the stylesheet as it is now. Textual compares this private
        # counter on a mode's first switch and, for a new screen, re-applies every CSS rule to the whole app
        # (App.refresh_css: ~25 ms, the slowest part of each view's first visit) for nothing.
        with contextlib.suppress(RuntimeError):  # no running app (a screen built outside one): Textual's default
            self._css_update_count = self.app._css_update_count
            self._css_seen = self._css_update_count  # (what its widgets are styled with as they mount)

    @property
    def mf(self) -> ModelfleetApp:
        return cast("ModelfleetApp", self.app)

    @property
    def state(self) -> ConsoleState:
        return self.mf.state

    def compose(self) -> ComposeResult:
        yield ContextHeader()
        yield from self.body()
        yield CommandBar(COMMAND_WORDS)
        yield KeyBar(advertise=self.mf.advertised)

    def body(self) -> ComposeResult:
        yield from ()

    def render_lines(self, crop: Region) -> list[Strip]:
        # The views' parts tile the screen: its own background is drawn only where they leave a gap (widgets/tiled)
        lines = tiled_lines(self, crop)
        return super().render_lines(crop) if lines is None else lines

    def on_mount(self) -> None:
        self.mf.register_screen(self)
        for table in self.query(FilterableTable):  # the order the user chose last time on this view
            table.set_sort(self.state.sorts.get(self._sort_key(table)))
        self.update_header()

    def _sort_key(self, table: FilterableTable) -> str:
        return f"{type(self).__name__}#{table.id}"

    @on(FilterableTable.Sorted)
    def _sorted(self, event: FilterableTable.Sorted) -> None:
        self.state.sorts[self._sort_key(event.table)] = event.sort

    def on_unmount(self) -> None:
        self.mf.unregister_screen(self)

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        # Switching views must be cheap (< 100 ms): Textual re-applies every CSS rule to every widget of a resumed
        # screen, which also throws away each DataTable's render cache (hundreds of ms for a full table). Styles
        # only need that when the stylesheet changed (theme, CSS reload) while the screen was hidden, or since its
        # widgets were styled as they mounted (a view's first visit: ~12 ms of restyling 40 widgets for nothing).
        # Focus changes restyle the widgets they touch themselves. This runs before Screen._on_screen_resume
        # (handlers follow the MRO; one handler per class, so no _on_ here).
        css_count = getattr(self.app, "_css_update_count", None)
        if css_count is not None and css_count == self._css_seen:
            event.refresh_styles = False
        self._css_seen = css_count
        self.update_header()
        if self._dirty:
            self._dirty = False
            self._changed_kinds.clear()
            self.refresh_view()
        elif self._changed_kinds:
            kinds, self._changed_kinds = self._changed_kinds, set()
            self.refresh_changed(kinds)
        self.on_view_shown()
        self.mf.view_ready(self)

    def on_view_shown(self) -> None:
        """Hook: the view became active (e.g. ask the app to load data)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A view's own keys (``keys.VIEW_KEYMAP``) all change something: shown disabled in read-only mode."""
        if self.mf.read_only and action in {spec[1] for spec in VIEW_KEYMAP.values()}:
            return None
        return True

    def update_header(self, status: str | None = None) -> None:
        self.query_one(ContextHeader).show(crumbs=self.mf.crumbs(self), context=self.state.context,
                                           read_only=self.mf.read_only, status=status, views=self.mf.view_tabs())

    def data_changed(self, kind: str) -> None:
        """The app stored new ``kind`` data; redraw now if shown, else on the next resume."""
        if kind not in self.kinds:
            return
        if self.is_current:
            self.refresh_changed({kind})
        else:
            self._changed_kinds.add(kind)

    def refresh_view(self) -> None:
        """Redraw from ``self.state``."""

    def refresh_changed(self, kinds: set[str]) -> None:
        """Redraw what shows ``kinds`` (the state kinds that changed); views whose parts depend on different
        kinds override this to redraw only those parts (a 1,000-row table is not rebuilt for a detail pane)."""
        self.refresh_view()

    # -- actions shared by every view ------------------------------------------------------------------------
    def focused_table(self) -> FilterableTable | None:
        focused = self.focused
        if focused is not None:
            for node in focused.ancestors_with_self:
                if isinstance(node, FilterableTable):
                    return node
        tables = list(self.query(FilterableTable))
        return tables[0] if tables else None

    def action_filter(self) -> None:
        table = self.focused_table()
        if table is not None:
            table.open_filter()

    def action_command(self) -> None:
        self.query_one(CommandBar).open()

    def on_command_bar_command(self, event: CommandBar.Command) -> None:
        self.mf.run_command(event.text)

    def go_back(self) -> bool:
        """Esc: close a filter first, else pop this screen if it was drilled into. True when handled."""
        for table in self.query(FilterableTable):
            if table.filtering:
                table.close_filter(clear=True)
                return True
        return False

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        """Defaults for the run form opened from this view: ``row`` when opened with a key on the row under the
        cursor (``d``, ``h``), False from the command line (``:deploy``), which must not pick up the row."""
        return {}

    def reload(self) -> None:
        """``r``: ask the app for this view's data again."""
        self.mf.refresh_fleet()

    def ledger_moved(self, head: int) -> None:
        """The ledger's last sequence number is ``head`` (polled while this view is shown): reload if it grew."""
        if self.follows_ledger and head != self.ledger_seq:
            self.ledger_seq = head
            self.reload()

    ledger_seq: int | None = None

    def copy_value(self) -> str | None:
        """What ``y`` copies: the key of the row under the cursor (a node, a run id, a model)."""
        table = self.focused_table()
        key = table.cursor_key if table is not None else None
        if key is None or key == MORE_KEY or key.startswith("group:"):
            return None
        return key

    def action_copy(self) -> None:
        self.mf.copy(self.copy_value())
