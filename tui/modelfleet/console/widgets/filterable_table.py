"""A DataTable with a ``/`` filter line above it; keeps every row and shows the ones that match.

Rows are :class:`Row` (a key and cells); a row with ``header=True`` is a group heading, shown when at least one
row of its group matches. Messages up: :class:`FilterableTable.Selected` (Enter) and
:class:`FilterableTable.Highlighted` (cursor moved), both carrying the row key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input
from textual.widgets.data_table import CellKey, ColumnKey, RowKey

Cell = str | Text
MAX_SHOWN = 250  # rows put in the DataTable at once; the rest are reached with the / filter
BATCH = 60  # rows added per loop turn when the table is rebuilt (a screenful first)
MORE_KEY = "\0more"  # the "… N more rows" line


def same_cell(a: Cell, b: Cell) -> bool:
    """Whether two cells draw the same. Rich's ``Text ==`` compares only the characters and spans, not the
    text's own style: ``Text("1.5%", style="bold red")`` equals ``Text("1.5%")``, so a cell turning red would
    never be updated or redrawn."""
    if a is b:
        return True
    if isinstance(a, Text) and isinstance(b, Text):
        return (a.plain == b.plain and a.style == b.style and a.spans == b.spans and a.justify == b.justify
                and a.overflow == b.overflow and a.no_wrap == b.no_wrap)
    return type(a) is type(b) and a == b


class MeasuredTable(DataTable[Cell]):
    """A DataTable that redraws a cell when its column widens, and only the cells that changed after an update.

    DataTable (Textual 8.2, pinned) keys its cell cache with a table-wide update counter and without the column
    width. So (1) cells drawn before an idle-time measurement widened an auto-width column stayed truncated until
    something restyled the table, and (2) one ``update_cell`` re-rendered every visible cell (~0.1 ms each through
    Rich: 600 cells, a 60 ms freeze, on every 200-node fleet refresh). Both are fixed here by wrapping private
    DataTable methods (recheck on a Textual upgrade; tests/console/test_filterable_table.py fails when this stops
    working): a width change restyles the table, and drawn cells are kept per cell, keyed by what they show.
    """

    _drawn_widths: tuple[int, ...] = ()
    KEPT_CELLS_MAX = 50_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._kept_cells: dict[tuple[RowKey, ColumnKey], tuple[tuple[object, ...], Cell, Any]] = {}
        super().__init__(*args, **kwargs)  # (which clears the caches)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> Any:
        if row_index < 0 or column_index < 0:  # the header row and row labels: DataTable's own cache
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key, column_key = self._row_locations.get_key(row_index), self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell_key = (row_key, column_key)
        value = self._data[row_key][column_key]
        drawn_as = (row_index, base_style, width, cursor, hover, self._show_hover_cursor, self._pseudo_class_state)
        kept = self._kept_cells.get(cell_key)
        if kept is not None and kept[0] == drawn_as and same_cell(kept[1], value):
            return kept[2]
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if len(self._kept_cells) >= self.KEPT_CELLS_MAX:
            self._kept_cells.clear()
        self._kept_cells[cell_key] = (drawn_as, value, lines)
        return lines

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._kept_cells.clear()

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        super()._update_dimensions(new_rows)
        self._restyle_if_widened()

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        super()._update_column_widths(updated_cells)
        self._restyle_if_widened()

    def _restyle_if_widened(self) -> None:
        widths = tuple(c.get_render_width(self) for c in self.ordered_columns)
        if widths != self._drawn_widths:
            if self._drawn_widths:  # on the first, _update_dimensions bumps the cache key itself
                self.notify_style_update()
                self.refresh()
            self._drawn_widths = widths


def _more_text(hidden: int) -> Text:
    return Text(f"… {hidden} more rows: narrow them with /", style="dim italic")


@dataclass(frozen=True)
class Row:
    key: str
    cells: tuple[Cell, ...]
    header: bool = False  # a group heading row
    group: str | None = None  # the heading key this row belongs to

    def text(self) -> str:
        return " ".join(c.plain if isinstance(c, Text) else str(c) for c in self.cells).lower()

    def draws_like(self, other: Row) -> bool:
        return (self.key == other.key and self.header == other.header and self.group == other.group
                and len(self.cells) == len(other.cells)
                and all(same_cell(a, b) for a, b in zip(self.cells, other.cells, strict=True)))


def matches(row: Row, needle: str) -> bool:
    """Every whitespace-separated word must occur in the row (``!word``: must not occur)."""
    hay = row.text()
    for word in needle.lower().split():
        if word.startswith("!") and len(word) > 1:
            if word[1:] in hay:
                return False
        elif word not in hay:
            return False
    return True


class FilterInput(Input):
    BINDINGS = [Binding("escape", "close", "close filter", show=False)]

    def action_close(self) -> None:
        parent = self.parent
        if isinstance(parent, FilterableTable):
            parent.close_filter(clear=not self.value)


class FilterableTable(Vertical):
    """Table + filter. ``set_rows`` replaces the data; the filter and the cursor (by key) survive."""

    DEFAULT_CSS = """
    FilterableTable { height: 1fr; }
    FilterableTable > FilterInput { display: none; height: 3; }
    FilterableTable.-filtering > FilterInput { display: block; }
    FilterableTable > DataTable { height: 1fr; }
    """

    class Selected(Message):
        def __init__(self, table: FilterableTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> FilterableTable:
            return self.table

    class Highlighted(Message):
        def __init__(self, table: FilterableTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> FilterableTable:
            return self.table

    def __init__(self, columns: Sequence[str | tuple[str, int]], *, id: str | None = None, classes: str | None = None,
                 placeholder: str = "filter (words must all match; !word excludes; Esc closes)") -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.placeholder = placeholder
        self.rows: list[Row] = []
        self.filter_text = ""
        self.shown: list[str] = []
        self._cells: list[tuple[Cell, ...]] = []
        self._more = False
        self._filling: object | None = None  # the fill in progress (see _fill)

    def compose(self) -> ComposeResult:
        box = FilterInput(placeholder=self.placeholder)
        box.can_focus = False  # focusable only while open
        yield box
        table = MeasuredTable(cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        # Fixed widths (label, width) spare DataTable from measuring every cell of every row (1,000 rows).
        for i, col in enumerate(self.columns):
            if isinstance(col, tuple):
                self.table.add_column(col[0], width=col[1], key=str(i))
            else:
                self.table.add_column(col, key=str(i))

    @property
    def table(self) -> DataTable[Cell]:
        return self.query_one(DataTable)

    @property
    def input(self) -> FilterInput:
        return self.query_one(FilterInput)

    # -- data ----------------------------------------------------------------------------------------------
    def set_rows(self, rows: Sequence[Row]) -> None:
        rows = list(rows)
        if self.shown and len(rows) == len(self.rows) and all(
                a.draws_like(b) for a, b in zip(rows, self.rows, strict=True)):
            return  # nothing changed: keep the table (and the loop) idle
        self.rows = rows
        self._apply()

    def visible_rows(self) -> list[Row]:
        needle = self.filter_text.strip()
        if not needle:
            return list(self.rows)
        keep: list[Row] = [r for r in self.rows if not r.header and matches(r, needle)]
        groups = {r.group for r in keep}
        return [r for r in self.rows if (r.header and r.key in groups) or (not r.header and r in keep)]

    def _apply(self) -> None:
        table = self.table
        current = self.cursor_key
        visible = self.visible_rows()
        hidden = max(0, len(visible) - MAX_SHOWN)
        visible = visible[:MAX_SHOWN]
        keys = [r.key for r in visible]
        if (keys == self.shown and keys and len(keys) == len(self._cells) and bool(hidden) == self._more
                and self._filling is None):
            # the same rows in the same order (a refresh): update only the cells that changed, in place
            for row, old in zip(visible, self._cells, strict=True):
                for i, (new_cell, old_cell) in enumerate(zip(row.cells, old, strict=False)):
                    if not same_cell(new_cell, old_cell):
                        table.update_cell(row.key, str(i), new_cell)
            self._cells = [r.cells for r in visible]
            if hidden:
                table.update_cell(MORE_KEY, "0", _more_text(hidden))
            return
        table.clear()
        self.shown = keys
        self._cells = [r.cells for r in visible]
        self._more = bool(hidden)
        if current in self.shown:
            cursor: int | None = self.shown.index(current)
        elif visible and visible[0].header and len(visible) > 1:
            cursor = 1
        else:
            cursor = None
        self._filling = object()
        self._fill(self._filling, visible, 0, hidden, cursor)

    def _fill(self, fill: object, visible: list[Row], start: int, hidden: int, cursor: int | None) -> None:
        """Add rows ``BATCH`` at a time, one batch per loop turn (a 250-row table at once, with DataTable measuring
        every cell, held the event loop ~90 ms); a newer ``_apply`` supersedes an unfinished fill."""
        if fill is not self._filling:
            return
        table = self.table
        end = min(len(visible), start + BATCH)
        for r in visible[start:end]:
            table.add_row(*r.cells, key=r.key)
        if cursor is not None and start <= cursor < end:
            table.move_cursor(row=cursor, animate=False)
        if end < len(visible):
            self.set_timer(0.001, partial(self._fill, fill, visible, end, hidden, cursor))
            return
        if hidden:
            table.add_row(_more_text(hidden), *([""] * (len(self.columns) - 1)), key=MORE_KEY)
        self._filling = None

    @property
    def cursor_key(self) -> str | None:
        table = self.table
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]

    def select_key(self, key: str) -> None:
        if key in self.shown:
            self.table.move_cursor(row=self.shown.index(key), animate=False)

    # -- filter --------------------------------------------------------------------------------------------
    def open_filter(self) -> None:
        self.add_class("-filtering")
        self.input.can_focus = True
        self.input.focus()

    def close_filter(self, *, clear: bool = False) -> None:
        if clear:
            self.input.value = ""
            self.filter_text = ""
            self._apply()
        self.remove_class("-filtering")
        self.input.can_focus = bool(self.filter_text)
        self.table.focus()

    @property
    def filtering(self) -> bool:
        return self.has_class("-filtering") or bool(self.filter_text)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value
        self._apply()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.remove_class("-filtering")
            self.input.can_focus = False
        self.table.focus()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.shown):
            self.post_message(self.Selected(self, self.shown[event.cursor_row]))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.shown):
            self.post_message(self.Highlighted(self, self.shown[event.cursor_row]))
