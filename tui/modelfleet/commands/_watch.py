"""``--watch`` for read-only commands (``health``, ``sim status``, ``status``): redraw every ``--interval`` seconds.

On a terminal the block is redrawn in place under a header (``Every 2s: modelfleet health  <time>``), as
``watch(1)`` does; when stdout is not a terminal (a pipe, a log file) successive blocks are printed one after
the other, each under its header, so ``modelfleet health --watch | tee health.log`` keeps a history (with
``--json``, one JSON document per refresh: ``jq`` reads such a stream as it comes). Ctrl-C ends the watch with
exit 0; the exit code of each refresh is not the watch's (a watched health check that fails keeps watching).

A configuration or usage error on the first refresh ends the watch with its usual exit code; an error on a later
refresh (a ledger briefly locked, a registry that went away) is shown in that refresh's block, and the next
refresh tries again. Standard library only: the watched command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from modelfleet.core.errors import EXIT_OK, ModelfleetError, UsageError

DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.1
Handler = Callable[[argparse.Namespace, Any], int]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not MIN_INTERVAL_S <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text} must be between {MIN_INTERVAL_S:g} and 86400 seconds")
    return value


def add_watch_arguments(parser: argparse.ArgumentParser, *, default: str = f"{DEFAULT_INTERVAL_S:g}") -> None:
    """``-w/--watch`` and ``--interval``; ``default`` says in the help what the interval is without ``--interval``."""
    parser.add_argument("-w", "--watch", action="store_true",
                        help="refresh every --interval seconds until Ctrl-C (exit 0); without a terminal, print "
                             "one block per refresh")
    parser.add_argument("--interval", type=_seconds, metavar="SECONDS",
                        help=f"seconds between refreshes with --watch (default {default})")


def watched(handler: Handler, *, default_interval: Callable[[Any], float] | None = None) -> Handler:
    """``handler`` once, or (with ``--watch``) again every ``--interval`` seconds; without ``--interval``, every
    ``default_interval(settings)`` seconds (a command whose natural pace is configured) or DEFAULT_INTERVAL_S."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace, settings: Any) -> int:
        if not args.watch:
            if args.interval is not None:
                raise UsageError("--interval only applies with --watch", hint="add --watch, or drop --interval")
            return handler(args, settings)
        title = shlex.join(["modelfleet", *sys.argv[1:]]) if sys.argv[1:] else "modelfleet"
        interval = args.interval
        if interval is None:
            interval = default_interval(settings) if default_interval is not None else DEFAULT_INTERVAL_S
        return watch(lambda: handler(args, settings), interval_s=interval, title=title)

    return run


def watch(render: Callable[[], int], *, interval_s: float, title: str, stream: TextIO | None = None,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Call ``render`` (which prints to stdout) every ``interval_s`` seconds until KeyboardInterrupt; return 0."""
    out = stream or sys.stdout
    tty = out.isatty()
    refreshes = 0
    try:
        while True:
            started = time.monotonic()
            block = io.StringIO()
            with contextlib.redirect_stdout(block):
                try:
                    render()
                except ModelfleetError as exc:
                    if refreshes == 0:
                        raise
                    block.write(f"modelfleet: {exc.message} (trying again in {interval_s:g}s)\n")
            header = f"Every {interval_s:g}s: {title}    {datetime.now():%Y-%m-%d %H:%M:%S}"
            if tty:  # redraw in place: home, each line cleared to its end, the rest of the screen cleared
                lines = [header, "", *block.getvalue().splitlines()]
                out.write(("\x1b[2J" if refreshes == 0 else "") + "\x1b[H"
                          + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
            else:
                out.write(("\n" if refreshes else "") + header + "\n" + block.getvalue())
            out.flush()
            refreshes += 1
            sleep(max(0.0, interval_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        out.write("\n" if tty else "")
        out.flush()
        return EXIT_OK
