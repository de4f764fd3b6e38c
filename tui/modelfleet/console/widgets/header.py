"""The console header: breadcrumbs on the left, the current context (registry, inventory, ledger) below."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widgets import Static

from modelfleet.console.widgets.quiet_update import update_static


class ContextHeader(Static):
    """Two lines: ``modelfleet > Models > credit-risk  [READ-ONLY]`` with the views' keys after it (the current
    one bold), and the context."""

    DEFAULT_CSS = """
    ContextHeader { height: 2; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.crumbs: list[str] = []
        self.context: dict[str, str] = {}
        self.read_only = False
        self.status = ""
        self.views: list[tuple[str, str, bool]] = []  # (key, view name, current)

    def show(self, crumbs: Sequence[str] | None = None, context: Mapping[str, str] | None = None,
             read_only: bool | None = None, status: str | None = None,
             views: Sequence[tuple[str, str, bool]] | None = None) -> None:
        if crumbs is not None:
            self.crumbs = list(crumbs)
        if context is not None:
            self.context = dict(context)
        if read_only is not None:
            self.read_only = read_only
        if status is not None:
            self.status = status
        if views is not None:
            self.views = list(views)
        update_static(self, self.render_text())  # (a fixed height: no layout pass; nothing when the same)

    def render_text(self) -> Text:
        line = Text()
        line.append("modelfleet", style="bold")
        for c in self.crumbs:
            line.append(" > ", style="dim")
            line.append(c, style="bold cyan")
        if self.read_only:
            line.append("  [READ-ONLY]", style="bold yellow")
        if self.status:
            line.append("  " + self.status, style="dim")
        if self.views:
            line.append("    ")
            for i, (key, name, current) in enumerate(self.views):
                line.append("  " if i else "")
                line.append(key, style="bold" if current else "dim")
                line.append(f" {name}", style="bold cyan" if current else "dim")
        line.append("\n")
        first = True
        for key in ("registry", "inventory", "ledger"):
            if key in self.context:
                if not first:
                    line.append("  │  ", style="dim")
                line.append(f"{key} ", style="dim")
                line.append(self.context[key])
                first = False
        return line
