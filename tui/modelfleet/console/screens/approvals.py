"""Approvals: every approval request (pending first), who may decide, and approve / reject as the current user.

Who acts is the person whose private key this user holds (``core/identity.py``); the decision is signed, recorded
in the ledger and mirrored to MLflow tags by ``core/governance.decide`` (``app.request_decision``), after a typed
confirmation naming the request.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from modelfleet.console import fmt
from modelfleet.console.governance_services import ApprovalRow
from modelfleet.console.screens.base import ViewScreen, view_bindings
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal

STATUS_STYLE = {"pending": "yellow", "approved": "green", "rejected": "bold red", "expired": "magenta",
                "invalid": "bold red"}


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


class ApprovalsScreen(ViewScreen):
    BINDINGS = view_bindings("approvals")
    crumb = "Approvals"
    kinds = ("approvals",)

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None

    def body(self) -> ComposeResult:
        yield Static(id="approvals-summary", classes="summary")
        with TiledHorizontal(classes="split"):
            yield FilterableTable([("request", 8), ("status", 8), ("model", 15), ("env", 6), ("needs", 11),
                                   ("you", 16), ("requested by", 12), ("approved by", 22)], id="approvals")
            with VerticalScroll(classes="detail"):
                yield Static(id="approval-detail")

    def on_view_shown(self) -> None:
        if self.state.approvals is None:
            self.mf.load_approvals()

    def reload(self) -> None:
        self.mf.load_approvals()

    def refresh_view(self) -> None:
        data = self.state.approvals
        summary = self.query_one("#approvals-summary", Static)
        if data is None:
            update_static(summary, self.state.errors.get("approvals") or "reading approval requests…")
            return
        pending = sum(1 for r in data.rows if r.view.status == "pending")
        t = Text(f"{pending} pending of {len(data.rows)} request{'s' if len(data.rows) != 1 else ''} · ")
        who = data.who
        if who.name is None:
            t.append(f"no identity: {who.problem}", style="bold yellow")
        else:
            t.append("you are ")
            t.append(who.name, style="bold")
            t.append(f" ({', '.join(who.roles)}) · a: approve · x: reject", style="dim")
        if data.protected:
            t.append(" · protected: " + ", ".join(f"{e} needs {'+'.join(r)}" for e, r in data.protected.items()),
                     style="dim")
        if self.mf.read_only:
            t.append(" · read-only: deciding is disabled", style="bold yellow")
        update_static(summary, t)
        rows = []
        for row in data.rows:
            d = row.view.to_dict()
            rows.append(Row(row.view.id, (
                row.view.id, _status(row.view.status), f"{d['model']}/{d['version']}", fmt.dash(d["environment"]),
                ", ".join(d["missing_roles"]) if row.view.status == "pending" else "-",
                Text(row.you, style="bold green" if row.may_decide else "dim"), fmt.dash(d["requested_by"]),
                ", ".join(f"{a['name']} ({a['role']})" for a in d["approved_by"]) or "-")))
        self.query_one(FilterableTable).set_rows(rows)
        if (self.current is None or self.row(self.current) is None) and rows:
            self.current = rows[0].key
        self.show_detail()

    def row(self, key: str | None) -> ApprovalRow | None:
        data = self.state.approvals
        return next((r for r in data.rows if r.view.id == key), None) if data is not None and key else None

    @on(FilterableTable.Highlighted)
    def _highlight(self, event: FilterableTable.Highlighted) -> None:
        self.current = event.key
        self.show_detail()

    def show_detail(self) -> None:
        row = self.row(self.current)
        update_static(self.query_one("#approval-detail", Static), describe_request(row) if row else "")

    def _decide(self, decision: str) -> None:
        row = self.row(self.current)
        if row is None:
            self.mf.notify("no request selected", severity="warning")
        elif not row.may_decide:
            self.mf.notify(f"you cannot decide on request {row.view.id}: {row.you}", severity="warning")
        else:
            self.mf.request_decision(row, decision)

    def action_approve(self) -> None:
        self._decide("approve")

    def action_reject(self) -> None:
        self._decide("reject")


def describe_request(row: ApprovalRow) -> Text:
    """The detail pane and the body of the decision's confirmation."""
    d: dict[str, Any] = row.view.to_dict()
    t = Text()
    t.append(f"request {d['id']}  ", style="bold")
    t.append_text(_status(d["status"]))
    t.append(f"\n{d['model']}/{d['version']} for {d['environment']}\n"
             f"digest      {d['digest']}\nthresholds  {d['thresholds_sha256'] or 'none'}\n"
             f"requested   by {d['requested_by']} at {d['requested_at']} (ledger #{d['ledger_seq']})\n"
             f"reason      {d['reason'] or '-'}\n")
    if d["problem"]:
        t.append(f"\n✘ {d['problem']}\n", style="bold red")
    t.append("\napprovals\n", style="bold")
    for a in d["approved_by"]:
        t.append(f"  ✔ {a['name']} ({a['role']})\n", style="green")
    if d["status"] == "pending" and d["missing_roles"]:
        t.append(f"  needs {', '.join(d['missing_roles'])}\n", style="yellow")
    if d["rejected_by"]:
        t.append(f"  ✘ rejected by {d['rejected_by']}\n", style="bold red")
    if d["expires_at"]:
        t.append(f"  valid until {d['expires_at']}\n", style="dim")
    for note in d["not_counted"]:
        t.append(f"  not counted: {note}\n", style="dim")
    if d["decisions"]:
        t.append("\ndecisions\n", style="bold")
        for dec in d["decisions"]:
            t.append(f"  {dec['at']}  {dec['by']}: {dec['decision']}" + (f" ({dec['reason']})" if dec["reason"]
                                                                        else "") + "\n")
    if d["status"] == "pending":
        t.append("\ngate  ", style="bold")
        if row.gate_problem:
            t.append(f"{row.gate_problem}\n  (an approval attests a passed gate: it would be refused)\n",
                     style="yellow")
        else:
            t.append("passed under the current policy\n", style="green")
        t.append("you   ", style="bold")
        t.append(row.you + "\n", style="green" if row.may_decide else "dim")
    return t
