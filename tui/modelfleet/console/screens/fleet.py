"""Fleet: every node grouped by class and environment, latency vs SLO, errors, load, resources, last seen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from modelfleet.console import fmt
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.screens.drift import drift_tally, node_drift_cell
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.sparkline import LatencySparkline
from modelfleet.console.widgets.tiled import TiledHorizontal
from modelfleet.core.fleet_status import NodeStatus, summarize

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.monitor_view import MonitorView

COLUMNS: list[tuple[str, int]] = [
    ("node", 14), ("address", 12), ("class", 5), ("env", 10), ("model@version", 16), ("health", 11),
    ("drift", 13), ("p50 ms", 6), ("p95 ms", 6), ("p99 ms", 6), ("err %", 6), ("req/s", 5), ("cpu", 4), ("mem", 7),
    ("last seen", 9)]
EMPTY = ("",) * (len(COLUMNS) - 2)


def fleet_rows(statuses: list[NodeStatus], slo: Any, now: float, monitor: MonitorView | None = None,
               monitor_failed: bool = False) -> list[Row]:
    groups: dict[tuple[str, str], list[NodeStatus]] = {}
    for s in statuses:
        groups.setdefault((s.node_class, s.environment or "-"), []).append(s)
    rows: list[Row] = []
    for (cls, env), members in sorted(groups.items()):
        gkey = f"group:{cls}:{env}"
        bad = sum(1 for m in members if m.state != "ok")
        label = Text(f"▸ {cls}/{env}", style="bold")
        count = Text(f"{len(members)} node{'s' if len(members) != 1 else ''}"
                     + (f", {bad} ⚠" if bad else ""), style="bold yellow" if bad else "bold")
        rows.append(Row(gkey, (label, count, *EMPTY), header=True))
        for s in members:
            seen = fmt.age(now - s.last_seen) if s.last_seen is not None else "never"
            rows.append(Row(s.name, (
                s.name, s.address, s.node_class, s.environment or "-", fmt.dash(s.target),
                fmt.state(s.state), node_drift_cell(monitor, s, failed=monitor_failed),
                fmt.ms(s.p50_ms, slo.p50_ms), fmt.ms(s.p95_ms, slo.p95_ms), fmt.ms(s.p99_ms, slo.p99_ms),
                fmt.pct(s.error_rate, warn=0.01), fmt.rate(s.rps),
                "-" if s.cpu is None else f"{s.cpu * 100:.0f}%", fmt.size(s.mem_bytes),
                Text(seen, style="bold magenta" if s.state in ("stale", "unreachable") else ""),
            ), group=gkey))
    return rows


class FleetScreen(ViewScreen):
    crumb = "Fleet"
    kinds = ("fleet", "monitor")

    def body(self) -> ComposeResult:
        yield Static(id="fleet-summary", classes="summary")
        yield FilterableTable(COLUMNS, id="fleet")

    def on_view_shown(self) -> None:
        if self.state.fleet is None:
            self.mf.refresh_fleet()

    def node_under_cursor(self) -> str | None:
        key = self.query_one(FilterableTable).cursor_key
        return key if key and not key.startswith("group:") else None

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        """From a node's row: that node, and the model it runs. From ``:deploy``: nothing of the row."""
        node = self.node_under_cursor() if row else None
        if node is None:
            return {}
        status = next((s for s in self.state.fleet or [] if s.name == node), None)
        return {"target": node, **({"model": status.model} if status is not None and status.model else {})}

    def action_logs(self) -> None:
        node = self.node_under_cursor()
        if node is None:
            self.notify("put the cursor on a node (not a group heading) for its log", severity="warning")
        else:
            self.mf.open_logs(node)

    def action_shell(self) -> None:
        node = self.node_under_cursor()
        if node is None:
            self.notify("put the cursor on a node (not a group heading) for a shell", severity="warning")
        else:
            self.mf.open_shell(node)

    def refresh_view(self) -> None:
        statuses = self.state.fleet
        summary = self.query_one("#fleet-summary", Static)
        slo = self.mf.slo
        if statuses is None:
            update_static(summary, self.state.fleet_error or "probing agents…")
            return
        counts = summarize(statuses)
        text = Text(f"{counts['total']} nodes  ")
        for key in ("ok", "slo", "unavailable", "error", "unreachable", "stale"):
            if counts[key]:
                text.append(f"{counts[key]} {fmt.STATE_LABEL[key]}  ", style=fmt.STATE_STYLE[key])
        text.append(f"· SLO p50 {slo.p50_ms:g} / p95 {slo.p95_ms:g} / p99 {slo.p99_ms:g} ms"
                    f" · refresh every {self.mf.refresh_s:g}s", style="dim")
        text.append_text(drift_tally(self.state.monitor, statuses, self.state.monitor_error))
        if self.state.fleet_error:
            text.append(f"\n{self.state.fleet_error}", style="red")
        update_static(summary, text)
        now = self.state.fleet_at or self.mf.now()
        self.query_one(FilterableTable).set_rows(fleet_rows(statuses, slo, now, self.state.monitor,
                                                            self.state.monitor_error is not None))

    @on(FilterableTable.Selected)
    def _open(self, event: FilterableTable.Selected) -> None:
        if not event.key.startswith("group:"):
            self.app.push_screen(NodeScreen(event.key))


class NodeScreen(ViewScreen):
    kinds = ("fleet", "releases", "monitor")

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        self.crumb = node

    def body(self) -> ComposeResult:
        with TiledHorizontal(classes="split"):
            with VerticalScroll(id="node-detail", classes="detail-left"):
                yield Static(id="node-text")
                yield LatencySparkline(id="node-spark")
            with VerticalScroll(id="node-releases", classes="detail"):
                yield Static(id="node-releases-text")

    def on_view_shown(self) -> None:
        self.mf.load_releases(self.node)

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        status = next((s for s in self.state.fleet or [] if s.name == self.node), None)
        return {"target": self.node, **({"model": status.model} if status is not None and status.model else {})}

    def action_logs(self) -> None:
        self.mf.open_logs(self.node)

    def action_shell(self) -> None:
        self.mf.open_shell(self.node)

    def copy_value(self) -> str | None:
        return self.node

    def refresh_view(self) -> None:
        status = next((s for s in self.state.fleet or [] if s.name == self.node), None)
        slo = self.mf.slo
        text = Text()
        if status is None:
            text.append(f"{self.node}: no status yet", style="dim")
            update_static(self.query_one("#node-text", Static), text)
        else:
            s = status
            now = self.state.fleet_at or self.mf.now()
            text.append(f"{s.name}  ", style="bold")
            text.append_text(fmt.state(s.state))
            if s.reason:
                text.append(f"  {s.reason}", style="dim")
            text.append(f"\naddress   {s.address}\nclass     {s.node_class}\nenv       {s.environment or '-'}\n"
                        f"groups    {', '.join(s.groups) or '-'}\nserving   {fmt.dash(s.target)}\n"
                        f"digest    {fmt.dash(s.digest)}\nuptime    "
                        f"{'-' if s.uptime_s is None else f'{s.uptime_s:.0f}s'}\n"
                        f"last seen {fmt.age(None if s.last_seen is None else now - s.last_seen)}\n\n")
            for q in ("p50", "p95", "p99"):
                text.append(f"{q}       ")
                text.append_text(fmt.ms(getattr(s, f"{q}_ms"), slo.budget(q)))
                text.append(f" ms (SLO {slo.budget(q):g})\n")
            text.append("errors    ")
            text.append_text(fmt.pct(s.error_rate, warn=0.01))
            text.append(f"  ({fmt.dash(s.errors)} of {fmt.dash(s.requests)} requests)\n"
                        f"req/s     {fmt.rate(s.rps)}\n"
                        f"cpu       {'-' if s.cpu is None else f'{s.cpu * 100:.0f}% of a core'}\n"
                        f"memory    {fmt.size(s.mem_bytes)} agent"
                        f"{'' if s.host_mem_ratio is None else f', host {s.host_mem_ratio * 100:.0f}% used'}\n"
                        f"drift     ")
            text.append_text(node_drift_cell(self.state.monitor, s, failed=self.state.monitor_error is not None))
            text.append(f"  {_drift(s.drift_available)} · 7: drift view\n\n", style="dim")
            update_static(self.query_one("#node-text", Static), text)
            self.query_one(LatencySparkline).show(list(s.history), slo.p95_ms)
        rel = Text("releases on disk\n", style="bold")
        if self.node not in self.state.releases:
            rel.append("loading…", style="dim")
        else:
            releases, events = self.state.releases[self.node]
            if releases is None:
                rel.append("(remote node: releases from the ledger)\n", style="dim")
            elif not releases:
                rel.append("none\n", style="dim")
            else:
                for r in releases:
                    mark = " ← current" if r.current else " ← previous" if r.previous else ""
                    rel.append(f"  {r.model}/{r.name}", style="bold green" if r.current else "")
                    rel.append(f"{mark}\n", style="dim")
            rel.append("\nledger (newest last)\n", style="bold")
            if not events:
                rel.append("  no events for this node\n", style="dim")
            for e in events[-15:]:
                rel.append(f"  {fmt.when(e.ts)}  {e.action:<14} {e.model or '-'} v{e.version or '-'}  "
                           f"{e.outcome or '-'}\n")
        update_static(self.query_one("#node-releases-text", Static), rel)


def _drift(available: bool | None) -> str:
    if available is None:
        return "-"
    return "counting against the reference profile" if available else "no reference profile"
