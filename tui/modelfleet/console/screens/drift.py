"""Drift and latency: every model version's verdicts, and a drill-down that draws them.

``DriftScreen`` (``7``, ``:drift``): one row per model version served in the fleet, from the last monitoring pass
(``ConsoleState.monitor``, a ``core.monitor_view.MonitorView``): dataset drift, the drifted features, groups whose
positive share moved, the latency SLO verdict with fleet p50/p95/p99, error rate, requests/s, nodes whose latency
regressed; INSUFFICIENT_DATA where the window is too small to decide. Enter opens ``DriftDetailScreen``: the
scope (the fleet, or one node), the feature table (test, statistic, threshold, p-value, effect, rows, verdict),
and pictures (widgets/drift_pictures.py) of the selected feature's reference vs live bins, of each group's positive
share with its interval, and of p95 over the refreshes, fleet and per node.

The screens only draw: the pass runs in its own child process (app.refresh_monitor -> services.monitor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from modelfleet.console import fmt
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.widgets.drift_pictures import distribution, group_intervals, latency_history
from modelfleet.console.widgets.filterable_table import FilterableTable, Row
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.console.widgets.tiled import TiledHorizontal

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.drift_verdict import DriftReport, FeatureResult
    from modelfleet.core.fleet_status import NodeStatus
    from modelfleet.core.monitor import Scope, VersionStatus
    from modelfleet.core.monitor_view import MonitorView

VERSION_COLUMNS: list[tuple[str, int]] = [
    ("model@version", 20), ("nodes", 5), ("dataset drift", 17), ("drifted features", 18), ("groups", 14),
    ("latency", 17), ("p50 ms", 6), ("p95 ms", 6), ("p99 ms", 6), ("err %", 6), ("req/s", 6), ("regressed", 12)]
SCOPE_COLUMNS: list[tuple[str, int]] = [("scope", 12), ("rows", 6), ("drift", 13), ("latency", 12), ("p95 ms", 6)]
FEATURE_COLUMNS: list[tuple[str, int]] = [
    ("feature", 16), ("test", 13), ("statistic", 9), ("threshold", 9), ("p-value", 8), ("effect", 6), ("rows", 6),
    ("verdict", 17)]
GROUPS_WIDTH = 66  # (the side pane at 160 columns: 45% less its border and padding)
HISTORY_BARS = 30
TREND_BARS = 60
FLEET = "*"  # the scope key of the fleet's merged window
PREDICTION_KEY = "<prediction>"  # (core.drift_verdict.PREDICTION: the predictions' own FeatureResult)


def drift_cell(scope: Scope | None, *, short: bool = False) -> Text:
    """The dataset verdict of a scope, with how many features drift when some do."""
    if scope is None:
        return fmt.verdict(None)
    d = scope.drift
    if d is None:
        return fmt.verdict(fmt.UNAVAILABLE)
    decided = [f for f in d.features if f.verdict != "INSUFFICIENT_DATA" and not f.ignored]
    suffix = f" {len(d.drifted)}/{len(decided)}" if d.drifted else ""
    style = "bold yellow" if d.drifted and d.verdict == "NO_DRIFT" else None
    return fmt.verdict(d.verdict, short=short, suffix=suffix, style=style)


def node_drift_cell(monitor: MonitorView | None, status: NodeStatus, *, failed: bool = False) -> Text:
    """A node's drift verdict for the fleet view: its own window's dataset verdict in the last monitoring pass;
    ``unavailable`` when the pass has none for it (no profile, no counts, not read) or no pass could be made;
    ``…`` before the first pass."""
    if status.model is None:
        return Text("-", style="dim")
    if monitor is None:
        return fmt.verdict(fmt.UNAVAILABLE if failed else None)
    scope = monitor.node_scope(status.name)
    return drift_cell(scope, short=True) if scope is not None else fmt.verdict(fmt.UNAVAILABLE)


def drift_tally(monitor: MonitorView | None, statuses: Sequence[NodeStatus], error: str | None = None) -> Text:
    """``drift on nodes: 1 DRIFT · 4 no drift · 1 unavailable`` (the fleet view's summary), why there is none, or
    nothing yet."""
    t = Text()
    if monitor is None:
        if error:
            t.append(f"\ndrift unavailable: {error}", style="red")
        return t
    counts: dict[str, int] = {}
    for s in statuses:
        if s.model is None:
            continue
        scope = monitor.node_scope(s.name)
        verdict = fmt.UNAVAILABLE if scope is None or scope.drift is None else scope.drift.verdict
        counts[verdict] = counts.get(verdict, 0) + 1
    t.append(f"\ndrift on nodes (window {_duration(monitor.status.window_s)}): ", style="dim")
    order = ("DRIFT", "NO_DRIFT", "INSUFFICIENT_DATA", fmt.UNAVAILABLE)
    parts = [fmt.verdict(v, style=fmt.VERDICT_STYLE[v]) for v in order if counts.get(v)]
    for i, v in enumerate(v for v in order if counts.get(v)):
        t.append(f"{' · ' if i else ''}{counts[v]} ")
        t.append_text(parts[i])
    t.append(" · 7: drift view", style="dim")
    return t


def groups_cell(report: DriftReport | None) -> Text:
    if report is None or not report.groups:
        return Text("-", style="dim")
    shifted = report.shifted_groups
    if shifted:
        return Text("SHIFT " + ",".join(shifted), style="bold red")
    if all(g.verdict == "INSUFFICIENT_DATA" for g in report.groups):
        return fmt.verdict("INSUFFICIENT_DATA", short=True)
    return fmt.verdict("OK", suffix=f" ({sum(1 for g in report.groups if g.verdict == 'OK')})")


def names_cell(names: Sequence[str], width: int, style: str = "yellow") -> Text:
    """As many names as fit in ``width``, then ``+N`` for the others; ``-`` for none."""
    if not names:
        return Text("-", style="dim")
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        candidate = ", ".join([*shown, name]) + (f" +{rest}" if rest else "")
        if len(candidate) > width and shown:
            break
        shown.append(name)
    more = len(names) - len(shown)
    return Text(", ".join(shown) + (f" +{more}" if more else ""), style=style)


def _budget(scope: Scope, quantile: str) -> float | None:
    return scope.latency.budgets_ms.get(quantile)


def version_rows(versions: tuple[VersionStatus, ...]) -> list[Row]:
    rows = []
    for v in versions:
        f = v.fleet
        lat = f.latency
        drifted = f.drift.drifted if f.drift is not None else ()
        rows.append(Row(f"{v.model}@{v.version}", (
            f"{v.model}@{v.version}", str(len(f.nodes)), drift_cell(f), names_cell(drifted, 18),
            groups_cell(f.drift), fmt.verdict(lat.verdict), fmt.ms(lat.p50_ms, _budget(f, "p50")),
            fmt.ms(lat.p95_ms, _budget(f, "p95")), fmt.ms(lat.p99_ms, _budget(f, "p99")),
            fmt.pct(f.error_rate, warn=0.01), fmt.rate(f.rps),
            names_cell(f.regressed, 12, style="bold red"))))
    return rows


class DriftScreen(ViewScreen):
    crumb = "Drift & latency"
    kinds = ("monitor",)

    def body(self) -> ComposeResult:
        yield Static(id="drift-summary", classes="summary")
        yield FilterableTable(VERSION_COLUMNS, id="drift-versions")
        yield Static(id="drift-trend", classes="notes")
        yield Static(id="drift-notes", classes="notes")

    def on_view_shown(self) -> None:
        if self.state.monitor is None:
            self.mf.refresh_monitor()

    def reload(self) -> None:
        self.mf.refresh_monitor()

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        key = self.query_one(FilterableTable).cursor_key if row else None
        if key:
            model, version = _split(key)
            return {"model": model, "ref": version}
        return {}

    def refresh_view(self) -> None:
        view = self.state.monitor
        summary = self.query_one("#drift-summary", Static)
        notes = self.query_one("#drift-notes", Static)
        if view is None:
            update_static(summary, self.state.monitor_error or "reading every agent's counters…")
            update_static(notes, "")
            return
        status = view.status
        breaches = status.breaches
        text = Text(f"{len(status.versions)} model version{'s' if len(status.versions) != 1 else ''} · ")
        drifting = sum(1 for v in status.versions if v.fleet.drift is not None and v.fleet.drift.verdict == "DRIFT")
        text.append(f"{drifting} with dataset drift", style="bold red" if drifting else "green")
        text.append(" · ")
        text.append(f"{len(breaches)} breach{'es' if len(breaches) != 1 else ''}",
                    style="bold red" if breaches else "green")
        if status.unreachable:
            text.append(f" · {len(status.unreachable)} node(s) not read", style="bold yellow")
        text.append(f" · window {_duration(status.window_s)} · source {status.source} · pass at "
                    f"{fmt.when(status.at)[11:]} UTC · Enter: details", style="dim")
        if self.state.monitor_error:
            text.append(f"\n{self.state.monitor_error}", style="red")
        update_static(summary, text)
        table = self.query_one(FilterableTable)
        table.set_rows(version_rows(status.versions))
        self._show_trend(table.cursor_key)
        update_static(notes, _notes(view.status))

    def _show_trend(self, key: str | None) -> None:
        """p95 over the refreshes of the highlighted version, its fleet and each of its nodes."""
        view = self.state.monitor
        trend = self.query_one("#drift-trend", Static)
        v = None if view is None or key is None else view.version(*_split(key))
        if view is None or v is None:
            update_static(trend, "")
            return
        text = Text(f"{v.model}@{v.version} · ", style="bold")
        text.append_text(latency_history(view.history_of(v.model, v.version), v.fleet.latency.budgets_ms.get("p95"),
                                         width=TREND_BARS))
        update_static(trend, text)

    @on(FilterableTable.Highlighted)
    def _highlighted(self, event: FilterableTable.Highlighted) -> None:
        self._show_trend(event.key)

    @on(FilterableTable.Selected)
    def _open(self, event: FilterableTable.Selected) -> None:
        self.app.push_screen(DriftDetailScreen(*_split(event.key)))


def _split(key: str) -> tuple[str, str]:
    """``model@version`` (a row key) -> (model, version)."""
    model, _, version = key.rpartition("@")
    return model, version


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _notes(status: Any) -> Text:
    t = Text()
    for b in status.breaches[:8]:
        t.append("BREACH ", style="bold red")
        t.append(f"{b.kind}: {b.summary}\n")
    if len(status.breaches) > 8:
        t.append(f"… {len(status.breaches) - 8} more breaches (modelfleet status)\n", style="dim")
    for node, reason in sorted(status.unreachable.items())[:4]:
        t.append(f"not read: {node}: {reason}\n", style="yellow")
    for v in status.versions:
        for reason in v.fleet.partial[:2]:
            t.append(f"partial: {reason}\n", style="dim")
    for note in status.notes[:2]:
        t.append(f"{note}\n", style="dim")
    return t


class DriftDetailScreen(ViewScreen):
    """One model version: the scope (fleet or a node), its features, and the pictures of the selected feature."""

    kinds = ("monitor",)

    def __init__(self, model: str, version: str) -> None:
        super().__init__()
        self.model = model
        self.version = version
        self.crumb = f"{model}@{version}"
        self.scope_key = FLEET
        self.feature: str | None = None  # None: the first drifting feature, else the first

    def body(self) -> ComposeResult:
        yield Static(id="drift-detail-summary", classes="summary")
        with TiledHorizontal(id="drift-tables"):
            yield FilterableTable(SCOPE_COLUMNS, id="drift-scopes")
            yield FilterableTable(FEATURE_COLUMNS, id="drift-features")
        with TiledHorizontal(classes="split"):
            with VerticalScroll(id="drift-picture-pane", classes="detail-left"):
                yield Static(id="drift-picture")
            with VerticalScroll(id="drift-side", classes="detail"):
                yield Static(id="drift-groups")
                yield Static(id="drift-history")

    def on_mount(self) -> None:  # (after ViewScreen.on_mount: Textual calls each class's handler)
        self.query_one("#drift-features", FilterableTable).table.focus()

    def reload(self) -> None:
        self.mf.refresh_monitor()

    def context_for_run(self, row: bool = True) -> dict[str, Any]:
        """The version drilled into (``:deploy`` too: the view is about it); the scope only from a key."""
        out: dict[str, Any] = {"model": self.model, "ref": self.version}
        if row and self.scope_key != FLEET:
            out["target"] = self.scope_key
        return out

    def _version(self) -> VersionStatus | None:
        view = self.state.monitor
        return None if view is None else view.version(self.model, self.version)

    def _scope(self, v: VersionStatus) -> Scope:
        return v.nodes.get(self.scope_key) or v.fleet

    def refresh_view(self) -> None:
        summary = self.query_one("#drift-detail-summary", Static)
        v = self._version()
        scopes = self.query_one("#drift-scopes", FilterableTable)
        features = self.query_one("#drift-features", FilterableTable)
        if v is None:
            waiting = self.state.monitor is None
            update_static(summary, self.state.monitor_error or (
                "reading every agent's counters…" if waiting else
                f"{self.crumb}: no agent serves this version in the last pass (r: read again)"))
            scopes.set_rows([])
            features.set_rows([])
            self._draw_pictures(None, None)
            return
        if self.scope_key != FLEET and self.scope_key not in v.nodes:
            self.scope_key = FLEET
        scope = self._scope(v)
        update_static(summary, self._summary(v, scope))
        scope_rows = [self._scope_row(FLEET, f"fleet ({len(v.fleet.nodes)})", v.fleet)]
        scope_rows += [self._scope_row(name, name, s) for name, s in sorted(v.nodes.items())]
        scopes.set_rows(scope_rows)
        d = scope.drift
        results = [] if d is None else [*d.features, *([d.prediction] if d.prediction is not None else [])]
        features.set_rows([self._feature_row(r) for r in results])
        keys = [self._feature_key(r) for r in results]
        if self.feature not in keys:
            drifting = [self._feature_key(r) for r in results if r.verdict == "DRIFT"]
            self.feature = next(iter(drifting or keys), None)
            if self.feature is not None:
                features.select_key(self.feature)
        self._draw_pictures(v, scope)

    @staticmethod
    def _feature_key(r: FeatureResult) -> str:
        return PREDICTION_KEY if r.feature.startswith("<") else r.feature

    def _summary(self, v: VersionStatus, scope: Scope) -> Text:
        w = scope.window
        n = len(scope.nodes)
        where = f"fleet ({n} node{'s' if n != 1 else ''})" if self.scope_key == FLEET else self.scope_key
        t = Text()
        t.append(f"{self.crumb} · {where} · ", style="bold")
        t.append(f"window {w.seconds:.0f}s · {w.rows:,} rows · {w.requests:,} requests · ")
        d = scope.drift
        t.append("dataset ")
        t.append_text(drift_cell(scope))
        if d is None:
            t.append(f" ({scope.drift_note})", style="dim")
        else:
            share = "-" if d.drift_share is None else f"{d.drift_share:.2f}"
            t.append(f" (share {share}, needs {d.dataset_drift_share:g})", style="dim")
            if d.prediction is not None:
                t.append(" · predictions ")
                t.append_text(fmt.verdict(d.prediction.verdict))
        lat = scope.latency
        t.append("\nlatency ")
        t.append_text(fmt.verdict(lat.verdict))
        t.append(f" ({lat.requests:,} of {lat.min_requests} requests needed)" if lat.verdict == "INSUFFICIENT_DATA"
                 else "")
        for q in ("p50", "p95", "p99"):
            t.append(f" · {q} ")
            t.append_text(fmt.ms(getattr(lat, f"{q}_ms"), lat.budgets_ms.get(q)))
        budgets = " · ".join(f"{q} {lat.budgets_ms[q]:g}" for q in ("p50", "p95", "p99") if q in lat.budgets_ms)
        t.append(" ms")
        if budgets:
            t.append(f" (SLO {budgets} ms)", style="dim")
        t.append(" · errors ")
        t.append_text(fmt.pct(scope.error_rate, warn=0.01))
        t.append(f" · {fmt.rate(scope.rps)} req/s")
        if scope.regressed:
            t.append(f" · latency regressed on {', '.join(scope.regressed)}", style="bold red")
        if scope.partial:
            t.append(f"\npartial: {scope.partial[0]}" + (f" (+{len(scope.partial) - 1} more)"
                                                          if len(scope.partial) > 1 else ""), style="yellow")
        return t

    @staticmethod
    def _scope_row(key: str, label: str, s: Scope) -> Row:
        lat = s.latency
        return Row(key, (label, f"{s.window.rows:,}", drift_cell(s, short=True),
                         fmt.verdict(lat.verdict, short=True), fmt.ms(lat.p95_ms, lat.budgets_ms.get("p95"))))

    def _feature_row(self, r: FeatureResult) -> Row:
        effect = Text("-" if r.effect is None else f"{r.effect:.3g}",
                      style="bold" if r.effect is not None and r.effect >= r.effect_threshold else "")
        p = Text("-" if r.p_value is None else f"{r.p_value:.2g}",
                 style="bold" if r.p_value is not None and r.p_value < r.alpha else "")
        name = "predictions" if r.feature.startswith("<") else r.feature
        verdict = fmt.verdict(r.verdict, suffix=" (ignored)" if r.ignored else "")
        return Row(self._feature_key(r), (name, r.test, "-" if r.statistic is None else f"{r.statistic:.4g}",
                                          f"{r.threshold:.4g}", p, effect, f"{r.rows:,}", verdict))

    def _draw_pictures(self, v: VersionStatus | None, scope: Scope | None) -> None:
        picture = self.query_one("#drift-picture", Static)
        groups = self.query_one("#drift-groups", Static)
        history = self.query_one("#drift-history", Static)
        if v is None or scope is None:
            for w in (picture, groups, history):
                update_static(w, "")
            return
        d = scope.drift
        result = None
        if d is not None:
            result = next((r for r in (*d.features, *([d.prediction] if d.prediction else []))
                           if self._feature_key(r) == self.feature), None)
        if result is None:
            update_static(picture, Text(f"drift: {scope.drift_note or 'no feature selected'}", style="dim"))
        else:
            update_static(picture, distribution(result))
        update_static(groups, group_intervals(d, width=GROUPS_WIDTH) if d is not None else Text(""))
        view = self.state.monitor
        assert view is not None
        hist = latency_history(view.history_of(self.model, self.version), scope.latency.budgets_ms.get("p95"),
                               selected=None if self.scope_key == FLEET else self.scope_key, width=HISTORY_BARS)
        update_static(history, Text("\n").join([Text(""), hist]))

    @on(FilterableTable.Highlighted, "#drift-scopes")
    def _scope_highlighted(self, event: FilterableTable.Highlighted) -> None:
        if event.key != self.scope_key:
            self.scope_key = event.key
            self.refresh_view()

    @on(FilterableTable.Highlighted, "#drift-features")
    def _feature_highlighted(self, event: FilterableTable.Highlighted) -> None:
        if event.key != self.feature:
            self.feature = event.key
            v = self._version()
            self._draw_pictures(v, None if v is None else self._scope(v))

    @on(FilterableTable.Selected, "#drift-scopes")
    def _scope_selected(self, event: FilterableTable.Selected) -> None:
        self.query_one("#drift-features", FilterableTable).table.focus()
