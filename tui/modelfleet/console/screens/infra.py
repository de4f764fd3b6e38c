"""Infrastructure: Terraform environments, the saved plan, resources and outputs; a Terraform run's live view.

Plan, apply the saved plan and destroy are runs of the one run pipeline (``app.request_infra``): they show in the
Runs list, and their live view (:class:`InfraRunScreen`) counts resources, not hosts.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Log, ProgressBar, Static

from modelfleet.console.infra_services import InfraEnvInfo
from modelfleet.console.screens.base import ViewScreen, view_bindings
from modelfleet.console.screens.run_live import RunLiveScreen
from modelfleet.console.screens.runs import KIND_LABELS
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal
from modelfleet.core.infra import SavedPlan
from modelfleet.runners.infra_state import InfraState

SYMBOLS = {"create": "+", "delete": "-", "update": "~", "replace": "-/+", "read": "<="}
RESULT_STYLE = {"created": "green", "updated": "yellow", "replaced": "yellow", "destroyed": "magenta",
                "errored": "bold red"}


def plan_counts(saved: SavedPlan | None) -> Text:
    """``+2 ~0 -1`` (add, change, destroy) of a saved plan; a destroy plan in red."""
    if saved is None:
        return Text("-", style="dim")
    plan = saved.plan_summary
    if plan.no_changes:
        return Text("no changes", style="dim")
    return Text(f"+{plan.add} ~{plan.change} -{plan.remove}", style="bold red" if saved.destroy else "")


def plan_state(env: InfraEnvInfo) -> Text:
    """What can be done with the environment's saved plan, in one cell."""
    saved = env.saved_plan
    if saved is None:
        return Text("no plan · p", style="dim")
    if saved.applied_by:
        return Text(f"applied by {saved.applied_by}", style="dim")
    if env.plan_problem:
        return Text("✘ " + env.plan_problem, style="red")
    if saved.plan_summary.no_changes:
        return Text("nothing to apply", style="green")
    return Text("DESTROY ready · a" if saved.destroy else "ready · a", style="bold red" if saved.destroy else "yellow")


class InfraScreen(ViewScreen):
    BINDINGS = view_bindings("infra")
    crumb = "Infrastructure"
    kinds = ("infra", "infra_details", "infra_inventory")

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None

    def body(self) -> ComposeResult:
        yield Static(id="infra-summary", classes="summary")
        with TiledHorizontal(classes="split"):
            yield FilterableTable([("environment", 11), ("backend", 7), ("state", 11), ("saved plan", 12),
                                   ("apply", 22), ("planned", 16)], id="infra")
            with VerticalScroll(id="infra-detail", classes="detail"):
                yield Static(id="infra-detail-text")

    def on_view_shown(self) -> None:
        if self.state.infra is None:
            self.mf.load_infra()

    def reload(self) -> None:
        self.state.infra_details.clear()
        self.mf.load_infra()

    def refresh_changed(self, kinds: set[str]) -> None:
        if "infra" in kinds:
            self.refresh_view()
        else:
            self.show_detail()

    def refresh_view(self) -> None:
        envs = self.state.infra
        summary = self.query_one("#infra-summary", Static)
        if envs is None:
            update_static(summary, self.state.errors.get("infra") or "reading Terraform environments…")
            return
        text = Text(f"{len(envs)} environment{'s' if len(envs) != 1 else ''} · ")
        text.append("p: plan · a: apply the saved plan · x: destroy · Enter/highlight: resources and outputs",
                    style="dim")
        if self.mf.read_only:
            text.append(" · read-only: plan, apply and destroy are disabled", style="bold yellow")
        update_static(summary, text)
        rows = []
        for env in envs:
            saved = env.saved_plan
            rows.append(Row(env.name, (
                env.name, env.backend, "initialised" if env.initialized else Text("new", style="dim"),
                plan_counts(saved), plan_state(env), saved.created[:16].replace("T", " ") if saved else "-")))
        self.query_one(FilterableTable).set_rows(rows)
        if (self.current is None or self.current not in {e.name for e in envs}) and envs:
            self.current = envs[0].name
        self.show_detail(load=True)

    @on(FilterableTable.Highlighted)
    def _highlight(self, event: FilterableTable.Highlighted) -> None:
        self.current = event.key
        self.show_detail(load=True)

    @on(FilterableTable.Selected)
    def _select(self, event: FilterableTable.Selected) -> None:
        self.current = event.key
        self.state.infra_details.pop(event.key, None)  # Enter: read resources and outputs again
        self.show_detail(load=True)

    def show_detail(self, *, load: bool = False) -> None:
        """The highlighted environment's detail; ``load``: read its resources and outputs if not read yet."""
        out = self.query_one("#infra-detail-text", Static)
        env = next((e for e in self.state.infra or [] if e.name == self.current), None)
        if env is None:
            update_static(out, "")
            return
        detail = self.state.infra_details.get(env.name)
        if detail is None and load:
            self.mf.load_infra_detail(env.name)
        update_static(out, describe_env(env, detail, self.state.infra_inventory.get(env.name),
                                        self.state.errors.get("infra_details")))

    def _env_action(self, action: str) -> None:
        if self.current is None:
            self.mf.notify("no environment selected", severity="warning")
            return
        self.mf.request_infra(action, self.current)

    def action_plan(self) -> None:
        self._env_action("plan")

    def action_apply(self) -> None:
        self._env_action("apply")

    def action_destroy(self) -> None:
        self._env_action("destroy")


def describe_env(env: InfraEnvInfo, detail: Any, inventory: Any, error: str | None = None) -> Text:
    """The detail pane: the saved plan resource by resource, the state's resources, outputs, nodes, inventory."""
    t = Text()
    t.append(f"{env.name}", style="bold")
    t.append(f"  {env.path} · backend {env.backend}\n", style="dim")
    saved = env.saved_plan
    t.append("\nsaved plan\n", style="bold")
    if saved is None:
        t.append("  none: p makes one\n", style="dim")
    else:
        plan = saved.plan_summary
        t.append(f"  run {saved.run_id} by {saved.actor}, {saved.created}\n  ")
        t.append(("DESTROY: " if saved.destroy else "") + plan.line() + "\n", style="bold red" if saved.destroy
                 else "bold")
        for change in plan.changes:
            if change.action != "no-op":
                t.append(f"  {SYMBOLS.get(change.action, '?'):>3} {change.address}  {change.action}\n")
        t.append("  ")
        t.append_text(plan_state(env))
        t.append(f"\n  digest {saved.digest[:23]}…\n", style="dim")
    if detail is None:
        t.append(f"\n{error}\n" if error else "\nreading resources and outputs…\n", style="red" if error else "dim")
        return t
    if detail.problem:
        t.append(f"\n{detail.problem}\n", style="yellow")
    t.append(f"\nresources in state ({len(detail.resources)})\n", style="bold")
    if not detail.resources:
        t.append("  none\n", style="dim")
    for address in detail.resources:
        t.append(f"  {address}\n")
    t.append("\noutputs\n", style="bold")
    if not detail.outputs:
        t.append("  none\n", style="dim")
    for name, value in sorted(detail.outputs.items()):
        if name == "nodes" and detail.nodes:
            t.append(f"  nodes = {len(detail.nodes)} node(s), below\n")
            continue
        t.append(f"  {name} = {json.dumps(value)[:200]}\n")
    if detail.nodes:
        t.append("\nnodes\n", style="bold")
        for n in detail.nodes:
            t.append(f"  {n.name:<14} {n.address:<15} {n.node_class.value:<4} {n.environment}\n")
    if inventory is not None:
        t.append("\ninventory\n", style="bold")
        if inventory.problem:
            t.append(f"  not written: {inventory.problem}\n", style="yellow")
        else:
            t.append(f"  {inventory.path}: {len(inventory.nodes)} node(s)\n")
            if inventory.not_in_fleet:
                t.append(f"  the Fleet view reads {inventory.fleet_inventory}, which lacks "
                         f"{', '.join(inventory.not_in_fleet)}: set fleet.inventory to {inventory.path}\n",
                         style="yellow")
            elif inventory.nodes:
                t.append("  every node is in the Fleet view\n", style="green")
    elif env.inventory is not None:
        t.append(f"\ninventory {env.inventory}\n", style="dim")
    return t


def confirmation(action: str, prepared: Any) -> tuple[str, str, str | None, str | None]:
    """(title, body, typed word, its prompt) of the confirmation before a Terraform run of the Infra view."""
    env = str(prepared.details.get("env"))
    engine = prepared.details.get("engine")
    if action == "apply":
        plan = prepared.details.get("plan") or {}
        destroy = bool(plan.get("destroy_plan"))
        lines = [f"{SYMBOLS.get(r['action'], '?'):>3} {r['address']}  {r['action']}" for r in plan.get("resources", [])]
        body = (f"{prepared.summary}\nengine: {engine}\nplan digest: {prepared.details.get('plan_digest')}\n\n"
                + "\n".join(lines[:20]) + (f"\n… {len(lines) - 20} more" if len(lines) > 20 else "")
                + f"\n\n$ modelfleet infra apply --env {env}")
        word = env if destroy else "apply"
        prompt = (f"This DESTROYS every resource of {env}. Type [b]{env}[/b] to confirm:" if destroy
                  else "Type [b]apply[/b] to apply exactly this saved plan:")
        return (f"{'DESTROY' if destroy else 'Apply'} the saved plan of {env}?", body, word, prompt)
    command = f"modelfleet infra {'destroy' if action == 'destroy' else 'plan'} --env {env}"
    after = ("\n\nNothing is destroyed yet: when the destroy plan is made, you review it and type the "
             "environment's name to apply it." if action == "destroy" else
             "\n\nA plan changes no resource; it is saved, and a (apply) applies exactly it.")
    return (f"Start {prepared.summary}?", f"engine: {engine}\n\n$ {command}{after}", None, None)


def resource_type(address: str) -> str:
    """``module.a.terraform_data.node["x"]`` -> ``terraform_data``."""
    parts = address.split("[")[0].split(".")
    return parts[-2] if len(parts) >= 2 else ""


class InfraRunScreen(RunLiveScreen):
    """A Terraform run, live or replayed: planned and applied resources, errors, the engine's output lines."""

    FOCUS_TABLE = "#resources"

    def body(self) -> ComposeResult:
        yield Static(id="run-summary", classes="summary")
        yield ProgressBar(id="run-progress", show_eta=False)
        yield FilterableTable([("resource", 48), ("type", 16), ("plan", 9), ("result", 10)], id="resources",
                              classes="run-top")
        yield Input(placeholder="search output (Enter)", id="run-search")
        yield Log(id="run-output", max_lines=2000)

    def refresh_view(self) -> None:
        st = self.run
        summary = self.query_one("#run-summary", Static)
        if not isinstance(st, InfraState):
            update_static(summary, f"loading {self.run_id}…")
            return
        live = self.run_id in self.state.handles and not st.finished
        counts = Text()
        for key, n in st.counts().items():
            counts.append(f"{n} {key}  ", style=RESULT_STYLE.get(key, ""))
        if st.drift:
            counts.append(f"{len(st.drift)} drifted outside Terraform  ", style="magenta")
        self.show_status(st, f"{KIND_LABELS.get(st.kind, st.kind or 'terraform')} {self.target()} {st.run_id}",
                         counts, step="step", replayed="replayed from its events")
        rows = []
        for address in dict.fromkeys([*st.planned, *st.applied, *st.drift]):
            result = st.applied.get(address)
            plan = st.planned.get(address) or ("drift: " + st.drift[address] if address in st.drift else "-")
            pending = "running…" if live and st.kind == "infra_apply" else "-"
            rows.append(Row(address, (address, resource_type(address), plan,
                                      Text(result, style=RESULT_STYLE.get(result, "")) if result else pending)))
        self.query_one("#resources", FilterableTable).set_rows(rows)
        self._show_output(st)

    def target(self) -> str:
        """The environment: from the live run's request, or the Runs list for a replayed one."""
        handle = self.state.handles.get(self.run_id)
        prepared = getattr(handle, "prepared", None)
        if prepared is not None:
            return str(prepared.details.get("env", ""))
        run = next((r for r in self.state.runs or [] if r.run_id == self.run_id), None)
        return run.target or "" if run is not None else ""
