"""FilterableTable on its own: rows arriving after mount are drawn at their measured width, changed cells are
redrawn and nothing else, and a cell is drawn exactly as DataTable draws it."""

from __future__ import annotations

import pytest
from rich.style import Style
from rich.text import Span, Text
from textual.app import App, ComposeResult

from modelfleet.console.widgets.filterable_table import FilterableTable, MeasuredTable, Row

pytestmark = pytest.mark.anyio


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield FilterableTable(["model", "description"], id="t")


async def test_rows_set_after_mount_are_not_truncated_to_the_label_width() -> None:
    app = OneTable()
    async with app.run_test(size=(100, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(FilterableTable)
        table.set_rows([Row("a", ("credit-risk", "Demo credit default classifier"))])
        table.table.render_line(1)  # drawn once before DataTable measured the new row (as a busy screen does)
        for _ in range(5):
            await pilot.pause()
        line = table.table.render_line(1).text
        assert "credit-risk" in line and "Demo credit default classifier" in line, line


async def test_an_update_redraws_only_the_cells_that_changed() -> None:
    app = OneTable()
    async with app.run_test(size=(100, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(FilterableTable)
        rows = [Row(str(i), (f"model-{i}", f"description {i}")) for i in range(5)]
        table.set_rows(rows)
        for _ in range(3):
            await pilot.pause()
        for y in range(1, 6):
            table.table.render_line(y)
        rendered: list[tuple[int, int]] = []
        draw = MeasuredTable._draw_cell  # a cell actually drawn (not taken from what was kept)

        def counting(self, row_index, column_index, *args, **kwargs):  # type: ignore[no-untyped-def]
            rendered.append((row_index, column_index))
            return draw(self, row_index, column_index, *args, **kwargs)

        MeasuredTable._draw_cell = counting  # type: ignore[method-assign]
        try:
            table.set_rows([*rows[:2], Row("2", ("model-2", "changed")), *rows[3:]])
            await pilot.pause()
            lines = [table.table.render_line(y).text for y in range(1, 6)]
        finally:
            MeasuredTable._draw_cell = draw  # type: ignore[method-assign]
        assert "changed" in lines[2] and "description 1" in lines[1], lines
        assert rendered == [(2, 1)]


async def test_a_big_table_fills_a_batch_per_loop_turn_and_a_newer_set_supersedes_it() -> None:
    from modelfleet.console.widgets.filterable_table import BATCH, MAX_SHOWN

    app = OneTable()
    async with app.run_test(size=(100, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(FilterableTable)
        rows = [Row(str(i), (f"model-{i}", f"v{i}")) for i in range(MAX_SHOWN + 50)]
        table.set_rows(rows)
        assert table.table.row_count == BATCH  # a screenful now, the rest on the next turns
        table.set_rows(rows[:BATCH + 10])  # new data mid-fill: the old fill stops, the new one is shown
        table.set_rows([*rows[:BATCH + 9], Row(str(BATCH + 9), ("changed", "v"))])  # and again, mid-fill
        for _ in range(10):
            await pilot.pause()
        assert table.table.row_count == BATCH + 10 and table._filling is None
        assert table.table.get_row(str(BATCH + 9))[0] == "changed"

        table.set_rows(rows)
        for _ in range(10):
            await pilot.pause()
        assert table.table.row_count == MAX_SHOWN + 1  # and the "… 50 more rows" line
        table.select_key("1")
        table.set_rows(list(reversed(rows[:MAX_SHOWN])))  # rebuilt: the cursor follows its row (in the last batch)
        for _ in range(10):
            await pilot.pause()
        assert table.cursor_key == "1" and table.table.cursor_row == MAX_SHOWN - 2


async def test_a_cell_that_only_changes_colour_is_updated_and_redrawn() -> None:
    app = OneTable()
    async with app.run_test(size=(100, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(FilterableTable)
        first = Row("a", ("node-1", "-"))  # the cursor's row (the cursor colours it over)
        table.set_rows([first, Row("b", ("node-2", Text("1.5%")))])
        for _ in range(3):
            await pilot.pause()
        before = table.table.render_line(2)
        table.set_rows([first, Row("b", ("node-2", Text("1.5%", style="bold red")))])  # Text == ignores the style
        for _ in range(3):
            await pilot.pause()
        after = table.table.render_line(2)
        assert table.table.get_row("b")[1].style == "bold red"
        assert after.text == before.text and list(after) != list(before)  # same characters, drawn red


CELLS: list[object] = [
    "plain", "", "a string much longer than any of the columns here", "wide 中文字符 and ⚠ ▸ …", "12:30 :smile:",
    "[bold]markup[/bold] and [red]colour", "tab\there", "two\nlines", "trailing   ", 1.5, 7, None,
    Text("styled", style="bold red"), Text.assemble(("a", "green"), " b ", ("c", "bold")), Text("", style="red"),
    Text("right", justify="right"), Text("centre", justify="center"), Text("left", justify="left"),
    Text("full justified words", justify="full"), Text("an ellipsis for a long text", overflow="ellipsis"),
    Text("cropped text that is long", overflow="crop"), Text("ignored overflow, long", overflow="ignore"),
    Text("wrapping allowed in a long text", no_wrap=False), Text("ends", end="\n"),
    Text("a span", spans=[Span(2, 6, "italic")], style="dim"), Text("中文字符中文字符中文"),
    Text("x" * 3, style="on blue"), Text("a link", style="link https://example.org"), Text("", style=""),
    Text("fits exactly", style="bold"), Text("null style", style=Style()), Text("unparsable", style="not a style"),
    Text("", style="not a style"),
]


class CellTable(App[None]):
    def compose(self) -> ComposeResult:
        yield MeasuredTable(zebra_stripes=True)


@pytest.mark.parametrize("cursor_type", ["row", "cell"])
async def test_a_cell_is_drawn_exactly_as_datatable_draws_it(cursor_type: str) -> None:
    """MeasuredTable._draw_cell skips Rich's generic layout for one-line Text cells; the segments (text, style,
    meta) must be DataTable's own for every kind of cell, width, cursor, hover and fixed column."""
    from textual.widgets import DataTable

    app = CellTable()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(MeasuredTable)
        table.cursor_type = cursor_type  # type: ignore[assignment]
        table.fixed_columns = 1
        for i, width in enumerate((1, 2, 3, 6, 12, 30)):
            table.add_column(f"c{i}", width=width, key=f"c{i}")
        table.add_column("auto", key="auto")
        for r, cell in enumerate(CELLS):
            table.add_row(*([cell] * 7), key=f"r{r}")
        table.add_row(*(["tall", Text("two\nlines")] * 3), "x", key="tall", height=2)
        await pilot.pause()
        drawn = 0
        for row_index in range(table.row_count):
            row_key = table._row_locations.get_key(row_index)
            for column_index, column in enumerate(table.ordered_columns):
                width = column.get_render_width(table)
                for base_style in (Style(), Style(color="red", bgcolor="black")):
                    for cursor, hover in ((False, False), (True, False), (False, True)):
                        table._cell_render_cache.clear()  # DataTable's key has no width
                        expected = DataTable._render_cell(table, row_index, column_index, base_style, width,
                                                          cursor, hover)
                        got = table._draw_cell(row_index, column_index, row_key, base_style, width, cursor, hover)
                        assert got == expected, (row_index, column_index, width, cursor, hover)
                        drawn += 1
        assert drawn == (len(CELLS) + 1) * 7 * 6
