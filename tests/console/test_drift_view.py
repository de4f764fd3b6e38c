"""The Drift and latency view (``7``, ``:drift``) and the fleet view's drift column, on a monitoring pass computed by
the real core code from synthetic counts (tests/console/monitor_data.py): verdicts per model version, the drill-down's
feature table, the pictures of reference vs live bins, group intervals and p95 history, and what a failing or
missing pass shows."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import Static

from modelfleet.console import fmt
from modelfleet.console.screens.drift import DriftDetailScreen, DriftScreen
from modelfleet.console.screens.fleet import FleetScreen
from modelfleet.console.widgets.drift_pictures import distribution, hbar, shape
from modelfleet.console.widgets.filterable_table import FilterableTable
from modelfleet.core.errors import ConfigError
from modelfleet.core.monitor_view import MonitorView
from tests.console.conftest import SIZE, make_app, screen_text, settle
from tests.console.fakes import FakeServices
from tests.console.monitor_data import monitor_view

pytestmark = pytest.mark.anyio


def _cells(app: Any, table_id: str, key: str) -> list[str]:
    table = app.screen.query_one(f"#{table_id}", FilterableTable)
    row = next(r for r in table.rows if r.key == key)
    return [c.plain if isinstance(c, Text) else str(c) for c in row.cells]


def _column(app: Any, table_id: str, name: str) -> dict[str, str]:
    table = app.screen.query_one(f"#{table_id}", FilterableTable)
    i = [c[0] if isinstance(c, tuple) else c for c in table.columns].index(name)
    return {r.key: _cells(app, table_id, r.key)[i] for r in table.rows if not r.header}


def _static(app: Any, widget_id: str) -> str:
    return str(app.screen.query_one(f"#{widget_id}", Static).render())


async def _open(pilot: Any, version_key: str) -> None:
    """From the drift view, the drill-down of ``version_key`` (``model@version``)."""
    await settle(pilot)
    pilot.app.screen.query_one("#drift-versions", FilterableTable).select_key(version_key)
    await pilot.press("enter")
    await settle(pilot)


class CountingServices(FakeServices):
    """Fixed data; counts monitoring passes, can hold them on a gate or fail them."""

    def __init__(self, *, gate: threading.Event | None = None, error: Exception | None = None) -> None:
        super().__init__()
        self.passes = 0
        self.monitor_gate = gate
        self.error = error

    def monitor(self) -> MonitorView:
        self.passes += 1
        if self.monitor_gate is not None:
            self.monitor_gate.wait(30)
        if self.error is not None:
            raise self.error
        return super().monitor()


async def test_versions_with_their_verdicts_by_key_and_command() -> None:
    services = CountingServices()
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert services.passes == 1  # the first pass follows the first fleet probe
        await pilot.press("7")
        await settle(pilot)
        assert isinstance(app.screen, DriftScreen)
        v2, v3 = _cells(app, "drift-versions", "credit-risk@2"), _cells(app, "drift-versions", "credit-risk@3")
        # model@version, nodes, dataset drift, drifted features, groups, latency, p50, p95, p99, err %, req/s, regressed
        assert v2[1:6] == ["3", "no drift 1/10", "income", "ok (4)", "ok"]
        assert v2[11] == "-"
        assert v3[1:6] == ["1", "DRIFT 5/10", "income +4", "SHIFT C", "SLO breach"]
        assert v3[7].endswith("!") and v3[11] == "edge-cpu-02"  # p95 over its budget is marked; the regression
        summary = _static(app, "drift-summary")
        assert "1 with dataset drift" in summary and "4 breaches" in summary and "2 node(s) not read" in summary
        notes = _static(app, "drift-notes")
        assert "BREACH group_shift: credit-risk@3 on edge-cpu-02" in notes
        assert "not read: edge-arm-05: connection refused" in notes
        # the highlighted version's p95 over the refreshes (eleven intervals between twelve passes)
        table = app.screen.query_one("#drift-versions", FilterableTable)
        table.select_key("credit-risk@2")
        await settle(pilot)
        trend = _static(app, "drift-trend")
        assert trend.startswith("credit-risk@2 · p95 per refresh interval (ms)")
        assert all(name in trend for name in ("fleet", "edge-cpu-01", "edge-cpu-03", "edge-gpu-04"))
        await pilot.press("r")
        await settle(pilot)
        assert services.passes == 2
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("colon", *"drift", "enter")
        await settle(pilot)
        assert isinstance(app.screen, DriftScreen)


async def test_fleet_drift_column_shows_the_verdict_not_yes_or_no() -> None:
    gate = threading.Event()
    app = make_app(services=CountingServices(gate=gate))
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):  # (the pass is held: wait for the fleet alone)
            if app.state.fleet is not None:
                break
            await pilot.pause(0.05)
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        assert set(_column(app, "fleet", "drift").values()) == {"…"}  # before the first pass: not known yet
        gate.set()
        await settle(pilot)
        drift = _column(app, "fleet", "drift")
        assert drift == {"edge-arm-05": "unavailable", "edge-arm-06": "unavailable", "edge-cpu-01": "no drift 1/10",
                         "edge-cpu-02": "DRIFT 5/10", "edge-cpu-03": "no drift", "edge-gpu-04": "insufficient"}
        summary = _static(app, "fleet-summary")
        assert ("drift on nodes (window 15m): 1 DRIFT · 2 no drift · 1 insufficient data · 2 unavailable"
                in summary)
        # the node's detail says it too
        app.screen.query_one("#fleet", FilterableTable).select_key("edge-cpu-01")
        await pilot.press("enter")
        await settle(pilot)
        assert "drift     no drift 1/10" in screen_text(app)


async def test_drill_down_draws_the_drifted_feature_groups_and_history() -> None:
    app = make_app(start_view="drift")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot, "credit-risk@2")
        screen = app.screen
        assert isinstance(screen, DriftDetailScreen) and screen.crumb == "credit-risk@2"
        assert list(_column(app, "drift-scopes", "drift").items()) == [
            ("*", "no drift 1/10"), ("edge-cpu-01", "no drift 1/10"), ("edge-cpu-03", "no drift"),
            ("edge-gpu-04", "insufficient")]
        # the feature table: the drifted feature is the one drawn first
        income = _cells(app, "drift-features", "income")
        assert income[1] == "wasserstein" and income[3] == "0.1" and income[-1] == "DRIFT"
        assert float(income[4]) < 0.005 and float(income[5]) >= 0.1  # significant and large
        assert _cells(app, "drift-features", "<prediction>")[0] == "predictions"
        picture = _static(app, "drift-picture")
        assert picture.startswith("income  numeric  DRIFT") and "shape      reference" in picture
        assert "above" in picture  # live incomes beyond the reference's range
        groups = _static(app, "drift-groups")
        assert "share of '1' per group" in groups and groups.count("├") >= 8  # 4 groups x (reference, now)
        assert "p95 6.8 · p99 8.2 ms (SLO p50 20 · p95 50 · p99 100 ms)" in _static(app, "drift-detail-summary")
        history = _static(app, "drift-history")
        assert "p95 per refresh interval (ms)" in history and "edge-gpu-04" in history

        # one node: its own window (too small to decide: every feature says so)
        scopes = screen.query_one("#drift-scopes", FilterableTable)
        scopes.select_key("edge-gpu-04")
        await settle(pilot)
        assert screen.scope_key == "edge-gpu-04"
        assert set(_column(app, "drift-features", "verdict").values()) == {"insufficient data"}
        assert "too few to decide" in _static(app, "drift-picture")
        assert "latency insufficient data (24 of 50 requests needed)" in _static(app, "drift-detail-summary")

        # another feature of another node
        scopes.select_key("edge-cpu-03")
        await settle(pilot)
        screen.query_one("#drift-features", FilterableTable).select_key("purpose")
        await settle(pilot)
        assert _static(app, "drift-picture").startswith("purpose  categorical  no drift")


async def test_a_new_category_and_a_shifted_group_are_drawn() -> None:
    app = make_app(start_view="drift")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot, "credit-risk@3")
        app.screen.query_one("#drift-features", FilterableTable).select_key("purpose")
        await settle(pilot)
        picture = _static(app, "drift-picture")
        new = next(line for line in picture.splitlines() if line.startswith("new "))
        assert "never in the reference" in new and "0.0%" in new  # absent from the reference, drawn now
        assert "% new categories" in picture
        groups = _static(app, "drift-groups").splitlines()
        c_now = groups[groups.index(next(g for g in groups if g.startswith("C "))) + 1]
        assert "SHIFT" in c_now and "●" in c_now
        assert any(line.strip().startswith("now - ref in [+") for line in groups)


async def test_a_failing_pass_says_why_once_and_the_fleet_column_is_unavailable() -> None:
    services = CountingServices(error=ConfigError("Prometheus at http://127.0.0.1:9090 did not answer",
                                                  hint="start Prometheus or use --source agents"))
    app = make_app(services=services)
    notes: list[str] = []
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
        await settle(pilot)
        assert set(_column(app, "fleet", "drift").values()) == {"unavailable"}
        assert "drift unavailable: monitor: Prometheus at http://127.0.0.1:9090 did not answer" in _static(
            app, "fleet-summary")
        await pilot.press("7")  # a view with no pass to show tries again
        await settle(pilot)
        assert "fix: start Prometheus" in _static(app, "drift-summary")
        await pilot.press("r")
        await settle(pilot)
        assert services.passes == 3 and len([n for n in notes if "Prometheus" in n]) == 1  # said once


async def test_a_version_no_longer_served_says_so() -> None:
    app = make_app(start_view="drift")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.push_screen(DriftDetailScreen("credit-risk", "9"))
        await settle(pilot)
        assert "credit-risk@9: no agent serves this version in the last pass" in _static(app, "drift-detail-summary")
        assert app.screen.query_one("#drift-features", FilterableTable).rows == []


def test_verdict_labels_cover_every_core_verdict() -> None:
    from modelfleet.core.drift_verdict import FEATURE_VERDICTS, GROUP_VERDICTS
    from modelfleet.core.latency import LATENCY_VERDICTS

    for v in (*FEATURE_VERDICTS, *GROUP_VERDICTS, *LATENCY_VERDICTS, fmt.UNAVAILABLE):
        assert v in fmt.VERDICT_LABEL and v in fmt.VERDICT_STYLE, v
    assert fmt.verdict("INSUFFICIENT_DATA").plain == "insufficient data"


def test_bars_are_proportional_and_a_sliver_is_never_lost() -> None:
    assert hbar(0.5, 1.0, 8) == "████    " and hbar(1.0, 1.0, 8) == "█" * 8
    assert hbar(0.001, 1.0, 8).startswith("▏")  # a new category at 0.1 % is still seen
    assert hbar(0.0, 1.0, 4) == "    "
    assert shape((0.0, 0.5, 1.0), 1.0, cells=1) == " ▅█"
    # the income shift of edge-cpu-01 (x1.25): the live share moved to the upper bins and beyond the reference
    report = monitor_view().version("credit-risk", "2").nodes["edge-cpu-01"].drift  # type: ignore[union-attr]
    assert report is not None
    income = next(f for f in report.features if f.feature == "income")
    text = distribution(income).plain
    interior = [i for i, b in enumerate(income.bins) if b.startswith("[")]
    low, high = interior[: len(interior) // 2], interior[len(interior) // 2:]
    assert sum(income.current_shares[i] for i in high) > sum(income.reference_shares[i] for i in high) + 0.1
    assert sum(income.current_shares[i] for i in low) < sum(income.reference_shares[i] for i in low) - 0.1
    above = next(line for line in text.splitlines() if line.startswith("above"))
    assert above.split()[1] == "0.0%" and float(above.split()[2].rstrip("%")) > 0
