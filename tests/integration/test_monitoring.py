"""The monitoring loop on a simulated fleet: agents count on every deploy, windows, verdicts, sources, alerts.

One 2-node fleet (127.0.96.1-2, ssh port 2296), the demo registry seeded and ``credit-risk@champion`` deployed
through the normal CLI path once for the module; the tests run in file order on that fleet.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.core.fleet import Inventory, Node
from modelfleet.core.fleet_status import parse_prometheus
from tests.integration.simfleet import ProjectCtx, write_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

MODELFLEET = str(Path(sys.executable).parent / "modelfleet")
PREFIX, SSH_PORT, NODES = "127.0.96", 2296, "cpu=2"


class Ctx(ProjectCtx):
    def nodes(self) -> list[Node]:
        return Inventory.load(self.settings.fleet.inventory).nodes

    def stats(self, node: Node) -> dict[str, Any]:
        return dict(httpx.get(node.agent_url + "/stats", timeout=10, trust_env=False).json())

    def reference_rows(self) -> list[dict[str, Any]]:
        from modelfleet.core.registry import Registry

        sample = Registry(self.settings).load_reference_sample("credit-risk", 2)
        return list(json.loads(sample.to_json(orient="records")))


@pytest.fixture(scope="module")
def ctx(make_sim_fleet: Any) -> Iterator[Ctx]:
    with make_sim_fleet(PREFIX, SSH_PORT, NODES) as running:
        project = write_project(running, NODES)
        group_vars = Path(running.inventory).parent / "group_vars"
        group_vars.mkdir(exist_ok=True)
        (group_vars / "edge.yml").write_text("model_release_gate_wait_s: 40\n", encoding="utf-8")
        c = Ctx(running, project)
        for step in (("demo", "seed"), ("provision", "--yes"), ("deploy", "credit-risk@champion", "--yes")):
            proc = c.cli(*step)
            assert proc.returncode == 0, f"{step}: {proc.stdout}\n{proc.stderr}"
        yield c


def test_every_agent_counts_after_a_deploy(ctx: Ctx) -> None:
    rows = ctx.reference_rows()[:40]
    for node in ctx.nodes():
        before = ctx.stats(node)
        assert before["drift"]["available"] is True, before["drift"]
        assert before["predictions"]["group_column"] == "applicant_group"
        for i in range(0, len(rows), 4):
            r = httpx.post(node.agent_url + "/invocations", json={"dataframe_records": rows[i:i + 4]}, timeout=10,
                           trust_env=False)
            assert r.status_code == 200, r.text
        after = ctx.stats(node)
        assert after["epoch"] == before["epoch"] and after["requests"] - before["requests"] == 10
        counts, base = after["drift"]["counts"], before["drift"]["counts"]
        assert counts["rows"] - base["rows"] == 40
        for name, feature in counts["features"].items():
            assert sum(feature["counts"]) - sum(base["features"][name]["counts"]) == 40, name
        groups = counts["predictions_by_group"]["groups"]
        assert set(groups) >= {"A", "B", "C", "D"} and sum(map(sum, groups.values())) == counts["rows"]
        metrics = parse_prometheus(httpx.get(node.agent_url + "/metrics", timeout=10, trust_env=False).text)
        income = [v for lab, v in metrics["modelfleet_agent_drift_rows_total"] if lab["feature"] == "income"]
        assert sum(income) == counts["rows"]
        assert metrics["modelfleet_agent_profile_info"][0][0]["profile_sha256"] == after["drift"]["profile_sha256"]
