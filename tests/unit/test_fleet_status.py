"""fleet_status: probing agents (mock transport, fake clock), rates, SLO, staleness, placements."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.core.fleet import Node, NodeClass
from modelfleet.core.fleet_status import (
    FleetProber,
    Slo,
    alias_mismatches,
    parse_prometheus,
    placements,
    releases_on_disk,
    sketch_delta,
    summarize,
)
from modelfleet.core.latency import LatencySketch

METRICS = """\
# HELP modelfleet_agent_process_cpu_seconds_total Agent CPU time
# TYPE modelfleet_agent_process_cpu_seconds_total counter
modelfleet_agent_process_cpu_seconds_total {cpu}
modelfleet_agent_process_resident_memory_bytes 1.048576e+08
modelfleet_agent_host_memory_bytes{{state="total"}} 1000.0
modelfleet_agent_host_memory_bytes{{state="available"}} 250.0
modelfleet_agent_model_info{{model="m",version="3",digest="x,y"}} 1.0
"""


class FakeAgent:
    """Per-address agent state behind an httpx.MockTransport."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def add(self, address: str, *, version: str = "3", latencies: list[float] | None = None,
            requests: int = 100, errors: int = 0, cpu: float = 1.0, status: int = 200) -> None:
        sketch = LatencySketch()
        for v in latencies or [0.005] * 10:
            sketch.add(v)
        self.nodes[address] = {"version": version, "sketch": sketch, "requests": requests, "errors": errors,
                               "cpu": cpu, "status": status, "down": False}

    def handler(self, request: httpx.Request) -> httpx.Response:
        node = self.nodes.get(request.url.host)
        if node is None or node["down"]:
            raise httpx.ConnectError("connection refused", request=request)
        self.calls += 1
        path = request.url.path
        if path == "/health":
            if node["status"] != 200:
                return httpx.Response(node["status"], json={"status": "unavailable", "reason": "loading"})
            return httpx.Response(200, json={"status": "ok", "model": "m", "version": node["version"],
                                             "digest": "d" * 64, "uptime_s": 10.0})
        if path == "/stats":
            return httpx.Response(200, json={
                "model": "m", "version": node["version"], "window_start": 1000.0, "requests": node["requests"],
                "errors": node["errors"], "latency": {"unit": "seconds", "sketch": node["sketch"].to_dict()},
                "drift": {"available": True}})
        return httpx.Response(200, text=METRICS.format(cpu=node["cpu"]))


def _node(i: int, cls: NodeClass = NodeClass.CPU) -> Node:
    return Node(name=f"n{i}", address=f"10.0.0.{i}", node_class=cls, groups=("edge", cls.group, "staging"))


def _prober(agent: FakeAgent, clock: list[float], **kw: Any) -> FleetProber:
    return FleetProber(slo=Slo(20, 50, 100), stale_after_s=30, clock=lambda: clock[0],
                       transport=httpx.MockTransport(agent.handler), **kw)


def test_probe_builds_rows_with_rates_and_resources() -> None:
    agent = FakeAgent()
    agent.add("10.0.0.1", requests=100, errors=5, cpu=2.0)
    clock = [1010.0]
    prober = _prober(agent, clock)
    (row,) = prober.probe_sync([_node(1)])
    assert row.state == "ok" and row.target == "m@3" and row.digest == "d" * 64
    assert row.rps == pytest.approx(10.0)  # 100 requests since window start 10 s ago
    assert row.error_rate == pytest.approx(0.05)
    assert row.p50_ms == pytest.approx(5.0, rel=0.01)
    assert row.cpu == pytest.approx(0.2)  # 2 CPU seconds over 10 s uptime
    assert row.mem_bytes == pytest.approx(104857600)
    assert row.host_mem_ratio == pytest.approx(0.75)
    assert row.environment == "staging" and row.drift_available is True

    agent.nodes["10.0.0.1"].update(requests=300, errors=5, cpu=4.0)
    agent.nodes["10.0.0.1"]["sketch"].add(0.04)
    clock[0] = 1020.0
    (row,) = prober.probe_sync([_node(1)])
    assert row.rps == pytest.approx(20.0)
    assert row.error_rate == 0.0
    assert row.cpu == pytest.approx(0.2)
    assert len(row.history) == 2 and row.history[-1] == pytest.approx(40.0, rel=0.01)


def test_slo_breach_and_unavailable() -> None:
    agent = FakeAgent()
    agent.add("10.0.0.1", latencies=[0.2] * 10)
    agent.add("10.0.0.2", status=503)
    prober = _prober(agent, [1010.0])
    slow, down = prober.probe_sync([_node(1), _node(2)])
    assert slow.state == "slo" and slow.slo_breaches == ("p50", "p95", "p99")
    assert "p99 200.0 > 100 ms" in (slow.reason or "")
    assert down.state == "unavailable" and down.reason == "loading"


def test_one_slow_probe_is_not_an_slo_breach() -> None:
    agent = FakeAgent()
    agent.add("10.0.0.1", latencies=[0.024], requests=1)  # the deploy gate's probe, the only request so far
    (row,) = _prober(agent, [1010.0]).probe_sync([_node(1)])
    assert row.state == "ok" and row.slo_breaches == () and row.p95_ms == pytest.approx(24.0, rel=0.01)


def test_unreachable_then_stale_keeps_last_known_values() -> None:
    agent = FakeAgent()
    agent.add("10.0.0.1")
    clock = [1010.0]
    prober = _prober(agent, clock)
    prober.probe_sync([_node(1)])
    agent.nodes["10.0.0.1"]["down"] = True
    clock[0] = 1020.0
    (row,) = prober.probe_sync([_node(1)])
    assert row.state == "unreachable" and row.reason == "connection refused"
    assert row.version == "3" and row.last_seen == 1010.0 and row.age_s == 10.0
    clock[0] = 1050.0
    (row,) = prober.probe_sync([_node(1)])
    assert row.state == "stale" and row.age_s == 40.0
    never = prober.probe_sync([_node(9)])[0]
    assert never.state == "unreachable" and never.last_seen is None
    assert summarize([row, never])["stale"] == 1


def test_bounded_concurrency() -> None:
    import asyncio

    agent = FakeAgent()
    for i in range(1, 41):
        agent.add(f"10.0.0.{i}")
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return agent.handler(request)

    prober = FleetProber(concurrency=4, transport=httpx.MockTransport(handler))
    rows = prober.probe_sync([_node(i) for i in range(1, 41)])
    assert [r.name for r in rows] == [f"n{i}" for i in range(1, 41)]
    assert all(r.state == "ok" for r in rows)
    assert peak <= 4  # at most `concurrency` nodes at once, each asking its three endpoints one after another


def test_parse_prometheus_labels_with_commas_and_quotes() -> None:
    parsed = parse_prometheus(METRICS.format(cpu=1.5))
    assert parsed["modelfleet_agent_model_info"][0][0] == {"model": "m", "version": "3", "digest": "x,y"}
    assert parsed["modelfleet_agent_process_cpu_seconds_total"][0][1] == 1.5


def test_sketch_delta() -> None:
    a = LatencySketch()
    a.add_many([0.001] * 50)
    b = a.copy()
    b.add_many([0.1] * 50)
    d = sketch_delta(b, a)
    assert d.count == 50
    assert d.quantile(0.5) == pytest.approx(0.1, rel=0.01)
    assert sketch_delta(a, b) is a  # not a prefix: unchanged


class Ev:
    def __init__(self, action: str, node: str | None, version: str, outcome: str = "ok",
                 details: dict[str, Any] | None = None, model: str = "m") -> None:
        self.action, self.node, self.version, self.outcome = action, node, version, outcome
        self.details, self.model, self.run_id = details or {}, model, f"r-{node}-{version}"


def test_placements_and_alias_mismatch() -> None:
    agent = FakeAgent()
    agent.add("10.0.0.1", version="2")
    agent.add("10.0.0.2", version="3")
    rows = FleetProber(transport=httpx.MockTransport(agent.handler)).probe_sync([_node(1), _node(2)])
    events = [Ev("node_deploy", "n1", "2"), Ev("node_deploy", "n2", "2"), Ev("node_deploy", "n2", "3"),
              Ev("node_deploy", "n1", "3", outcome="failed"), Ev("run_start", None, "3")]
    from modelfleet.core.placement import versions_by_node

    assert versions_by_node(events, "m") == {"n1": "2", "n2": "3"}
    places = placements("m", events, rows)
    assert places["2"].nodes == ("n1",) and places["3"].reported_nodes == ("n2",)
    assert "edge_cpu" in places["2"].groups and places["2"].disagreeing == ()
    warn = alias_mismatches({"champion": 3, "challenger": 2}, places)
    assert warn == {"3": "champion is v3 but 1 node run v2"}


def test_releases_on_disk(tmp_path: Path) -> None:
    rel = tmp_path / "models" / "m" / "releases"
    for name in ("2-aaaa", "3-bbbb"):
        (rel / name).mkdir(parents=True)
    (tmp_path / "models" / "m" / "current").symlink_to(rel / "3-bbbb")
    (tmp_path / "models" / "m" / "previous").symlink_to(rel / "2-aaaa")
    node = Node(name="n", address="x", node_class=NodeClass.CPU, root=str(tmp_path))
    got = releases_on_disk(node)
    assert got is not None
    assert [(r.name, r.current, r.previous) for r in got] == [("2-aaaa", False, True), ("3-bbbb", True, False)]
    assert releases_on_disk(Node(name="r", address="x", node_class=NodeClass.CPU, root="/nonexistent")) is None
    json.dumps([r.__dict__ for r in got])
