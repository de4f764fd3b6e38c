"""The command palette (Ctrl+P): every view, action and ``:`` command the current screen offers, each with its
key, found by typing part of its name (``dep``, ``health``). Built from the key table (``keys.KEYMAP``/``HELP``) and
the view registry (``views.VIEWS``), through Textual's public ``App.get_system_commands``: a view or key added
there is in the palette with nothing more to write. Sorting by each column of the focused table is listed too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from modelfleet.console.keys import HELP, KEYMAP, VIEW_KEYMAP
from modelfleet.console.views import VIEWS

if TYPE_CHECKING:  # pragma: no cover
    from textual.screen import Screen

    from modelfleet.console.app import ModelfleetApp

TITLES = {
    **{v.name: f"{v.title} view" for v in VIEWS},
    "command": "Command line", "filter": "Filter the table", "back": "Back", "help": "Help: every key and command",
    "refresh": "Refresh", "new_run": "New run…", "deploy": "Deploy…", "healthcheck": "Health check…",
    "cancel_run": "Cancel the run…", "verify": "Verify the ledger", "logs": "Logs of the node",
    "shell": "Shell on the node", "copy": "Copy", "quit": "Quit",
    "plan": "Terraform plan…", "apply": "Apply the saved plan…", "destroy": "Destroy the environment…",
    "approve": "Approve the request…", "reject": "Reject the request…",
}
NOT_IN_PALETTE = {"close"}  # q: the palette's "Quit" says it (with Ctrl+Q)
KEYLESS_RUNS = (("rollback", "Rollback…", "the rollback form: back to each node's previous release, or a version"),
                ("provision", "Provision…", "the provision form: runtime and agent on the target nodes"))
_SCREEN_ACTION = re.compile(r"screen_action\('(\w+)'\)")


def screen_action(action: str) -> str | None:
    """``logs`` for ``screen_action('logs')``: an action that exists only on screens with ``action_logs``."""
    found = _SCREEN_ACTION.fullmatch(action)
    return found[1] if found else None


def console_commands(app: ModelfleetApp, screen: Screen[object]) -> Iterator[SystemCommand]:
    for bid, (_keys, action, description, _show) in KEYMAP.items():
        if bid in NOT_IN_PALETTE or not app.offers(bid, screen):
            continue
        keys = app.key_labels(bid) + ([":" + bid] if bid in {v.name for v in VIEWS} else [])
        yield SystemCommand(f"{TITLES.get(bid, description)}  ({', '.join(keys)})", HELP.get(bid, description),
                            partial(app.run_action, action))
    if not app.read_only:  # (the run forms and a view's own keys are disabled in read-only mode)
        for bid, (_keys, action, description, _show) in VIEW_KEYMAP.items():
            if hasattr(screen, f"action_{action}"):
                yield SystemCommand(f"{TITLES.get(bid, description)}  ({', '.join(app.key_labels(bid))})",
                                    description, partial(screen.run_action, action))
        for kind, title, text in KEYLESS_RUNS:
            yield SystemCommand(f"{title}  (:{kind})", text, partial(app.action_run_form, kind))
    from modelfleet.console.screens.base import ViewScreen

    table = screen.focused_table() if isinstance(screen, ViewScreen) else None
    if table is not None:
        for index, (label, letter) in enumerate(zip(table.labels, table.letters, strict=True)):
            if letter is not None:
                yield SystemCommand(f"Sort by {label}  (Shift+{letter.upper()})",
                                    "sort the table by this column; again to reverse", partial(table.sort_by, index))
