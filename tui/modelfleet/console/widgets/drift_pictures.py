"""Pictures of the monitoring verdicts, so that people see a shift instead of reading it.

* :func:`distribution`: one feature's reference and live shares per bin, as a shape strip (the whole distribution
  at a glance: mass moving right is a numeric shift) and as side-by-side bars per bin with the change in points;
  a categorical feature's ``new`` bin (categories never seen in the reference) stands out;
* :func:`group_intervals`: each group's positive share, reference and live, as intervals on one common axis (the
  Wilson intervals the verdict used); a shifted group's intervals sit apart;
* :func:`latency_history`: p95 per refresh interval, fleet and per node, on one scale, against the SLO budget.

Pure functions of core's verdict objects (:mod:`modelfleet.core.drift_verdict`, :mod:`modelfleet.core.monitor_view`)
returning Rich ``Text`` (plain characters and colour: readable in tmux and in snapshot tests); the drift screen shows
them in ``Static`` widgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from modelfleet.console import fmt
from modelfleet.console.widgets.sparkline import BARS, spark

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.drift_verdict import DriftReport, FeatureResult, GroupResult
    from modelfleet.core.monitor_view import VersionHistory

EIGHTHS = " ▏▎▍▌▋▊▉"
REFERENCE_STYLE = "cyan"
NOW_STYLE = "yellow"
NEW_BIN = "new"  # the categorical bin of categories never seen in the reference (core/drift.py)
MAX_BIN_ROWS = 24


def hbar(value: float, top: float, width: int) -> str:
    """A horizontal bar of ``value`` on a scale of ``top`` in ``width`` cells, to an eighth of a cell; any value
    above zero shows at least a sliver (a new category at 0.3 % must be seen)."""
    if top <= 0 or value <= 0:
        return " " * width
    eighths = max(1, round(min(value / top, 1.0) * width * 8))
    full, rest = divmod(eighths, 8)
    bar = "█" * full + (EIGHTHS[rest] if rest else "")
    return bar.ljust(width)


def shape(shares: tuple[float, ...], top: float, cells: int = 2) -> str:
    """``cells`` characters per bin, their height the share (scaled to ``top``): the distribution at a glance."""
    out = []
    for v in shares:
        bar = " " if v <= 0 or top <= 0 else BARS[min(len(BARS) - 1, max(0, round(v / top * (len(BARS) - 1))))]
        out.append(bar * cells)
    return "".join(out)


def _pct(value: float) -> str:
    return f"{value * 100:5.1f}%"


def _num(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def rule(result: FeatureResult) -> Text:
    """Why the feature has its verdict: the test and its threshold, the significance and the effect."""
    t = Text()
    if result.verdict == "INSUFFICIENT_DATA":
        t.append(f"{result.rows} rows: too few to decide", style="yellow")
        return t
    t.append(f"{result.test} {_num(result.statistic, '.4g')}")
    t.append(f" (threshold {_num(result.threshold, '.4g')})", style="dim")
    significant = result.p_value is not None and result.p_value < result.alpha
    t.append(" · p ")
    t.append(_num(result.p_value), style="bold" if significant else "")
    t.append(f" {'<' if significant else '≥'} {result.alpha:g}", style="dim")
    large = result.effect is not None and result.effect >= result.effect_threshold
    t.append(f" · {result.effect_test} ")
    t.append(_num(result.effect), style="bold" if large else "")
    t.append(f" {'≥' if large else '<'} {result.effect_threshold:g}", style="dim")
    return t


def distribution(result: FeatureResult, width: int = 78) -> Text:
    """Reference vs live shares of ``result``'s bins: shape strips, then one line per bin with both bars."""
    name = "predictions" if result.feature.startswith("<") else result.feature
    t = Text()
    t.append(f"{name}", style="bold")
    t.append(f"  {result.kind}  ")
    t.append_text(fmt.verdict(result.verdict))
    if result.ignored:
        t.append("  (ignored by the policy)", style="dim")
    t.append("\n")
    t.append_text(rule(result))
    t.append(f"\n{result.rows:,} rows now · {result.reference_rows:,} in the reference", style="dim")
    if result.unseen_share:
        t.append(" · ")
        t.append(f"{result.unseen_share * 100:.1f}% new categories", style="bold magenta")
    t.append("\n\n")
    ref, now = result.reference_shares, result.current_shares
    if not result.bins or (not any(ref) and not any(now)):
        t.append("no counts to draw\n", style="dim")
        return t
    top = max(max(ref, default=0.0), max(now, default=0.0))
    cells = 2 if 2 * len(ref) <= width - 21 else 1
    t.append("shape      reference ", style="dim")
    t.append(shape(ref, top, cells), style=REFERENCE_STYLE)
    t.append("\n           now       ", style="dim")
    t.append(shape(now, top, cells), style=NOW_STYLE)
    t.append(f"\n           (one column per bin, {'low to high' if result.kind == 'numeric' else 'bin order'})\n\n",
             style="dim")
    label_w = 18
    bar_w = max(4, (width - label_w - 2 * 8 - 9) // 2)
    t.append(f"{'bin':<{label_w}} ", style="bold")
    t.append(f"{'reference':<{bar_w + 8}}", style=f"bold {REFERENCE_STYLE}")
    t.append(f"{'now':<{bar_w + 8}}", style=f"bold {NOW_STYLE}")
    t.append("change\n", style="bold")
    rows = [(label, r, n) for label, r, n in zip(result.bins, ref, now, strict=True) if r > 0 or n > 0]
    hidden = len(result.bins) - len(rows)
    if len(rows) > MAX_BIN_ROWS:  # many categories: the largest changes, in bin order, and always the new ones
        keep = {label for label, r, n in sorted(rows, key=lambda x: -abs(x[2] - x[1]))[:MAX_BIN_ROWS]}
        keep.add(NEW_BIN)
        hidden += len(rows) - len([r for r in rows if r[0] in keep])
        rows = [r for r in rows if r[0] in keep]
    for label, r, n in rows:
        new = result.kind == "categorical" and label == NEW_BIN
        shown = label if len(label) <= label_w else label[: label_w - 1] + "…"
        t.append(f"{shown:<{label_w}} ", style="bold magenta" if new else "")
        t.append(_pct(r) + " ")
        t.append(hbar(r, top, bar_w) + " ", style=REFERENCE_STYLE)
        t.append(_pct(n) + " ")
        t.append(hbar(n, top, bar_w) + " ", style="bold magenta" if new else NOW_STYLE)
        change = (n - r) * 100
        t.append(f"{change:+6.1f}", style="bold" if abs(change) >= 5 else "dim" if abs(change) < 1 else "")
        if new and n > 0:
            t.append("  never in the reference", style="bold magenta")
        t.append("\n")
    if hidden:
        t.append(f"({hidden} bin{'s' if hidden != 1 else ''} empty in both, or smaller changes, not shown)\n",
                 style="dim")
    t.append("change: points of share, now minus reference\n", style="dim")
    return t


def _axis(lo: float, hi: float) -> tuple[float, float]:
    """A readable axis around [lo, hi]: widened to steps of 0.05, inside [0, 1]."""
    step = 0.05
    a = max(0.0, (int(lo / step)) * step)
    b = min(1.0, (int(hi / step) + 1) * step)
    if b - a < step:
        b = min(1.0, a + step)
        a = max(0.0, b - step)
    return a, b


def _interval_line(interval: tuple[float, float] | None, point: float | None, a: float, b: float,
                   width: int) -> str:
    cells = [" "] * width

    def pos(x: float) -> int:
        return min(width - 1, max(0, round((x - a) / (b - a) * (width - 1))))

    if interval is not None:
        left, right = pos(interval[0]), pos(interval[1])
        for i in range(left, right + 1):
            cells[i] = "─"
        cells[left], cells[right] = ("├", "┤") if right > left else ("│", "│")
    if point is not None:
        cells[pos(point)] = "●"
    return "".join(cells)


def group_intervals(report: DriftReport, width: int = 74) -> Text:
    """Each group's positive share, reference and now, with their intervals drawn on one axis."""
    t = Text()
    if not report.groups:
        t.append("groups: ", style="bold")
        t.append(report.groups_note or "no group column in the profile", style="dim")
        t.append("\n")
        return t
    groups: tuple[GroupResult, ...] = report.groups
    confidence = groups[0].confidence
    t.append(f"share of {report.positive_class!r} per group", style="bold")
    t.append(f" · Wilson intervals at {confidence * 100:.2f}%\n", style="dim")
    ends = [x for g in groups for iv in (g.interval, g.reference_interval) if iv is not None for x in iv]
    a, b = _axis(min(ends, default=0.0), max(ends, default=1.0))
    label_w = 9
    axis_w = max(16, width - label_w - 11 - 28)
    ticks = [" "] * axis_w
    for i, text in ((0, f"{a:.2f}"), (axis_w // 2 - 2, f"{(a + b) / 2:.2f}"), (axis_w - 4, f"{b:.2f}")):
        ticks[i: i + len(text)] = list(text)
    t.append(" " * (label_w + 11) + "".join(ticks) + "\n", style="dim")
    for g in groups:
        label = g.group if len(g.group) <= label_w - 1 else g.group[: label_w - 2] + "…"
        t.append(f"{label:<{label_w}}", style="bold")
        t.append(f"ref {_num(g.reference_share, '.3f'):>5}  ", style=REFERENCE_STYLE)
        t.append(_interval_line(g.reference_interval, g.reference_share, a, b, axis_w), style=REFERENCE_STYLE)
        t.append(f"  {g.reference_rows:>6,} rows\n", style="dim")
        now_style = "bold red" if g.verdict == "SHIFT" else NOW_STYLE
        t.append(" " * label_w)
        t.append(f"now {_num(g.share, '.3f'):>5}  ", style=now_style)
        t.append(_interval_line(g.interval, g.share, a, b, axis_w), style=now_style)
        t.append(f"  {g.rows:>6,} rows ")
        t.append_text(fmt.verdict(g.verdict))
        t.append("\n")
        if g.verdict == "SHIFT" and g.difference is not None:
            t.append(" " * label_w + f"now - ref in [{g.difference[0]:+.3f}, {g.difference[1]:+.3f}]\n",
                     style="bold red")
    return t


def latency_history(history: VersionHistory, budget_ms: float | None, *, selected: str | None = None,
                    width: int = 40) -> Text:
    """p95 per refresh interval, the fleet's and each node's, on one scale (bars over the budget are red)."""
    t = Text()
    t.append("p95 per refresh interval (ms)", style="bold")
    series = [("fleet", [p.p95_ms for p in history.fleet])]
    series += [(node, [p.p95_ms for p in points]) for node, points in sorted(history.nodes.items())]
    values = [v for _name, vals in series for v in vals[-width:]]
    if not values:
        t.append("\nno interval yet: a bar per refresh from the second monitoring pass on\n", style="dim")
        return t
    top = max(values)
    t.append(f" · scale 0-{top:.1f}" + (f" · SLO {budget_ms:g}" if budget_ms is not None else "") + "\n",
             style="dim")
    name_w = max(len(name) for name, _vals in series) + 2
    for name, vals in series:
        t.append(f"{name:<{name_w}}", style="bold" if name == selected else "")
        if not vals:
            t.append("no requests in the intervals so far\n", style="dim")
            continue
        t.append_text(spark(vals, width, budget=budget_ms, top=top))
        t.append(" " * (width - min(width, len(vals))) + f"  last {vals[-1]:.1f}  max {max(vals[-width:]):.1f}\n")
    return t
