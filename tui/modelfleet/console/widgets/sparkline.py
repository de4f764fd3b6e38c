"""A text sparkline of latency history, coloured against an SLO budget (plain characters: readable in tmux)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

BARS = "▁▂▃▄▅▆▇█"


def spark(values: Sequence[float], width: int | None = None, *, budget: float | None = None,
          top: float | None = None) -> Text:
    """One line of bars scaled from 0 to ``top`` (default max(values, budget)); bars over ``budget`` are red."""
    vals = list(values)[-width:] if width else list(values)
    out = Text()
    if not vals:
        return out
    top = top or max([*vals, budget or 0.0]) or 1.0
    for v in vals:
        idx = min(len(BARS) - 1, max(0, round(v / top * (len(BARS) - 1))))
        out.append(BARS[idx], style="red" if budget is not None and v > budget else "green")
    return out


class LatencySparkline(Static):
    """``p95 history (ms)  ▁▂▃▅▂▁  min 3.1  max 12.0  last 4.2  SLO 50``."""

    DEFAULT_CSS = "LatencySparkline { height: auto; }"

    def show(self, values: Sequence[float], budget: float | None, label: str = "p95") -> None:
        text = Text(f"{label} history (ms, one bar per refresh)\n", style="bold")
        if not values:
            text.append("no samples yet", style="dim")
        else:
            text.append_text(spark(values, 60, budget=budget))
            text.append(f"\nmin {min(values):.1f}  max {max(values):.1f}  last {values[-1]:.1f}")
            if budget is not None:
                text.append(f"  SLO {budget:g}")
        self.update(text)
