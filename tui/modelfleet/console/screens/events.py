"""Events: what needs an operator's attention, newest first: failed runs and nodes, rollbacks, unreachable nodes,
failed gates, approvals, break-glass deploys and alerts (drift or other), from the ledger, live.

Which events these are is one function in core (:func:`modelfleet.core.notable.classify`); this view only shows
them. Enter or the detail pane: the ledger event; ``l``/``s`` on an event that names a node: its log, a shell.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from modelfleet.console import fmt
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.screens.ledger import event_text, model_at
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal
from modelfleet.core.notable import Notable

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}
COLUMNS = [("time (UTC)", 14), ("severity", 8), ("kind", 18), ("what", 58), ("model@version", 16), ("node", 13),
           ("run", 23)]


class EventsScreen(ViewScreen):
    crumb = "Events"
    kinds = ("notable",)
    follows_ledger = True

    def body(self) -> ComposeResult:
        yield Static(id="events-summary", classes="summary")
        with TiledHorizontal(classes="split"):
            yield FilterableTable(COLUMNS, id="events")
            with VerticalScroll(classes="detail", id="events-detail"):
                yield Static(id="events-event")

    def on_view_shown(self) -> None:
        if self.state.notable is None:
            self.mf.load_notable()

    def reload(self) -> None:
        self.mf.load_notable()

    def refresh_view(self) -> None:
        found = self.state.notable
        summary = self.query_one("#events-summary", Static)
        if found is None:
            update_static(summary, self.state.errors.get("notable") or "reading the ledger…")
            return
        counts = {sev: sum(1 for n in found if n.severity == sev) for sev in SEVERITY_STYLE}
        t = Text(f"{len(found)} events need attention" if found else "nothing needs attention", style="bold")
        for sev, n in counts.items():
            if n:
                t.append(f"  {n} {sev}", style=SEVERITY_STYLE[sev])
        t.append(" · newest first, live from the ledger · l: the node's log · y: copy the run id", style="dim")
        update_static(summary, t)
        table = self.query_one(FilterableTable)
        table.set_rows([Row(str(n.event.seq), (
            n.event.ts.strftime("%m-%d %H:%M:%S"), Text(n.severity, style=SEVERITY_STYLE.get(n.severity, "")),
            n.kind.replace("_", " "), n.title, model_at(n.event), fmt.dash(n.event.node), fmt.dash(n.event.run_id)))
            for n in found], follow_top=True)
        self.show_event(table.cursor_key or (str(found[0].event.seq) if found else None))

    def _notable(self, key: str | None) -> Notable | None:
        return next((n for n in self.state.notable or [] if str(n.event.seq) == key), None)

    @on(FilterableTable.Highlighted)
    def _show(self, event: FilterableTable.Highlighted) -> None:
        self.show_event(event.table.cursor_key or event.key)

    def show_event(self, key: str | None) -> None:
        n = self._notable(key)
        if n is None:
            update_static(self.query_one("#events-event", Static), "")
            return
        t = Text(f"{n.severity.upper()}  {n.kind.replace('_', ' ')}\n", style=SEVERITY_STYLE.get(n.severity, ""))
        t.append(f"{n.title}\n\n")
        t.append_text(event_text(n.event))
        update_static(self.query_one("#events-event", Static), t)

    def _node(self) -> str | None:
        n = self._notable(self.query_one(FilterableTable).cursor_key)
        return n.event.node if n is not None else None

    def action_logs(self) -> None:
        n = self._notable(self.query_one(FilterableTable).cursor_key)
        if n is None or not n.event.node:
            self.notify("this event names no node", severity="warning")
            return
        self.mf.open_logs(n.event.node, n.event.model)

    def action_shell(self) -> None:
        node = self._node()
        if node:
            self.mf.open_shell(node)
        else:
            self.notify("this event names no node", severity="warning")

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        n = self._notable(self.query_one(FilterableTable).cursor_key) if row else None
        if n is None:
            return {}
        return {k: v for k, v in (("target", n.event.node), ("model", n.event.model)) if v}

    def copy_value(self) -> str | None:
        n = self._notable(self.query_one(FilterableTable).cursor_key)
        return (n.event.run_id or str(n.event.seq)) if n is not None else None
