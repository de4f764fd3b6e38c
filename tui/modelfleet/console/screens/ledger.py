"""Ledger: events with filters (model, node, action, actor) and the integrity status from ``ledger verify``.

It follows the ledger live (new events appear as they are written, polled every ``FOLLOW_LEDGER_S``) and its
detail pane shows the event under the cursor.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from modelfleet.console import fmt
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal
from modelfleet.core.ledger import Event

FILTERS = ("model", "node", "action", "actor")
# fixed widths: the run id (23 characters) stays readable beside the detail pane at 160 columns
COLUMNS = [("seq", 5), ("time (UTC)", 14), ("action", 14), ("model@version", 16), ("node", 13), ("run", 23),
           ("outcome", 11), ("actor", 16)]


def event_text(ev: Event) -> Text:
    """The detail pane of one ledger event: every field, its details, its place in the chain."""
    d = ev.to_dict()
    t = Text(f"event {ev.seq}\n", style="bold")
    for k in ("ts", "actor", "action", "model", "version", "digest", "target", "node", "run_id", "outcome"):
        t.append(f"{k:<8} {fmt.dash(d[k])}\n")
    t.append("\ndetails\n", style="bold")
    t.append(json.dumps(ev.details, indent=2, sort_keys=True)[:3000] + "\n")
    t.append(f"\nprev {ev.prev_hash[:32]}…\nhash {ev.hash[:32]}…\n", style="dim")
    return t


def model_at(ev: Event) -> str:
    return f"{ev.model}/{ev.version}" if ev.model and ev.version else fmt.dash(ev.model)


class FieldFilter(Input):
    """A ledger field filter. Out of the focus chain until the user asks for it (``f`` or a click), so switching
    to the ledger or closing the command bar never leaves the cursor in a filter box (where ``:`` would be
    typed instead of opening the command line)."""

    BINDINGS = [Binding("escape", "done", "close", show=False)]

    def __init__(self, value: str, *, placeholder: str, id: str) -> None:
        super().__init__(value, placeholder=placeholder, id=id)
        self.can_focus = False

    def activate(self) -> None:
        screen = self.screen
        for box in screen.query(FieldFilter):
            box.can_focus = True
        self.focus()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if not self.can_focus:
            self.activate()

    def action_done(self) -> None:
        screen = self.screen
        if isinstance(screen, LedgerScreen):
            screen.close_field_filters()


class LedgerScreen(ViewScreen):
    AUTO_FOCUS = "#ledger DataTable"
    BINDINGS = [Binding("f", "field_filters", "field filters")]
    crumb = "Ledger"
    kinds = ("ledger", "verify")
    follows_ledger = True

    def body(self) -> ComposeResult:
        yield Static(id="ledger-verify", classes="summary")
        with TiledHorizontal(id="ledger-filters"):
            for f in FILTERS:
                yield FieldFilter(self.state.ledger_filters.get(f, ""), placeholder=f"{f} (f, Enter)", id=f"lf-{f}")
        with TiledHorizontal(classes="split"):
            yield FilterableTable(COLUMNS, id="ledger")
            with VerticalScroll(classes="detail", id="ledger-detail"):
                yield Static(id="ledger-event")

    def on_mount(self) -> None:
        super().on_mount()
        # (composed hidden ahead of its first visit, it can mount while the app shuts down and removes its parts)
        for table in self.query("#ledger").results(FilterableTable):
            table.table.focus()

    def on_view_shown(self) -> None:
        if self.state.ledger is None:
            self.mf.load_ledger()

    def reload(self) -> None:
        self.mf.load_ledger(self.state.ledger_filters)

    @on(Input.Submitted, "#ledger-filters Input")
    def _apply(self, event: Input.Submitted) -> None:
        event.stop()
        filters = {f: self.query_one(f"#lf-{f}", Input).value.strip() for f in FILTERS}
        self.mf.load_ledger({k: v for k, v in filters.items() if v})
        self.close_field_filters()

    def action_field_filters(self) -> None:
        self.query_one("#lf-model", FieldFilter).activate()

    def close_field_filters(self) -> None:
        for box in self.query(FieldFilter):
            box.can_focus = False
        self.query_one("#ledger", FilterableTable).table.focus()

    def refresh_view(self) -> None:
        v = self.state.verify
        t = Text()
        if v is None:
            t.append(self.state.errors.get("verify") or "verifying the hash chain…", style="dim")
        elif v.ok:
            t.append("✔ chain verified", style="bold green")
            t.append(f": {v.count} events, head {(v.head_hash or '-')[:16]}")
            if v.incomplete_runs:
                t.append(f" · {len(v.incomplete_runs)} incomplete run(s): {', '.join(v.incomplete_runs[:3])}",
                         style="magenta")
        else:
            t.append(f"✘ CHAIN BROKEN at event {v.first_bad_seq}", style="bold red")
            t.append(f": {v.reason}")
        events = self.state.ledger
        active = {k: v for k, v in self.state.ledger_filters.items() if v}
        if events is not None:
            t.append(f"\n{len(events)} events shown (newest first)", style="dim")
            if active:
                t.append(" · filters: " + ", ".join(f"{k}={v}" for k, v in active.items()), style="dim")
            t.append(" · v: verify again", style="dim")
        elif "ledger" in self.state.errors:
            t.append("\n" + self.state.errors["ledger"], style="red")
        update_static(self.query_one("#ledger-verify", Static), t)
        if events is None:
            return
        rows = [Row(str(e.seq), (str(e.seq), e.ts.strftime("%m-%d %H:%M:%S"), e.action, model_at(e),
                                 fmt.dash(e.node), fmt.dash(e.run_id), fmt.state(e.outcome) if e.outcome else "-",
                                 e.actor))
                for e in reversed(events)]
        table = self.query_one("#ledger", FilterableTable)
        table.set_rows(rows, follow_top=True)
        self.show_event(table.cursor_key or (rows[0].key if rows else None))

    @on(FilterableTable.Highlighted)
    def _show(self, event: FilterableTable.Highlighted) -> None:
        self.show_event(event.table.cursor_key or event.key)  # (where the cursor is now, if it moved since)

    def show_event(self, key: str | None) -> None:
        """The detail pane: the event ``key`` (the cursor's), whatever was shown before."""
        ev = next((e for e in self.state.ledger or [] if str(e.seq) == key), None)
        update_static(self.query_one("#ledger-event", Static), event_text(ev) if ev is not None else "")

    def copy_value(self) -> str | None:
        """The run id of the event under the cursor (what `modelfleet ledger list --run` takes), else its seq."""
        key = super().copy_value()
        ev = next((e for e in self.state.ledger or [] if str(e.seq) == key), None)
        return (ev.run_id or str(ev.seq)) if ev is not None else None

    def action_verify(self) -> None:
        self.mf.verify_ledger()
