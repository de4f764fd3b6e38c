"""Models -> versions: aliases, created, key metrics, where each version runs, a detail pane, alias flags."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from modelfleet.console import fmt
from modelfleet.console.governance_services import VersionGovernance
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal

PREFERRED_METRICS = ("auc", "roc_auc", "accuracy", "f1", "precision", "recall", "rmse", "mae", "r2", "log_loss")


def key_metrics(metrics: dict[str, float], n: int = 3) -> str:
    names = [m for m in PREFERRED_METRICS if m in metrics] or sorted(metrics)
    return "  ".join(f"{m} {metrics[m]:.3g}" for m in names[:n]) or "-"


class ModelsScreen(ViewScreen):
    crumb = "Models"
    kinds = ("models",)

    def body(self) -> ComposeResult:
        yield Static(id="models-summary", classes="summary")
        yield FilterableTable(["model", "latest", "aliases", "updated", "description"], id="models")

    def on_view_shown(self) -> None:
        if self.state.models is None:
            self.mf.load_models()

    def reload(self) -> None:
        self.mf.load_models()

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        model = self.query_one(FilterableTable).cursor_key if row else None
        return {"model": model} if model else {}

    def refresh_view(self) -> None:
        models = self.state.models
        summary = self.query_one("#models-summary", Static)
        if models is None:
            update_static(summary, self.state.errors.get("models") or "loading registry…")
            return
        update_static(summary, f"{len(models)} registered model{'s' if len(models) != 1 else ''} · Enter: versions")
        rows = [Row(m.name, (m.name, fmt.dash(m.latest_version and f"v{m.latest_version}"),
                             ", ".join(f"{a}→v{v}" for a, v in sorted(m.aliases.items())) or "-",
                             fmt.when(m.updated), (m.description or "").splitlines()[0][:60] if m.description else ""))
                for m in models]
        self.query_one(FilterableTable).set_rows(rows)

    @on(FilterableTable.Selected)
    def _open(self, event: FilterableTable.Selected) -> None:
        self.app.push_screen(VersionsScreen(event.key))


class VersionsScreen(ViewScreen):
    kinds = ("versions", "details", "fleet")

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self.crumb = model
        self.current: str | None = None

    def body(self) -> ComposeResult:
        yield Static(id="versions-summary", classes="summary")
        with TiledHorizontal(classes="split"):
            yield FilterableTable([("version", 7), ("aliases", 16), ("gates", 18), ("created", 16),
                                   ("key metrics", 34), ("runs on", 9), ("groups", 22), ("check", 44)],
                                  id="versions")
            with VerticalScroll(id="version-detail", classes="detail"):
                yield Static(id="version-detail-text")

    def on_view_shown(self) -> None:
        if self.model not in self.state.versions:
            self.mf.load_versions(self.model)

    def reload(self) -> None:
        self.mf.load_versions(self.model)

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        """The model, and the version under the cursor (``:deploy`` too: the view is about this model)."""
        return {"model": self.model, **({"ref": self.current} if self.current else {})}

    def copy_value(self) -> str | None:
        """``credit-risk/3``: the reference the CLI takes."""
        return f"{self.model}/{self.current}" if self.current else self.model

    def refresh_changed(self, kinds: set[str]) -> None:
        if kinds == {"details"}:  # a digest/signature arrived: only the detail pane shows it
            self.show_detail()
        else:
            self.refresh_view()

    def refresh_view(self) -> None:
        data = self.state.versions.get(self.model)
        summary = self.query_one("#versions-summary", Static)
        if data is None:
            update_static(summary, self.state.errors.get("versions") or f"loading versions of {self.model}…")
            return
        versions = data["versions"]
        places = data["placements"]
        governance = data.get("governance", {})
        flags: dict[str, str] = data["flags"]
        n_flag = len(flags)
        update_static(summary, Text.assemble(
            f"{len(versions)} versions of {self.model} · Enter/d: deploy form · ",
            (f"⚠ {n_flag} alias/fleet mismatch" if n_flag else "aliases match what runs",
             "bold yellow" if n_flag else "green")))
        rows = []
        for v in versions:
            key = str(v.version)
            p = places.get(key)
            where = "-"
            groups = "-"
            if p is not None and p.nodes:
                reported = len(p.reported_nodes)
                where = f"{len(p.nodes)} node{'s' if len(p.nodes) != 1 else ''}"
                if reported != len(p.nodes):
                    where += f" ({reported} reporting)"
                groups = ", ".join(p.groups) or "-"
            check: Text | str = ""
            if key in flags:
                check = Text("⚠ " + flags[key], style="bold yellow")
            elif p is not None and p.disagreeing:
                check = Text("⚠ ledger≠agent: " + ", ".join(p.disagreeing), style="yellow")
            rows.append(Row(key, (f"v{v.version}", ", ".join(v.aliases) or "-", gate_cell(governance.get(key)),
                                  fmt.when(v.created), key_metrics(v.metrics), where, groups, check)))
        table = self.query_one(FilterableTable)
        table.set_rows(rows)
        if self.current is None and rows:
            self.current = rows[0].key
        self.show_detail()

    @on(FilterableTable.Highlighted)
    def _highlight(self, event: FilterableTable.Highlighted) -> None:
        self.current = event.key
        self.show_detail()
        if f"{self.model}/{event.key}" not in self.state.details:
            self.mf.load_version_detail(self.model, int(event.key))

    @on(FilterableTable.Selected)
    def _select(self, event: FilterableTable.Selected) -> None:
        self.current = event.key
        self.mf.action_run_form("deploy")

    def show_detail(self) -> None:
        data = self.state.versions.get(self.model)
        out = self.query_one("#version-detail-text", Static)
        if data is None or self.current is None:
            update_static(out, "")
            return
        info = next((v for v in data["versions"] if str(v.version) == self.current), None)
        if info is None:
            update_static(out, "")
            return
        t = Text()
        t.append(f"{self.model} v{info.version}\n", style="bold")
        t.append(f"aliases  {', '.join(info.aliases) or '-'}\nstatus   {info.status or '-'}\n"
                 f"created  {fmt.when(info.created)}\nrun      {info.run_id or '-'}\n")
        detail = self.state.details.get(f"{self.model}/{info.version}")
        if detail is None:
            t.append("digest   resolving…\n", style="dim")
        elif detail.error:
            t.append(f"digest   unavailable: {detail.error}\n", style="red")
        else:
            t.append(f"digest   sha256:{detail.digest}\n")
        p = data["placements"].get(str(info.version))
        if p is not None and p.nodes:
            t.append("\nruns on\n", style="bold")
            for node in p.nodes:
                mark = "ledger+agent" if node in p.ledger_nodes and node in p.reported_nodes else (
                    "ledger only" if node in p.ledger_nodes else "agent only")
                t.append(f"  {node}  ({mark})\n")
        flag = data["flags"].get(str(info.version))
        if flag:
            t.append(f"\n⚠ {flag}\n", style="bold yellow")
        describe_governance(t, data.get("governance", {}).get(str(info.version)), data.get("governance_error"))
        for title, values in (("metrics", {k: f"{v:.4g}" for k, v in sorted(info.metrics.items())}),
                              ("parameters", dict(sorted(info.params.items()))),
                              ("tags", dict(sorted(info.tags.items())))):
            t.append(f"\n{title}\n", style="bold")
            if not values:
                t.append("  -\n", style="dim")
            for k, v in values.items():
                t.append(f"  {k} = {v}\n")
        t.append("\nsignature\n", style="bold")
        if detail is None or detail.signature is None:
            t.append("  -\n", style="dim")
        else:
            t.append(json.dumps(detail.signature, indent=1)[:1500] + "\n")
        update_static(out, t)


def gate_cell(gov: VersionGovernance | None) -> Text:
    """``‼prod prod✔ staging✘``: an open break-glass first (red), then each environment's newest gate verdict."""
    t = Text()
    if gov is None:
        return Text("-", style="dim")
    for env in dict.fromkeys(b.environment for b in gov.break_glass):
        t.append(f"‼{env} ", style="bold white on red")
    for mark in gov.gates:
        t.append(f"{mark.environment or 'any'}{'✔' if mark.verdict == 'passed' else '✘'} ",
                 style="green" if mark.verdict == "passed" else "bold red")
    return t if t.plain else Text("-", style="dim")


def describe_governance(t: Text, gov: VersionGovernance | None, error: str | None) -> None:
    """The detail pane's governance part: gate verdicts, approval state, open break-glass deploys."""
    t.append("\ngovernance\n", style="bold")
    if error:
        t.append(f"  unavailable: {error}\n", style="yellow")
    if gov is None:
        t.append("  no gate verdict yet (modelfleet gate MODEL/VERSION --env ENV)\n", style="dim")
        return
    for b in gov.break_glass:
        t.append(f"  ‼ BREAK-GLASS OPEN on {b.environment}: {b.actor}, {fmt.when(b.when)}, ledger #{b.seq}: "
                 f"{b.reason}; approvals are due after the fact\n", style="bold red")
    for mark in gov.gates:
        t.append(f"  gate {mark.environment or 'any':<9} ")
        t.append(mark.verdict, style="green" if mark.verdict == "passed" else "bold red")
        source = f"ledger #{mark.seq}, {fmt.when(mark.when)}" if mark.seq is not None else "MLflow tag"
        t.append(f"  ({source})" + (f" failed: {', '.join(mark.failed)}" if mark.failed else "") + "\n")
    for env, status in sorted(gov.approvals.items()):
        t.append(f"  approval {env:<5} {status}\n", style="green" if status == "approved" else "")
