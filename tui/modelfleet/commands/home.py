"""``modelfleet`` with no command: open the operator console on the configured registry, inventory and ledger."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelfleet.core.errors import EXIT_OK, UsageError


def run(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.console.keys import check_keys

    check_keys(settings.console.keys)  # a bad [console.keys] is a configuration error (exit 2), terminal or not
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("the console needs an interactive terminal (not a TTY); for scripts use "
                         "`modelfleet sim status`, `modelfleet registry list` or `modelfleet ledger list`")
    from modelfleet.console.app import ModelfleetApp

    read_only = True if getattr(args, "read_only", False) else None
    ModelfleetApp(settings, read_only=read_only).run()
    return EXIT_OK
