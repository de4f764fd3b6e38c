"""The key help screen: every binding (after config overrides) and the ``:`` commands."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

COMMAND_HELP = [
    (":models  :m", "models and their versions"),
    (":fleet  :f", "every node, latency vs SLO, health"),
    (":runs  :r", "past and live runs"),
    (":ledger  :l", "deployment ledger and its integrity"),
    (":infra  :i", "Terraform environments: plan, apply the saved plan, destroy"),
    (":approvals  :a", "approval requests: approve or reject within your roles"),
    (":deploy / :health / :rollback / :provision", "open the run form for that kind"),
    (":help", "this screen"),
    (":q  :quit", "leave the console"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table(title="keys", expand=True, show_edge=False)
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("action")
        for key, desc in self.keys:
            table.add_row(key, desc)
        table.add_row("enter", "drill down / open")
        table.add_row("tab / shift+tab", "move between panes and fields")
        cmds = Table(title="commands", expand=True, show_edge=False)
        cmds.add_column("command", style="bold cyan")
        cmds.add_column("what")
        for c, d in COMMAND_HELP:
            cmds.add_row(c, d)
        with VerticalScroll(id="help-box"):
            yield Static("modelfleet console — keys (remap them in modelfleet.toml [console.keys])", classes="title")
            yield Static(table)
            yield Static(cmds)
            yield Static("Esc closes this help.", classes="dim")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
