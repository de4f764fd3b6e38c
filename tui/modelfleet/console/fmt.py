"""Cell formatting shared by the views (plain text plus colour, so tmux captures stay readable)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

STATE_STYLE = {
    "ok": "green", "slo": "yellow", "unavailable": "red", "error": "red", "unreachable": "bold red",
    "stale": "magenta", "unknown": "dim",
    "changed": "yellow", "failed": "bold red", "rolled_back": "magenta", "running": "cyan", "pending": "dim",
    "skipped": "dim", "successful": "green", "canceled": "magenta", "incomplete": "magenta",
    "reverted": "bold magenta", "not_started": "magenta", "behind": "yellow",
}
STATE_LABEL = {"ok": "ok", "slo": "SLO breach", "unavailable": "unavailable", "error": "error",
               "unreachable": "UNREACHABLE", "stale": "STALE", "unknown": "…"}


# Verdicts of the monitoring loop (core/drift_verdict.py, core/latency.py) as the views show them. The names are
# core's, spelled here so that drawing a label does not import numpy and the statistics (a test checks they match);
# UNAVAILABLE is the console's: no verdict can be given (no reference profile, no counts, no answer).
UNAVAILABLE = "unavailable"
VERDICT_LABEL = {"DRIFT": "DRIFT", "NO_DRIFT": "no drift", "INSUFFICIENT_DATA": "insufficient data", "SHIFT": "SHIFT",
                 "OK": "ok", "SLO_BREACH": "SLO breach", UNAVAILABLE: "unavailable"}
VERDICT_SHORT = {"INSUFFICIENT_DATA": "insufficient"}  # in columns 12-13 wide
VERDICT_STYLE = {"DRIFT": "bold red", "NO_DRIFT": "green", "INSUFFICIENT_DATA": "yellow", "SHIFT": "bold red",
                 "OK": "green", "SLO_BREACH": "bold red", UNAVAILABLE: "dim"}


def verdict(value: str | None, *, short: bool = False, suffix: str = "", style: str | None = None) -> Text:
    """A verdict as a coloured label (``None``: not known yet)."""
    if value is None:
        return Text("…", style="dim")
    label = (VERDICT_SHORT.get(value) if short else None) or VERDICT_LABEL.get(value, value.lower())
    return Text(label + suffix, style=style or VERDICT_STYLE.get(value, ""))


def dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def state(value: str, label: str | None = None) -> Text:
    return Text(label or STATE_LABEL.get(value, value.replace("_", " ")), style=STATE_STYLE.get(value, ""))


def ms(value: float | None, budget: float | None = None) -> Text:
    if value is None:
        return Text("-", style="dim")
    text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
    if budget is None:
        return Text(text)
    return Text(text + ("!" if value > budget else ""), style="bold red" if value > budget else "green")


def pct(value: float | None, *, warn: float | None = None) -> Text:
    if value is None:
        return Text("-", style="dim")
    text = f"{value * 100:.1f}%"
    return Text(text, style="bold red" if warn is not None and value > warn else "")


def rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value / 1000:.1f}k"


def size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit != "GiB" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(max(0.0, seconds))
    if s < 2:
        return "now"
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def when(value: datetime | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
