"""A live (or replayed) run: plays, hosts with their outcome, progress, output search, per-host task drill-down."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Log, ProgressBar, Static

from modelfleet.console import fmt
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal
from modelfleet.runners.infra_state import InfraState
from modelfleet.runners.runstate import CONTROLLER_HOSTS, RunState

HOST_COLUMNS = ["host", "outcome", "wave", "ok", "changed", "failed", "unreachable", "node says", "last task"]


class RunLiveScreen(ViewScreen):
    kinds = ("live",)
    FOCUS_TABLE = "#hosts"  # the table the cursor starts in

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.crumb = run_id
        self.search = ""
        self._shown_lines = -1

    def body(self) -> ComposeResult:
        yield Static(id="run-summary", classes="summary")
        yield ProgressBar(id="run-progress", show_eta=False)
        with Horizontal(classes="run-top"):
            yield FilterableTable(["play", "hosts", "tasks", "state"], id="plays")
            yield FilterableTable(HOST_COLUMNS, id="hosts")
        yield Input(placeholder="search output (Enter)", id="run-search")
        yield Log(id="run-output", max_lines=2000)

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(0.25, self._tick)
        self.query_one(self.FOCUS_TABLE, FilterableTable).table.focus()

    def _tick(self) -> None:
        if self._dirty and self.is_current:
            self._dirty = False
            self.refresh_view()

    def data_changed(self, kind: str) -> None:
        if kind in self.kinds:
            self._dirty = True  # throttled: redrawn by _tick at most 4 times a second

    @property
    def run(self) -> RunState | InfraState | None:
        return self.state.live.get(self.run_id)

    def refresh_view(self) -> None:
        st = self.run
        if isinstance(st, InfraState):  # (a Terraform run has its own view: screens/infra.py)
            return
        if st is None:
            update_static(self.query_one("#run-summary", Static), f"loading {self.run_id}…")
            return
        counts = Text()
        for key, n in st.counts().items():
            if n:
                counts.append(f"{n} {key.replace('_', ' ')}  ", style=fmt.STATE_STYLE.get(key, ""))
        self.show_status(st, f"{st.kind or 'run'} {st.run_id}", counts, step="task",
                         replayed="replayed from artifacts")
        self.query_one("#plays", FilterableTable).set_rows([
            Row(p.uuid + f":{i}", (p.name, str(len(p.hosts)), str(p.tasks), "done" if p.done else "running"))
            for i, p in enumerate(st.plays)])
        rows = []
        for h in st.hosts.values():
            last = h.tasks[-1].task if h.tasks else "-"
            rows.append(Row(h.name, (h.name, fmt.state(h.outcome(st.kind).value), fmt.dash(h.batch), str(h.ok),
                                     str(h.changed), str(h.failed), str(h.unreachable), fmt.dash(h.node_outcome),
                                     last[:50])))
        self.query_one("#hosts", FilterableTable).set_rows(rows)
        self._show_output(st)

    def show_status(self, st: RunState | InfraState, title: str, counts: Text, *, step: str, replayed: str) -> None:
        """The summary (what, outcome, live or replayed, ``counts``, the current step, the problem) and progress."""
        live = self.run_id in self.state.handles and not st.finished
        t = Text()
        t.append(f"{title}  ", style="bold")
        t.append_text(fmt.state(st.outcome()))
        t.append("  live" if live else f"  ({replayed})" if self.run_id not in self.state.handles else "",
                 style="dim")
        t.append("\n")
        t.append_text(counts)
        if st.current_task and not st.finished:
            t.append(f"· {step}: {st.current_task}", style="dim")
        if live:
            t.append("  · c: cancel", style="dim")
        problem = st.problem()
        if problem:
            t.append(f"\n{problem}", style="red")
        update_static(self.query_one("#run-summary", Static), t)
        done, total = st.progress()
        self.query_one(ProgressBar).update(total=total or None, progress=done)

    def _show_output(self, st: RunState | InfraState) -> None:
        log = self.query_one(Log)
        lines = st.search(self.search)
        marker = (len(lines), st.events, self.search)
        if marker == getattr(self, "_out_marker", None):
            return
        self._out_marker = marker
        log.clear()
        if st.dropped_lines and not self.search:
            log.write_line(f"… {st.dropped_lines} earlier lines dropped (the artifact folder keeps them all)")
        log.write_lines(lines[-2000:])

    @on(Input.Submitted, "#run-search")
    def _search(self, event: Input.Submitted) -> None:
        event.stop()
        self.search = event.value.strip()
        if self.run is not None:
            self._show_output(self.run)

    @on(FilterableTable.Selected, "#hosts")
    def _host(self, event: FilterableTable.Selected) -> None:
        self.app.push_screen(HostTasksScreen(self.run_id, event.key))

    def action_cancel_run(self) -> None:
        self.mf.request_cancel(self.run_id)

    def host_under_cursor(self) -> str | None:
        host = self.query_one("#hosts", FilterableTable).cursor_key
        return host if host and host not in CONTROLLER_HOSTS else None

    def action_logs(self) -> None:
        host = self.host_under_cursor()
        if host is None:
            self.notify("put the cursor on a node in the hosts table for its log", severity="warning")
            return
        run = self.mf.run_info(self.run_id)
        self.mf.open_logs(host, run.model if run is not None else None)

    def action_shell(self) -> None:
        host = self.host_under_cursor()
        if host is None:
            self.notify("put the cursor on a node in the hosts table for a shell", severity="warning")
        else:
            self.mf.open_shell(host)

    def copy_value(self) -> str | None:
        """The host under the cursor in the hosts table, else the run id."""
        table = self.focused_table()
        if table is not None and table.id == "hosts" and table.cursor_key:
            return table.cursor_key
        return self.run_id


class HostTasksScreen(ViewScreen):
    kinds = ("live",)

    def __init__(self, run_id: str, host: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.host = host
        self.crumb = host

    def body(self) -> ComposeResult:
        with TiledHorizontal(classes="split"):
            yield FilterableTable(["#", "play", "task", "status", "message"], id="tasks")
            with VerticalScroll(classes="detail"):
                yield Static(id="task-result")

    def action_logs(self) -> None:
        run = self.mf.run_info(self.run_id)
        self.mf.open_logs(self.host, run.model if run is not None else None)

    def action_shell(self) -> None:
        self.mf.open_shell(self.host)

    def copy_value(self) -> str | None:
        """The task result under the cursor (as the detail pane shows it)."""
        st = self.state.live.get(self.run_id)
        hs = st.hosts.get(self.host) if st else None
        key = self.query_one(FilterableTable).cursor_key
        if hs is None or key is None or not key.isdigit() or int(key) >= len(hs.tasks):
            return self.host
        return hs.tasks[int(key)].result

    def refresh_view(self) -> None:
        st = self.state.live.get(self.run_id)
        hs = st.hosts.get(self.host) if st else None
        if hs is None:
            return
        self.query_one(FilterableTable).set_rows([
            Row(str(i), (str(i + 1), r.play[:24], r.task[:48], fmt.state(r.status), r.msg[:60]))
            for i, r in enumerate(hs.tasks)])

    @on(FilterableTable.Highlighted)
    def _show(self, event: FilterableTable.Highlighted) -> None:
        st = self.state.live.get(self.run_id)
        hs = st.hosts.get(self.host) if st else None
        if hs is None or not event.key.isdigit() or int(event.key) >= len(hs.tasks):
            return
        r = hs.tasks[int(event.key)]
        t = Text(f"{r.task}\n", style="bold")
        t.append_text(fmt.state(r.status))
        t.append(f"  play: {r.play}\n\n{r.result}\n")
        update_static(self.query_one("#task-result", Static), t)


