"""Runs: past runs (ledger + artifact folders, replayable) and the typed run form."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static, Switch

from modelfleet.console import fmt
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.services import RUN_KINDS, RunForm
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal
from modelfleet.core.errors import ModelfleetError

KIND_LABELS = {"deploy": "deploy", "rollback": "rollback", "healthcheck": "health-check", "provision": "provision",
               "infra_plan": "terraform plan", "infra_apply": "terraform apply", "infra_init": "terraform init"}


class RunsScreen(ViewScreen):
    crumb = "Runs"
    kinds = ("runs", "live")

    def body(self) -> ComposeResult:
        yield Static(id="runs-summary", classes="summary")
        yield FilterableTable(["run", "kind", "model", "version", "target", "started", "outcome", "replay"],
                              id="runs")

    def on_view_shown(self) -> None:
        self.mf.load_runs()

    def refresh_view(self) -> None:
        runs = self.state.runs
        summary = self.query_one("#runs-summary", Static)
        live = [r for r in self.state.live.values() if not r.finished]
        rows: list[Row] = []
        seen: set[str] = set()
        for st in self.state.live.values():
            if st.run_id in self.state.handles:
                seen.add(st.run_id)
                rows.append(Row(st.run_id, (st.run_id, KIND_LABELS.get(st.kind, st.kind), "-", "-", "-", "this session",
                                            fmt.state(st.status), "live")))
        for r in runs or []:
            if r.run_id in seen:
                continue
            rows.append(Row(r.run_id, (r.run_id, KIND_LABELS.get(r.kind, r.kind), fmt.dash(r.model),
                                       fmt.dash(r.version), fmt.dash(r.target), fmt.when(r.started),
                                       fmt.state(r.outcome), "yes" if r.replayable else "-")))
        text = "loading runs…" if runs is None else f"{len(rows)} runs"
        if live:
            text += f" · {len(live)} running"
        text += " · n: new run · Enter: open (live or replay from artifacts)"
        if self.mf.read_only:
            text += " · read-only: launching is disabled"
        update_static(summary, text)
        self.query_one(FilterableTable).set_rows(rows)

    @on(FilterableTable.Selected)
    def _open(self, event: FilterableTable.Selected) -> None:
        self.mf.open_run(event.key)


class RunFormScreen(ViewScreen):
    """The typed run form. Launch = pin the version (once), show the exact commands, confirm, start."""

    crumb = "new run"
    kinds = ("pin",)
    BINDINGS = [Binding("ctrl+r", "launch", "launch…"), Binding("ctrl+o", "preview", "pin + preview")]

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.defaults = defaults or {}
        self.pinned: tuple[str, str | None, int, str] | None = None  # (model, ref, version, digest)

    def body(self) -> ComposeResult:
        d = self.defaults
        s = self.mf.settings
        with TiledHorizontal(classes="split"):
            with VerticalScroll(id="run-form", classes="form"):
                yield Label("kind")
                yield Select([(KIND_LABELS[k], k) for k in RUN_KINDS], value=d.get("kind", "deploy"),
                             allow_blank=False, id="kind")
                yield Label("model")
                yield Input(d.get("model", ""), placeholder="credit-risk", id="model")
                yield Label("version or alias (pinned before launch)")
                yield Input(str(d.get("ref", "champion")), placeholder="7, champion, latest", id="ref")
                yield Label("target group or limit")
                yield Input(d.get("target", "edge"), placeholder="edge, edge_cpu, staging, node names", id="target")
                yield Label("waves (serial)")
                yield Input(d.get("waves", s.deploy.waves if s else "1,25%,100%"), id="waves")
                yield Label("failure budget (% of hosts per wave)")
                yield Input(str(d.get("max_fail", s.deploy.max_fail_percentage if s else 20)), id="max_fail",
                            type="integer")
                with Horizontal(classes="switch-row"):
                    yield Switch(bool(d.get("check", False)), id="check")
                    yield Label("check mode (dry run)")
                with Horizontal(classes="buttons"):
                    yield Button("Preview", id="preview")
                    yield Button("Launch…", id="launch", variant="warning", disabled=self.mf.read_only)
            with Vertical(id="run-preview", classes="detail"):
                yield Static(id="preview-text")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#kind", Select).focus()
        self.show_preview()

    def request(self) -> RunForm:
        def val(i: str) -> str:
            return self.query_one(f"#{i}", Input).value.strip()

        kind = str(self.query_one("#kind", Select).value)
        try:
            max_fail = int(val("max_fail") or "0")
        except ValueError:
            max_fail = -1
        model = val("model") or None
        ref = val("ref") or None
        version: int | None = None
        digest: str | None = None
        if kind == "deploy" and self.pinned and self.pinned[:2] == (model, ref):
            version, digest = self.pinned[2], self.pinned[3]
        elif kind == "rollback" and ref and ref.isdigit():
            version = int(ref)
        return RunForm(kind, model=model, ref=ref, target=val("target"),
                          waves=val("waves"), max_fail=max_fail, check=self.query_one("#check", Switch).value,
                          version=version, digest=digest)

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _changed(self, event: Any) -> None:
        self.show_preview()

    def show_preview(self) -> None:
        req = self.request()
        t = Text()
        try:
            req.validate()
            error = None
        except ModelfleetError as exc:
            error = exc.message
        t.append("equivalent commands\n\n", style="bold")
        t.append("$ " + RunForm.shell(req.cli_command()) + "\n\n")
        t.append("$ " + RunForm.shell(req.playbook_command(self.mf.inventory_arg, self.mf.settings)) + "\n\n")
        if req.kind == "deploy" and req.model:
            if req.version is not None:
                t.append(f"pinned: {req.model} {req.ref or ''} → v{req.version}  sha256:{(req.digest or '')[:12]}\n",
                         style="bold green")
            else:
                t.append(f"{req.model_ref} will be resolved and pinned to a fixed version + digest before launch\n",
                         style="dim")
        if error:
            t.append(f"\n✘ {error}\n", style="bold red")
        if self.mf.read_only:
            t.append("\nread-only mode: launching is disabled\n", style="bold yellow")
        update_static(self.query_one("#preview-text", Static), t)

    def refresh_view(self) -> None:
        self.show_preview()

    def pinned_now(self, model: str, ref: str | None, version: int, digest: str) -> None:
        self.pinned = (model, ref, version, digest)
        self.show_preview()

    def action_preview(self) -> None:
        self._preview()

    def action_launch(self) -> None:
        self._launch()

    @on(Button.Pressed, "#preview")
    def _preview(self) -> None:
        req = self.request()
        if req.kind == "deploy" and req.model and req.version is None:
            self.mf.pin_for_form(self, req.model, req.ref)
        self.show_preview()

    @on(Button.Pressed, "#launch")
    def _launch(self) -> None:
        self.mf.request_launch(self)
