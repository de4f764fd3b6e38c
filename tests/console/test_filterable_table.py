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
