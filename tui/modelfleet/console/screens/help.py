"""The key help screen: every binding (after config overrides) and the ``:`` commands (views from the registry)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from modelfleet.console.views import VIEWS

COMMAND_HELP = [
    *(("  ".join(f":{w}" for w in v.words), v.help) for v in VIEWS),
    (":deploy / :health / :rollback / :provision", "the run form for that kind (the row under the cursor is not "
                                                   "the target: the form says what is)"),
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
        table.add_row("shift+letter", "sort the table by the column whose letter is underlined; again: reverse")
        table.add_row("ctrl+p", "command palette: every view, key and command, found by name")
        table.add_row("tab / shift+tab", "move between panes and fields")
        table.add_row("f / w", "logs: follow on/off, wrap on/off")
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
