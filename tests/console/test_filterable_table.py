"""FilterableTable on its own: rows arriving after mount are drawn at their measured width."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from modelfleet.console.widgets.filterable_table import FilterableTable, Row

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
        draw = type(table.table).__mro__[1]._render_cell  # DataTable's own (uncached) cell drawing

        def counting(self, row_index, column_index, *args, **kwargs):  # type: ignore[no-untyped-def]
            rendered.append((row_index, column_index))
            return draw(self, row_index, column_index, *args, **kwargs)

        type(table.table).__mro__[1]._render_cell = counting  # type: ignore[method-assign]
        try:
            table.set_rows([*rows[:2], Row("2", ("model-2", "changed")), *rows[3:]])
            await pilot.pause()
            lines = [table.table.render_line(y).text for y in range(1, 6)]
        finally:
            type(table.table).__mro__[1]._render_cell = draw  # type: ignore[method-assign]
        assert "changed" in lines[2] and "description 1" in lines[1], lines
        assert [c for c in rendered if c[0] >= 0] == [(2, 1)]


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
    from rich.text import Text

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
