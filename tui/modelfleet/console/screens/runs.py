"""Runs: every run, launched here or elsewhere, newest first (ledger + artifact folders, replayable), and the
typed run form."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select, Static, Switch

from modelfleet.console import fmt
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.services import NEEDS_MODEL, RUN_KINDS, RunForm, RunInfo
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal
from modelfleet.core.errors import ModelfleetError
from modelfleet.core.fleet import Inventory

KIND_LABELS = {"deploy": "deploy", "rollback": "rollback", "healthcheck": "health-check", "provision": "provision",
               "infra_plan": "terraform plan", "infra_apply": "terraform apply", "infra_init": "terraform init"}
RUN_COLUMNS = [("run", 23), ("kind", 15), ("model", 16), ("version", 7), ("target", 16), ("started (UTC)", 16),
               ("outcome", 10), ("actor", 15), ("replay", 6)]


def merged_runs(ledger_runs: list[RunInfo] | None, launched: dict[str, RunInfo]) -> list[RunInfo]:
    """One list, newest first: the ledger's runs, and runs launched here the ledger does not show yet."""
    out = {r.run_id: r for r in ledger_runs or []}
    for run_id, info in launched.items():
        out.setdefault(run_id, info)
    return sorted(out.values(), key=lambda r: (r.started or 0.0, r.run_id), reverse=True)


class RunsScreen(ViewScreen):
    crumb = "Runs"
    kinds = ("runs", "live")
    follows_ledger = True

    def body(self) -> ComposeResult:
        yield Static(id="runs-summary", classes="summary")
        yield FilterableTable(RUN_COLUMNS, id="runs")

    def on_view_shown(self) -> None:
        self.mf.load_runs()

    def reload(self) -> None:
        self.mf.load_runs()

    def outcome(self, run: RunInfo) -> str:
        """One vocabulary (ok, failed, incomplete; running while it runs here): the live fold for runs of this
        session, the ledger's run_end for the others."""
        st = self.state.live.get(run.run_id)
        if st is not None and run.run_id in self.state.handles:
            return st.outcome() if st.finished else "running"
        return run.outcome

    def refresh_view(self) -> None:
        runs = merged_runs(self.state.runs, self.state.launched)
        rows: list[Row] = []
        running = 0
        for r in runs:
            outcome = self.outcome(r)
            running += outcome == "running"
            here = r.run_id in self.state.handles
            rows.append(Row(r.run_id, (r.run_id, KIND_LABELS.get(r.kind, r.kind), fmt.dash(r.model),
                                       fmt.dash(r.version), fmt.dash(r.target), fmt.when(r.started),
                                       fmt.state(outcome), fmt.dash(r.actor),
                                       "live" if here and outcome == "running" else "yes" if r.replayable or here
                                       else "-")))
        text = "loading runs…" if self.state.runs is None and not rows else f"{len(rows)} runs, newest first"
        if running:
            text += f" · {running} running"
        text += " · n: new run · Enter: open (live, or replayed from its artifacts)"
        if self.mf.read_only:
            text += " · read-only: launching is disabled"
        update_static(self.query_one("#runs-summary", Static), text)
        self.query_one(FilterableTable).set_rows(rows)

    @on(FilterableTable.Selected)
    def _open(self, event: FilterableTable.Selected) -> None:
        self.mf.open_run(event.key)


def target_note(target: str, inventory: Inventory | None) -> Text:
    """What a target selects, in words: ``1 node: edge-arm-02``, ``6 nodes: every node in the inventory``."""
    if inventory is None:
        return Text("reading the inventory…", style="dim")
    try:
        nodes = [n.name for n in inventory.select(target.strip() or None)]
    except ModelfleetError as exc:
        return Text(f"✘ {exc.message}", style="bold red")
    if not nodes:
        return Text(f"✘ {target!r} selects no node", style="bold red")
    if len(nodes) == 1:
        return Text(f"→ 1 node: {nodes[0]}", style="bold")
    if len(nodes) == len(inventory):
        return Text(f"→ {len(nodes)} nodes: every node in the inventory", style="bold")
    shown = ", ".join(nodes[:6]) + (f", … ({len(nodes) - 6} more)" if len(nodes) > 6 else "")
    return Text(f"→ {len(nodes)} nodes: {shown}", style="bold")


# which fields each kind of run has (the others are hidden)
FIELDS = {"model": NEEDS_MODEL, "ref": NEEDS_MODEL, "waves": ("deploy",), "max_fail": ("deploy",),
          "check": ("deploy", "rollback", "provision")}
REF_LABELS = {"deploy": "version or alias (pinned to a fixed version + digest before launch)",
              "rollback": "roll back to version (blank: each node's previous release)"}
DEFAULT_REF = {"deploy": "champion", "rollback": ""}


class RunFormScreen(ViewScreen):
    """The typed run form. Launch = pin the version (once), show the exact commands, confirm, start.

    Fields start with values from where it was opened (the model, the version, the node under the cursor); the
    target says what it selects; only the fields of the chosen kind are shown; placeholders describe, never
    look like a value."""

    crumb = "new run"
    kinds = ("pin", "inventory")
    BINDINGS = [Binding("ctrl+r", "launch", "launch…"), Binding("ctrl+o", "preview", "pin + preview")]

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.defaults = defaults or {}
        self.pinned: tuple[str, str | None, int, str] | None = None  # (model, ref, version, digest)
        self.kind = str(self.defaults.get("kind", "deploy"))

    def body(self) -> ComposeResult:
        d = self.defaults
        s = self.mf.settings
        models = [m.name for m in self.state.models or []]
        with TiledHorizontal(classes="split"):
            with VerticalScroll(id="run-form", classes="form"):
                yield Label("kind")
                yield Select([(KIND_LABELS[k], k) for k in RUN_KINDS], value=self.kind, allow_blank=False,
                             id="kind")
                with Vertical(id="f-model", classes="field"):
                    yield Label("model")
                    yield Input(d.get("model", ""), placeholder="a registered model's name (required)", id="model",
                                suggester=SuggestFromList(models, case_sensitive=True) if models else None)
                with Vertical(id="f-ref", classes="field"):
                    yield Label(REF_LABELS.get(self.kind, ""), id="ref-label")
                    yield Input(str(d.get("ref", DEFAULT_REF.get(self.kind, ""))),
                                placeholder="a version number or an alias", id="ref")
                with Vertical(id="f-target", classes="field"):
                    yield Label("target: inventory groups, node names or an Ansible --limit pattern")
                    yield Input(d.get("target", "edge"), placeholder="group, node names or a --limit pattern",
                                id="target")
                    yield Static(id="target-note")
                with Vertical(id="f-waves", classes="field"):
                    yield Label("waves (serial): hosts per wave, one after the other")
                    yield Input(d.get("waves", s.deploy.waves if s else "1,25%,100%"), id="waves")
                with Vertical(id="f-max_fail", classes="field"):
                    yield Label("failure budget (% of hosts per wave)")
                    yield Input(str(d.get("max_fail", s.deploy.max_fail_percentage if s else 20)), id="max_fail",
                                type="integer")
                with Horizontal(id="f-check", classes="switch-row field"):
                    yield Switch(bool(d.get("check", False)), id="check")
                    yield Label("check mode (dry run)")
                with Horizontal(classes="buttons"):
                    yield Button("Preview", id="preview")
                    yield Button("Launch…", id="launch", variant="warning", disabled=self.mf.read_only)
            with Vertical(id="run-preview", classes="detail"):
                yield Static(id="preview-text")

    def on_mount(self) -> None:
        super().on_mount()
        self._show_fields()
        self.query_one("#kind", Select).focus()
        if self.state.inventory is None:
            self.mf.load_inventory()
        self.show_preview()

    def _show_fields(self) -> None:
        for name, kinds in FIELDS.items():
            self.query_one(f"#f-{name}").display = self.kind in kinds
        self.query_one("#ref-label", Label).update(REF_LABELS.get(self.kind, ""))

    def request(self) -> RunForm:
        def val(i: str) -> str:
            return self.query_one(f"#{i}", Input).value.strip()

        kind = self.kind
        try:
            max_fail = int(val("max_fail") or "0")
        except ValueError:
            max_fail = -1
        uses = {name for name, kinds in FIELDS.items() if kind in kinds}
        model = (val("model") or None) if "model" in uses else None
        ref = (val("ref") or None) if "ref" in uses else None
        version: int | None = None
        digest: str | None = None
        if kind == "deploy" and self.pinned and self.pinned[:2] == (model, ref):
            version, digest = self.pinned[2], self.pinned[3]
        elif kind == "rollback" and ref and ref.isdigit():
            version = int(ref)
        s = self.mf.settings
        return RunForm(kind, model=model, ref=ref, target=val("target"),
                       waves=val("waves") if "waves" in uses else (s.deploy.waves if s else "1,25%,100%"),
                       max_fail=max_fail if "max_fail" in uses else 20,
                       check=self.query_one("#check", Switch).value and "check" in uses,
                       version=version, digest=digest)

    @on(Select.Changed, "#kind")
    def _kind(self, event: Select.Changed) -> None:
        before, self.kind = self.kind, str(event.value)
        ref = self.query_one("#ref", Input)
        if ref.value.strip() == DEFAULT_REF.get(before, ""):  # untouched: the new kind's default
            ref.value = DEFAULT_REF.get(self.kind, "")
        self._show_fields()
        self.show_preview()

    @on(Input.Changed)
    @on(Switch.Changed)
    def _changed(self, event: Any) -> None:
        self.show_preview()

    def show_preview(self) -> None:
        req = self.request()
        update_static(self.query_one("#target-note", Static), target_note(req.target, self.state.inventory))
        t = Text()
        try:
            req.validate()
            error = None
        except ModelfleetError as exc:
            error = exc.message + (f" ({exc.hint})" if exc.hint else "")
        t.append("equivalent commands\n\n", style="bold")
        t.append("$ " + RunForm.shell(req.cli_command()) + "\n\n")
        t.append("$ " + RunForm.shell(req.playbook_command(self.mf.inventory_arg, self.mf.settings)) + "\n\n")
        if req.kind == "deploy" and req.model:
            if req.version is not None:
                t.append(f"pinned: {req.model} {req.ref or ''} → v{req.version}  sha256:{(req.digest or '')[:12]}\n",
                         style="bold green")
            else:
                t.append(f"{req.model_ref} will be resolved and pinned to a fixed version + digest before launch "
                         "(Ctrl+O: now)\n", style="dim")
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

    def copy_value(self) -> str | None:
        """The ``modelfleet`` command this form amounts to."""
        return RunForm.shell(self.request().cli_command())

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
