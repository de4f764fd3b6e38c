"""The console's key table, without importing Textual: the CLI validates ``[console.keys]`` before the app starts.

``KEYMAP``: binding id -> (default keys, action, description, shown in the key bar). Override any of them with
``[console.keys]`` in modelfleet.toml (``fleet = "f2"``, ``filter = "slash,ctrl+f"``) or MODELFLEET_CONSOLE_KEYS.
The views' keys come from the view registry (``console/views.py``); ``HELP`` says what each binding does (key
help, command palette). ``screen_action('x')`` bindings exist only on screens that have an ``action_x``: the key
bar and the palette show them there and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelfleet.console.views import VIEWS
from modelfleet.core.errors import ConfigError

KEYMAP: dict[str, tuple[str, str, str, bool]] = {
    "command": ("colon", "screen_action('command')", ":cmd", True),
    **{v.name: (v.key, f"view('{v.name}')", v.name, True) for v in VIEWS},
    "filter": ("slash", "screen_action('filter')", "filter", True),
    "back": ("escape", "go_back", "back", True),
    "help": ("question_mark", "help", "help", True),
    "refresh": ("r", "refresh", "refresh", True),
    "new_run": ("n", "run_form('')", "run…", True),
    "deploy": ("d", "run_form('deploy')", "deploy…", True),
    "healthcheck": ("h", "run_form('healthcheck')", "health…", True),
    "cancel_run": ("c", "screen_action('cancel_run')", "cancel run…", True),
    "verify": ("v", "screen_action('verify')", "verify", True),
    "logs": ("l", "screen_action('logs')", "logs", True),
    "shell": ("s", "screen_action('shell')", "shell", True),
    "copy": ("y", "screen_action('copy')", "copy", True),
    "close": ("q", "close", "quit", True),
    "quit": ("ctrl+q", "quit", "quit", False),
}

#: Keys of one view (bindings of its screen, shown first in its key bar), remappable like KEYMAP's: binding id ->
#: (default keys, the screen's action, description, shown). Every one changes something: disabled in read-only mode.
VIEW_KEYMAP: dict[str, tuple[str, str, str, bool]] = {
    "plan": ("p", "plan", "plan…", True),
    "apply": ("a", "apply", "apply plan…", True),
    "destroy": ("x", "destroy", "destroy…", True),
    "approve": ("a", "approve", "approve…", True),
    "reject": ("x", "reject", "reject…", True),
}
#: view (mode) -> the ids of its own keys
VIEW_KEYS = {"infra": ("plan", "apply", "destroy"), "approvals": ("approve", "reject")}

HELP: dict[str, str] = {
    "command": "command line: a view (:fleet, :runs ...), a run form (:deploy, :health, :rollback, :provision), "
               ":help, :q",
    **{v.name: v.help for v in VIEWS},
    "filter": "filter the table: every word must match, !word excludes; Esc closes, Esc again clears",
    "back": "back: close a filter, else leave the drill-down",
    "help": "every key and command",
    "refresh": "load the current view again",
    "new_run": "the run form (deploy, rollback, health check, provision), prefilled from the current view",
    "deploy": "the deploy form, prefilled with the model, version and target under the cursor",
    "healthcheck": "the health-check form, targeting the node under the cursor (else the whole fleet)",
    "cancel_run": "cancel the live run: holds it while you decide, then stops it or lets it go on",
    "verify": "recompute the ledger's hash chain",
    "logs": "stream the agent's log from the node under the cursor, over the inventory's SSH (follow, search, "
            "wrap)",
    "shell": "an ssh shell on the node under the cursor (the inventory's user, port and key); exit returns here",
    "copy": "copy the selected row's key (node, run id, model/version) or the shown command (OSC 52)",
    "close": "quit from a view's root; back from a drill-down",
    "quit": "quit from anywhere",
}

# ``:`` words that open the run form for a kind ("" lets the form ask)
RUN_COMMANDS = {"deploy": "deploy", "health": "healthcheck", "healthcheck": "healthcheck",
                "health-check": "healthcheck", "rollback": "rollback", "provision": "provision", "run": ""}
QUIT_COMMANDS = ("q", "q!", "quit", "exit")
HELP_COMMANDS = ("help", "h", "?")
# what the command line completes (Tab / right arrow)
COMMAND_WORDS = [*(v.name for v in VIEWS), "deploy", "health", "rollback", "provision", "help", "quit"]

# Disabled in read-only mode: not in the key bar or the palette; pressing the key says why nothing happens.
READ_ONLY_DISABLED = frozenset({"new_run", "deploy", "healthcheck", "cancel_run", "shell"})


def check_keys(overrides: Mapping[str, str] | None) -> dict[str, str]:
    """The remapped keys, or ConfigError (exit 2) naming the first unknown binding id or empty key list."""
    keys = dict(overrides or {})
    unknown = sorted(set(keys) - set(KEYMAP) - set(VIEW_KEYMAP))
    if unknown:
        raise ConfigError(f"[console.keys] has unknown action {unknown[0]!r}",
                          hint=f"use one of: {', '.join([*KEYMAP, *VIEW_KEYMAP])}")
    for bid, value in keys.items():
        if not isinstance(value, str) or not [k for k in value.split(",") if k.strip()]:
            raise ConfigError(f"[console.keys] {bid} = {value!r} names no key",
                              hint='e.g. fleet = "f2" or filter = "slash,ctrl+f"')
    return {bid: ",".join(k.strip() for k in value.split(",") if k.strip()) for bid, value in keys.items()}
