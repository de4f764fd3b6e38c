"""Small output helpers shared by the command handlers: tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def print_json(data: Any, stream: TextIO | None = None) -> None:
    json.dump(data, stream or sys.stdout, indent=2, sort_keys=False, default=str)
    (stream or sys.stdout).write("\n")


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO | None = None
) -> None:
    """Print a plain aligned table; cells are str()-ed, None prints as '-'."""
    out = stream or sys.stdout
    text_rows = [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out.write(fmt.format(*headers).rstrip() + "\n")
    for row in text_rows:
        out.write(fmt.format(*row).rstrip() + "\n")


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays clean for --json."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
