"""The console's key table, without importing Textual: the CLI validates ``[console.keys]`` before the app starts.

``KEYMAP``: binding id -> (default keys, action, description, shown in the footer). Override any of them with
``[console.keys]`` in modelfleet.toml (``fleet = "f2"``, ``filter = "slash,ctrl+f"``) or MODELFLEET_CONSOLE_KEYS.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelfleet.core.errors import ConfigError

KEYMAP: dict[str, tuple[str, str, str, bool]] = {
    "command": ("colon", "screen_action('command')", ":cmd", True),
    "models": ("1", "view('models')", "models", True),
    "fleet": ("2", "view('fleet')", "fleet", True),
    "runs": ("3", "view('runs')", "runs", True),
    "ledger": ("4", "view('ledger')", "ledger", True),
    "infra": ("5", "view('infra')", "infra", True),
    "approvals": ("6", "view('approvals')", "approvals", True),
    "drift": ("7", "view('drift')", "drift", True),
    "filter": ("slash", "screen_action('filter')", "filter", True),
    "back": ("escape", "go_back", "back", True),
    "help": ("question_mark", "help", "help", True),
    "refresh": ("r", "refresh", "refresh", True),
    "new_run": ("n", "run_form('')", "new run…", True),
    "deploy": ("d", "run_form('deploy')", "deploy…", True),
    "healthcheck": ("h", "run_form('healthcheck')", "health-check…", True),
    "cancel_run": ("c", "screen_action('cancel_run')", "cancel run…", True),
    "verify": ("v", "screen_action('verify')", "verify ledger", True),
    "quit": ("ctrl+q", "quit", "quit", True),
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
