"""The drift view end to end: a real agent process on loopback (a release with its reference profile, as
tests/agent starts it) answers shifted traffic and counts it; the console's own services read it in their
monitoring child (``probe_worker --monitor``: ``/stats?window=W`` and ``/profile`` over HTTP, windows, statistics,
verdicts, the pipe back); the Drift view, its drill-down and the Fleet view's drift column show the shifted
features and the dataset verdict (Pilot). Nothing between the counted rows and the drawn verdict is fixed data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from rich.text import Text
from textual.widgets import Static

from modelfleet.console.screens.drift import DriftDetailScreen, DriftScreen
from modelfleet.console.services import ConsoleServices
from modelfleet.console.widgets.filterable_table import FilterableTable
from modelfleet.core.config import load_settings
from modelfleet.core.drift import ReferenceProfile
from modelfleet.core.fleet import Inventory, Node, NodeClass
from tests.agent import modelkit
from tests.agent.conftest import ADMIN_TOKEN, AgentProcess, launch
from tests.agent.conftest import Node as AgentNode
from tests.console.conftest import SIZE, make_app, settle
from tests.console.fakes import FakeServices

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

NODE = "edge-e2e-01"
SHIFTED = {"income", "age", "debt_ratio"}
REQUESTS, ROWS_PER_REQUEST = 60, 20


class LiveMonitorServices(FakeServices):
    """Fixed registry, runs and ledger (not under test); the inventory is the one live agent, and the fleet probe
    and the monitoring pass are the console's real ones, each in its child process."""

    def __init__(self, node: Node, cwd: Path) -> None:
        super().__init__(load_settings(env={}, cwd=cwd))
        self.node = node
        self.clock = time.time
        self.probe_process = True

    def inventory(self) -> Inventory:
        return Inventory([self.node], {"edge": [self.node.name]})

    probe = ConsoleServices.probe
    monitor = ConsoleServices.monitor


def _shifted(n: int, seed: int) -> Any:
    frame = modelkit.make_frame(n, seed=seed)
    frame["income"] = (frame["income"] * 1.6).round(2)
    frame["age"] = frame["age"] + 15
    frame["debt_ratio"] = (frame["debt_ratio"] + 0.5).round(4)
    return frame


@pytest.fixture(scope="module")
def drifted_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent serving credit-risk@1 with its reference profile, after 60 requests of shifted rows."""
    root = tmp_path_factory.mktemp("e2e")
    reference = modelkit.make_frame(800, seed=11)
    model = modelkit.build_pipeline().fit(reference, modelkit.make_target(reference))
    profile = ReferenceProfile.build(reference, model.predict(reference), group_column="applicant_group",
                                     model="credit-risk", version="1").to_dict()
    node = AgentNode(root / "node")
    modelkit.write_release(node.release("1"), None, "1", probe=modelkit.probe_for(model, reference.head(4)),
                           profile=profile, joblib_model=model)
    (node.root / "etc").mkdir()
    (node.root / "etc" / "admin.token").write_text(ADMIN_TOKEN + "\n")
    node.switch("1")
    agent = launch(node)
    try:
        with httpx.Client(timeout=30) as client:
            for i in range(REQUESTS):
                rows = _shifted(ROWS_PER_REQUEST, seed=1000 + i)
                body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
                r = client.post(agent.url + "/invocations", json=body)
                assert r.status_code == 200, r.text
        yield agent
    finally:
        agent.stop()


def _cells(app: Any, table_id: str, key: str) -> list[str]:
    table = app.screen.query_one(f"#{table_id}", FilterableTable)
    row = next(r for r in table.rows if r.key == key)
    return [c.plain if isinstance(c, Text) else str(c) for c in row.cells]


async def test_shifted_traffic_on_a_real_agent_is_drawn_as_drift(drifted_agent: AgentProcess,
                                                                  tmp_path: Path) -> None:
    node = Node(name=NODE, address=drifted_agent.address, node_class=NodeClass.CPU, agent_port=drifted_agent.port,
                groups=("edge",))
    services = LiveMonitorServices(node, tmp_path)
    app = make_app(services=services)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(1200):  # the first pass follows the first probe (two child processes start: generous)
            if app.state.monitor is not None or "monitor" in app.state.errors:
                break
            await pilot.pause(0.05)
        await settle(pilot)
        assert app.state.monitor is not None, app.state.errors
        assert app.state.monitor.status.unreachable == {}

        # the Fleet view's drift column: the node's own verdict
        assert _cells(app, "fleet", NODE)[[c[0] if isinstance(c, tuple) else c for c in
                                            app.screen.query_one("#fleet", FilterableTable).columns]
                                           .index("drift")].startswith("DRIFT")

        await pilot.press("7")
        await settle(pilot)
        assert isinstance(app.screen, DriftScreen)
        row = _cells(app, "drift-versions", "credit-risk@1")
        # model@version, nodes, dataset drift, drifted features, groups, latency, p50, p95, p99, ...
        assert row[1] == "1" and row[2].startswith("DRIFT")
        assert {name.strip() for name in row[3].split("+")[0].split(",")} <= SHIFTED
        assert row[5] != "insufficient data" and all(float(row[i].rstrip("!")) > 0 for i in (6, 7, 8))

        app.screen.query_one("#drift-versions", FilterableTable).select_key("credit-risk@1")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DriftDetailScreen)
        features = app.screen.query_one("#drift-features", FilterableTable)
        verdicts = {r.key: _cells(app, "drift-features", r.key)[-1] for r in features.rows}
        assert {k for k, v in verdicts.items() if v == "DRIFT"} == SHIFTED | {"<prediction>"}  # (and the model's
        # answers moved with them)
        assert verdicts["employment"] == "no drift"  # the feature left alone is not flagged
        rows = {k: int(_cells(app, "drift-features", k)[6].replace(",", "")) for k in SHIFTED}
        assert all(n >= REQUESTS * ROWS_PER_REQUEST for n in rows.values())  # every shifted row was counted
        picture = str(app.screen.query_one("#drift-picture", Static).render())
        assert picture.startswith("income  numeric  DRIFT")
        assert [r.key for r in app.screen.query_one("#drift-scopes", FilterableTable).rows] == ["*", NODE]
        income = next(f for f in app.state.monitor.version("credit-risk", "1").fleet.drift.features  # type: ignore
                      if f.feature == "income")
        # the live bins moved up: more of the mass in the upper half of the reference's range than before
        half = len(income.bins) // 2
        assert np.sum(income.current_shares[half:]) > np.sum(income.reference_shares[half:]) + 0.2
