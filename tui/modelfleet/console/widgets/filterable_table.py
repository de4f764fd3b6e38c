"""A DataTable with a ``/`` filter line above it; keeps every row and shows the ones that match.

Rows are :class:`Row` (a key and cells); a row with ``header=True`` is a group heading, shown when at least one
row of its group matches. Messages up: :class:`FilterableTable.Selected` (Enter) and
:class:`FilterableTable.Highlighted` (cursor moved), both carrying the row key, and :class:`FilterableTable.Sorted`.

Sorting (k9s): Shift+letter sorts by the column whose underlined letter it is (each column gets the first letter of
its name that no column before it took); the same key again reverses. Rows of a group stay in their group. Numbers
sort as numbers (``12.5``, ``120!``, ``3.2%``, ``182MiB``, ``5m ago``), ``-`` and blanks last.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import NULL_STYLE, Style
from rich.text import DEFAULT_JUSTIFY, DEFAULT_OVERFLOW, Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable, Input
from textual.widgets.data_table import CellDoesNotExist, CellKey, Column, ColumnKey, RowKey

from modelfleet.console.widgets.quiet_update import same_content
from modelfleet.console.widgets.tiled import TiledVertical

Cell = str | Text
MAX_SHOWN = 250  # rows put in the DataTable at once; the rest are reached with the / filter
BATCH = 60  # rows added per loop turn when the table is rebuilt (a screenful first)
MORE_KEY = "\0more"  # the "… N more rows" line


class MeasuredTable(DataTable[Cell]):
    """A DataTable that redraws a cell when its column widens, only the cells that changed after an update, and
    draws a one-line cell without Rich's generic layout.

    DataTable (Textual 8.2, pinned) keys its cell cache with a table-wide update counter and without the column
    width. So (1) cells drawn before an idle-time measurement widened an auto-width column stayed truncated until
    something restyled the table, and (2) one ``update_cell`` re-rendered every visible cell (~0.1 ms each through
    Rich: 600 cells, a 60 ms freeze, on every 200-node fleet refresh). Both are fixed here by wrapping private
    DataTable methods (recheck on a Textual upgrade; tests/console/test_filterable_table.py fails when this stops
    working): a width change restyles the table, and drawn cells are kept per cell, keyed by what they show.
    (3) A cell that is drawn (a table's first screenful: ~45 rows x 15 columns) goes through ``_draw_cell``: the
    same segments as DataTable's, a third of the time (see there).
    """

    _drawn_widths: tuple[int, ...] = ()
    KEPT_CELLS_MAX = 50_000
    FRAME_BUDGET_S = 0.006  # drawing rows anew, per frame (then the rest on the next frames)
    DATATABLE_CACHE_MAX = 64
    _frame: dict[object, Any] | None = None  # what does not change within one frame (see render_lines)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._kept_cells: dict[tuple[RowKey, ColumnKey], tuple[tuple[object, ...], Cell, Any]] = {}
        self._kept_rows: dict[tuple[RowKey, int], tuple[tuple[object, ...], tuple[object, ...], Any]] = {}
        self._kept_lines: dict[tuple[RowKey, int], tuple[object, tuple[object, ...], Strip]] = {}
        super().__init__(*args, **kwargs)  # (which clears the caches)
        # DataTable's own caches are keyed by its update counter: with the ones above they are only written, never
        # read again, and at their sizes (1,000 lines and rows, 10,000 cells per table) they kept tens of
        # thousands of stale objects alive for the garbage collector to scan (console/idle_gc.py).
        for cache in (self._row_render_cache, self._line_cache, self._row_renderable_cache):
            cache.maxsize = self.DATATABLE_CACHE_MAX
        self._cell_render_cache.maxsize = self.DATATABLE_CACHE_MAX * 4

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> Any:
        if column_index < 0 or row_index < -1:  # row labels: DataTable's own cache
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        column_key = self._column_locations.get_key(column_index)
        row_key = self._header_row_key if row_index == -1 else self._row_locations.get_key(row_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell_key = (row_key, column_key)
        value: Cell = self.columns[column_key].label if row_index == -1 else self._data[row_key][column_key]
        drawn_as = (row_index, base_style, width, cursor, hover, self._show_hover_cursor, self._pseudo_class_state)
        kept = self._kept_cells.get(cell_key)
        if kept is not None and kept[0] == drawn_as and same_content(kept[1], value):
            return kept[2]
        lines = self._draw_cell(row_index, column_index, row_key, base_style, width, cursor, hover)
        if len(self._kept_cells) >= self.KEPT_CELLS_MAX:
            self._kept_cells.clear()
        self._kept_cells[cell_key] = (drawn_as, value, lines)
        return lines

    def _draw_cell(self, row_index: int, column_index: int, row_key: RowKey, base_style: Style, width: int,
                   cursor: bool, hover: bool) -> Any:
        """DataTable._render_cell for a body cell one line high whose content is a ``Text`` (every cell here: the
        formatter turns strings into Text), without the generic layout it goes through: ``Styled(Padding(cell))``
        rendered by ``Console.render_lines`` twice over, with a ``ConsoleOptions`` copy at each level, ~70% of the
        time of a table's first draw. The steps are Rich's own (``Text.wrap`` with the options DataTable passes,
        ``Text.render``, ``Segment.adjust_line_length``, ``Segment.apply_style``), so the segments are the same
        (tests/console/test_filterable_table.py compares them with DataTable's for cells of every kind); anything
        else (a taller row, a cell narrower than its padding, a renderable that is not Text) is DataTable's."""
        row = self.rows.get(row_key)
        pad = self.cell_padding
        inner = width - 2 * pad
        if row is None or row.height != 1 or inner < 1:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell = self._get_row_renderables(row_index).cells[column_index]
        if not isinstance(cell, Text):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        console = self.app.console
        plain = cell.plain
        style = console.get_style(cell.style, default=NULL_STYLE) if cell.style else None
        segments: list[Segment]
        if (not cell.spans and cell.justify in (None, DEFAULT_JUSTIFY) and "\n" not in plain and "\t" not in plain
                and cell_len(plain) <= inner and not (style and style.link)):
            # (most cells: one style, fits) what Text.wrap + join + render give: the text as it is, in its style
            segments = [Segment(plain, style)] if plain or not cell.style else []
        else:
            # As Text.__rich_console__ with DataTable's options (max_width = width - padding, no_wrap: one line):
            lines = cell.wrap(console, inner, justify=cell.justify or DEFAULT_JUSTIFY,
                              overflow=cell.overflow or DEFAULT_OVERFLOW,
                              tab_size=(console.tab_size if cell.tab_size is None else cell.tab_size) or 8,
                              no_wrap=True if cell.no_wrap is None else cell.no_wrap)
            if len(lines) != 1:
                return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            segments = list(Text("\n").join(lines).render(console))
        # As Padding (style "none"), padded to the width as Console.render_lines pads:
        pad_style = console.get_style("none")
        line = Segment.adjust_line_length(segments, inner, style=pad_style)
        if pad:
            edge = Segment(" " * pad, pad_style)
            line = [edge, *line, edge]
        # As Styled(pre_style=base + meta + component, post_style) in DataTable._render_cell:
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, fixed, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        return [list(Segment.apply_style(line, pre_style, post_style))]

    def _row_state(self, row_key: RowKey, line_no: int, base_style: Style, cursor_location: Coordinate,
                   hover_location: Coordinate) -> tuple[tuple[object, ...], tuple[object, ...]] | None:
        """What a row's line depends on, besides the stylesheet: its cells (the same objects), its place, the
        cursor and hover on it, the widths and the table's state. None: not a row kept here."""
        header = row_key is self._header_row_key
        row_index = -1 if header else self._row_locations.get(row_key)
        data = None if header else self._data.get(row_key)
        if row_index is None or (data is None and not header):
            return None
        columns = self.ordered_columns
        cells = tuple(c.label for c in columns) if data is None else tuple(data.get(c.key) for c in columns)
        kind = self.cursor_type
        by_column = kind in ("cell", "column")
        state = (line_no, row_index, base_style, kind, self.show_cursor, self._show_hover_cursor,
                 cursor_location.row == row_index, cursor_location.column if by_column else -1,
                 hover_location.row == row_index, hover_location.column if by_column else -1,
                 self._pseudo_class_state, self._frame_value("widths", self._widths), self.size.width,
                 self._labelled_row_exists and self.show_row_labels, self._row_label_column_width,
                 self.fixed_columns, self.fixed_rows, self.zebra_stripes, self.cursor_foreground_priority,
                 self.cursor_background_priority)
        return state, cells

    def _kept_row(self, row_key: RowKey, line_no: int,
                  drawn: tuple[tuple[object, ...], tuple[object, ...]] | None) -> Any:
        kept = self._kept_rows.get((row_key, line_no))
        if drawn is None or kept is None or kept[0] != drawn[0] or len(kept[1]) != len(drawn[1]):
            return None
        return kept[2] if all(a is b for a, b in zip(kept[1], drawn[1], strict=True)) else None

    def _render_line_in_row(self, row_key: RowKey, line_no: int, base_style: Style, cursor_location: Coordinate,
                            hover_location: Coordinate) -> Any:
        """A row's line, kept while what it shows is the same (``_row_state``). DataTable keys this with its
        table-wide update counter, so one changed cell re-assembled every visible row (three DOM style walks and
        a Strip each: ~40 ms for 45 rows, on every fleet refresh and every batch of a fill)."""
        drawn = self._row_state(row_key, line_no, base_style, cursor_location, hover_location)
        pair = self._kept_row(row_key, line_no, drawn)
        if pair is None:
            pair = super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)
            if drawn is not None:
                self._kept_rows[(row_key, line_no)] = (*drawn, pair)
        return pair

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """A line of the table: kept while its row's line (above) is the same object and the crop is the same.
        Within a frame (``render_lines``), rows whose line must be drawn again are drawn until ``FRAME_BUDGET_S``
        is spent (at least one); the others keep their previous line (or are blank) and the table refreshes again
        on the next frame: a screenful of new rows appears over a few frames instead of holding the loop."""
        try:
            row_key, line_no = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        cursor, hover = self.cursor_coordinate, self.hover_coordinate
        drawn = self._row_state(row_key, line_no, base_style, cursor, hover)
        pair = self._kept_row(row_key, line_no, drawn)
        crop = (x1, x2, self.size.width, base_style)
        kept = self._kept_lines.get((row_key, line_no))
        if pair is not None and kept is not None and kept[0] is pair and kept[1] == crop:
            return Strip(kept[2], kept[2].cell_length)
        frame = self._frame
        if frame is not None and frame.get("spent", 0.0) > self.FRAME_BUDGET_S and pair is None:
            frame["deferred"] = True
            if kept is not None and kept[1] == crop:
                return Strip(kept[2], kept[2].cell_length)
            return Strip.blank(self.size.width, base_style)
        started = time.perf_counter()
        pair = self._render_line_in_row(row_key, line_no, base_style, cursor, hover)
        strip = super()._render_line(y, x1, x2, base_style)
        # Kept as a Strip of its own: a Strip keeps what it was cropped, divided, filtered and styled into (up to
        # ~50 derived Strips, 7 caches each), so a line handed out frame after frame would grow that for as long
        # as its row is unchanged; each frame gets a fresh Strip on the same segments instead (Textual drops it
        # with its derivatives when the line is drawn again).
        self._kept_lines[(row_key, line_no)] = (pair, crop, Strip(strip, strip.cell_length))
        if frame is not None:
            frame["spent"] = frame.get("spent", 0.0) + time.perf_counter() - started
        return strip

    def render_lines(self, crop: Region) -> list[Strip]:
        self._frame = {}  # DOM style walks once per frame (not per line), and the frame's drawing budget
        try:
            return super().render_lines(crop)
        finally:
            deferred = self._frame.get("deferred", False)
            self._frame = None
            if deferred:
                self.call_later(self.refresh)

    def _frame_value(self, name: object, compute: Callable[[], Any]) -> Any:
        frame = self._frame
        if frame is None:
            return compute()
        if name not in frame:
            frame[name] = compute()
        return frame[name]

    def _widths(self) -> tuple[int, ...]:
        return tuple(c.get_render_width(self) for c in self.ordered_columns)

    @property
    def ordered_columns(self) -> list[Column]:
        # (DataTable builds this list afresh on each use: several times per row drawn)
        return list(self._frame_value("ordered_columns", lambda: super(MeasuredTable, self).ordered_columns))

    @property
    def rich_style(self) -> Style:
        return self._frame_value("rich_style", lambda: super(MeasuredTable, self).rich_style)

    @property
    def background_colors(self) -> tuple[Color, Color]:
        return self._frame_value("background_colors", lambda: super(MeasuredTable, self).background_colors)

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        kind = "header" if row_index == -1 else "fixed" if row_index < self.fixed_rows else row_index % 2
        return self._frame_value(
            ("row_style", kind, base_style), lambda: super(MeasuredTable, self)._get_row_style(row_index, base_style))

    def set_column_label(self, key: str, label: Text) -> None:
        """A new header label for column ``key`` (the sort marker), widening an auto-width column to fit it."""
        column = self.columns[ColumnKey(key)]
        column.label = label
        column.content_width = max(column.content_width, cell_len(label.plain))
        self._require_update_dimensions = True
        self.refresh()

    def update_cells(self, changes: Iterable[tuple[str, str, Cell]]) -> None:
        """``update_cell`` for many cells with one refresh: each ``update_cell`` refreshes the whole table (~30 us:
        700 changed cells on a 200-node fleet refresh, 20 ms)."""
        data = self._data
        changed = False
        for row, column, value in changes:
            row_key, column_key = RowKey(row), ColumnKey(column)
            if row_key not in self._row_locations or column_key not in self._column_locations:
                raise CellDoesNotExist(f"No cell exists for row_key={row_key!r}, column_key={column_key!r}.")
            data[row_key][column_key] = value
            changed = True
        if changed:
            self._update_count += 1
            self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._kept_cells.clear()
        self._kept_rows.clear()
        self._kept_lines.clear()

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._kept_cells.clear()
        self._kept_rows.clear()
        self._kept_lines.clear()

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # DataTable measures every cell of every new row (a ConsoleOptions with three get_terminal_size calls
        # each: ~40 ms per 60-row batch of the fleet); the measure only sizes auto-width columns and row labels.
        rows = list(new_rows)
        if not any(c.auto_width for c in self.columns.values()) and not any(
                (row := self.rows.get(key)) is not None and (row.label is not None or row.auto_height)
                for key in rows):
            rows = []  # (the virtual size is still recomputed)
        super()._update_dimensions(rows)
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


@dataclass(frozen=True, slots=True)
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
                and all(same_content(a, b) for a, b in zip(self.cells, other.cells, strict=True)))


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


_NUMBER = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*([a-zA-Z%]*)")
_UNITS = {"b": 1.0, "kib": 2.0**10, "mib": 2.0**20, "gib": 2.0**30, "k": 1e3, "s": 1.0, "m": 60.0, "h": 3600.0,
          "d": 86400.0}


def sort_value(cell: Cell) -> tuple[int, float, str]:
    """How a cell sorts: numbers (with a size or time unit) before text, ``-``/blank last."""
    text = (cell.plain if isinstance(cell, Text) else str(cell)).strip()
    if text in ("", "-", "never"):
        return (2, 0.0, "")
    found = _NUMBER.match(text)
    if found:
        return (0, float(found[1]) * _UNITS.get(found[2].lower(), 1.0), text.lower())
    return (1, 0.0, text.lower())


def sort_letters(labels: Sequence[str]) -> list[str | None]:
    """Each column's sort letter: the first letter of its label not taken by a column before it."""
    taken: set[str] = set()
    out: list[str | None] = []
    for label in labels:
        letter = next((c for c in label.lower() if c.isalpha() and c.isascii() and c not in taken), None)
        if letter:
            taken.add(letter)
        out.append(letter)
    return out


def sorted_rows(rows: Sequence[Row], column: int, descending: bool) -> list[Row]:
    """``rows`` sorted by one column; group headings keep their place and their members follow them."""
    def key(r: Row) -> tuple[int, float, str]:
        return sort_value(r.cells[column]) if column < len(r.cells) else (2, 0.0, "")

    if not any(r.header for r in rows):
        return sorted(rows, key=key, reverse=descending)
    out: list[Row] = []
    members: dict[str | None, list[Row]] = {}
    for r in rows:
        if not r.header:
            members.setdefault(r.group, []).append(r)
    for r in rows:
        if r.header:
            out.append(r)
            out += sorted(members.pop(r.key, []), key=key, reverse=descending)
    for rest in members.values():  # rows whose heading is missing
        out += sorted(rest, key=key, reverse=descending)
    return out


class FilterInput(Input):
    BINDINGS = [Binding("escape", "close", "close filter", show=False)]

    def action_close(self) -> None:
        parent = self.parent
        if isinstance(parent, FilterableTable):
            parent.close_filter(clear=not self.value)


class FilterableTable(TiledVertical):
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

    class Sorted(Message):
        """The user sorted the table (``sort`` is (column index, descending), or None)."""

        def __init__(self, table: FilterableTable, sort: tuple[int, bool] | None) -> None:
            super().__init__()
            self.table = table
            self.sort = sort

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
        self.labels = [c[0] if isinstance(c, tuple) else c for c in self.columns]
        self.letters = sort_letters(self.labels)
        self.sort: tuple[int, bool] | None = None  # (column index, descending)

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
                self.table.add_column(self._label(i), width=col[1], key=str(i))
            else:
                self.table.add_column(self._label(i), key=str(i))

    def _label(self, index: int) -> Text:
        """The header: the sort letter underlined, and an arrow on the sorted column."""
        label = Text(self.labels[index])
        letter = self.letters[index]
        if letter is not None:
            at = label.plain.lower().index(letter)
            label.stylize("underline", at, at + 1)
        if self.sort is not None and self.sort[0] == index:
            label.append(" ▼" if self.sort[1] else " ▲", style="bold")
        return label

    # -- sorting -------------------------------------------------------------------------------------------
    def set_sort(self, sort: tuple[int, bool] | None) -> None:
        """Sort by (column, descending), or keep the rows' own order (None); redraws."""
        if sort is not None and not 0 <= sort[0] < len(self.columns):
            sort = None
        before, self.sort = self.sort, sort
        if before == sort:
            return
        if self.is_mounted:
            for index in {i for i in (before and before[0], sort and sort[0]) if i is not None}:
                self.table.set_column_label(str(index), self._label(index))
            self._apply()

    def sort_by(self, column: int) -> None:
        """Shift+letter: sort by ``column``; the same column again reverses the order."""
        descending = self.sort is not None and self.sort[0] == column and not self.sort[1]
        self.set_sort((column, descending))
        self.post_message(self.Sorted(self, self.sort))

    def on_key(self, event: events.Key) -> None:
        char = event.character or ""
        if len(char) == 1 and char.isupper() and char.lower() in self.letters:
            event.stop()
            event.prevent_default()
            self.sort_by(self.letters.index(char.lower()))

    @property
    def table(self) -> MeasuredTable:
        return self.query_one(MeasuredTable)

    @property
    def input(self) -> FilterInput:
        return self.query_one(FilterInput)

    # -- data ----------------------------------------------------------------------------------------------
    def set_rows(self, rows: Sequence[Row], *, follow_top: bool = False) -> None:
        """Replace the rows; the cursor stays on its row (by key). ``follow_top`` (a live list, newest first): a
        cursor on the first row stays on the first row, so new rows arrive under it as in ``tail -f``."""
        rows = list(rows)
        if self.shown and len(rows) == len(self.rows) and all(
                a.draws_like(b) for a, b in zip(rows, self.rows, strict=True)):
            return  # nothing changed: keep the table (and the loop) idle
        at_top = follow_top and (not self.shown or self.cursor_key == self.shown[0])
        self.rows = rows
        self._apply()
        if at_top and self.shown:
            self.select_key(self.shown[0])

    def visible_rows(self) -> list[Row]:
        rows = self.rows if self.sort is None else sorted_rows(self.rows, *self.sort)
        needle = self.filter_text.strip()
        if not needle:
            return list(rows)
        keep: list[Row] = [r for r in rows if not r.header and matches(r, needle)]
        groups = {r.group for r in keep}
        return [r for r in rows if (r.header and r.key in groups) or (not r.header and r in keep)]

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
            table.update_cells([
                *((row.key, str(i), new_cell) for row, old in zip(visible, self._cells, strict=True)
                  for i, (new_cell, old_cell) in enumerate(zip(row.cells, old, strict=False))
                  if not same_content(new_cell, old_cell)),
                *([(MORE_KEY, "0", _more_text(hidden))] if hidden else [])])
            self._cells = [r.cells for r in visible]
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
