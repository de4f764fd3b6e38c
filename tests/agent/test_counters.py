"""The agent's counters for monitoring: cumulative per epoch, a ring of snapshots, /profile, drift on /metrics.

In-process (the ASGI app without sockets): what is checked is what the agent serves, not the transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from modelfleet.core.drift import ReferenceProfile
from modelfleet.core.drift_counts import CountsLayout
from modelfleet.core.fleet_status import parse_prometheus
from modelfleet.core.latency import LATENCY_BOUNDS
from tests.agent.conftest import Node
from tests.agent.inproc import call, started_agent
from tests.agent.modelkit import make_frame

ROWS = make_frame(4, seed=8)
BODY = json.dumps({"dataframe_split": {"columns": list(ROWS.columns), "data": ROWS.values.tolist()}}).encode()


async def _score(agent: Any, times: int) -> None:
    for _ in range(times):
        status, _, body = await call(agent, "POST", "/invocations", BODY)
        assert status == 200, body


async def _stats(agent: Any, query: bytes = b"") -> dict[str, Any]:
    status, _, body = await call(agent, "GET", "/stats", query=query)
    assert status == 200, body
    return dict(json.loads(body))


def test_counters_are_cumulative_and_a_reload_starts_a_new_epoch(node: Node) -> None:
    async def main() -> None:
        agent = await started_agent(node.current)
        await _score(agent, 3)
        first = await _stats(agent)
        await _score(agent, 2)
        second = await _stats(agent)
        assert first["format"] == "modelfleet-stats/2" and first["epoch"] == second["epoch"]
        assert (first["requests"], second["requests"]) == (3, 5)
        assert second["rows"] == 20 and second["drift"]["counts"]["rows"] == 20
        hist = second["latency"]["histogram"]
        assert hist["le"] == list(LATENCY_BOUNDS) and sum(hist["counts"]) == 5
        assert second["latency_regression"]["state"] == "warming"
        # the counts fit the profile the agent serves, and /profile is exactly the file the sha names
        status, headers, body = await call(agent, "GET", "/profile")
        assert status == 200 and hashlib.sha256(body).hexdigest() == second["drift"]["profile_sha256"]
        assert headers[b"x-profile-sha256"].decode() == second["drift"]["profile_sha256"]
        profile = ReferenceProfile.from_json(body.decode())
        layout = CountsLayout.from_profile(profile)
        vector = layout.vector(second["drift"]["counts"])
        assert vector.shape == (layout.size,) and int(layout.feature(vector, "income").sum()) == 20
        assert int(layout.by_group(vector).sum()) == 20  # every row has a group bin (categories, other, new...)
        code, report = await agent.reload(source="test", force=True)
        assert code == 200, report
        third = await _stats(agent)
        assert third["epoch"] != second["epoch"] and third["requests"] == 0 and third["counter_start"] > 0
        await agent.shutdown()

    asyncio.run(main())


def test_window_returns_the_ring_snapshot_at_or_before_its_start(node: Node) -> None:
    async def main() -> None:
        agent = await started_agent(node.current, snapshot_interval_s=0.05)
        served = agent.active
        assert served is not None
        await _score(agent, 2)
        await asyncio.sleep(0.12)
        served.tick()  # a ring snapshot with 2 requests
        await asyncio.sleep(0.12)
        await _score(agent, 3)
        now = await _stats(agent, b"window=0.1")
        base = now["base"]
        assert base["requests"] == 2 and base["taken_at"] <= now["taken_at"] - 0.1
        assert base["drift"]["counts"]["rows"] == 8 and now["drift"]["counts"]["rows"] == 20
        oldest = (await _stats(agent, b"window=3600"))["base"]
        assert oldest["requests"] == 0 and oldest["taken_at"] == now["counter_start"]  # the epoch's start
        status, _, body = await call(agent, "GET", "/stats", query=b"window=soon")
        assert status == 400 and b"window must be a number" in body
        await agent.shutdown()

    asyncio.run(main())


def test_metrics_export_the_drift_bins_and_the_served_counters(node: Node) -> None:
    async def main() -> None:
        agent = await started_agent(node.current)
        await _score(agent, 3)
        stats = await _stats(agent)
        _, _, text = await call(agent, "GET", "/metrics")
        await agent.shutdown()
        parsed = parse_prometheus(text.decode())
        rows = parsed["modelfleet_agent_drift_rows_total"]
        income = {int(lab["bin"]): v for lab, v in rows if lab["feature"] == "income"}
        assert [income[i] for i in sorted(income)] == stats["drift"]["counts"]["features"]["income"]["counts"]
        assert all(lab["model"] == "credit-risk" and lab["version"] == "1" for lab, _ in rows)
        assert parsed["modelfleet_agent_scored_requests_total"][0][1] == 3
        assert parsed["modelfleet_agent_counter_start_time_seconds"][0][1] == stats["counter_start"]
        buckets = parsed["modelfleet_agent_scoring_latency_seconds_bucket"]
        assert [v for lab, v in buckets if lab["le"] == "+Inf"] == [3]
        sha = parsed["modelfleet_agent_profile_info"][0][0]["profile_sha256"]
        assert sha == stats["drift"]["profile_sha256"]
        groups = parsed["modelfleet_agent_drift_group_predictions_total"]
        assert sum(v for _, v in groups) == 12

    asyncio.run(main())


def test_profile_without_reference_says_why(node: Node) -> None:
    node.switch("2")

    async def main() -> None:
        agent = await started_agent(node.current)
        status, _, body = await call(agent, "GET", "/profile")
        assert status == 404 and b"reference sample" in body
        _, _, text = await call(agent, "GET", "/metrics")
        assert b"modelfleet_agent_scored_requests_total" in text and b"drift_rows_total" not in text
        await agent.shutdown()

    asyncio.run(main())
