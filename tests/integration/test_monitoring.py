"""The monitoring loop on a simulated fleet: agents count on every deploy, windows, verdicts, sources, alerts.

One 2-node fleet (127.0.96.1-2, ssh port 2296), the demo registry seeded and ``credit-risk@champion`` deployed
through the normal CLI path once for the module; the tests run in file order on that fleet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.core.fleet import Inventory, Node
from modelfleet.core.fleet_status import parse_prometheus
from modelfleet.core.ledger import Ledger
from tests.integration.simfleet import ProjectCtx, write_project
from tests.prometheus_server import PrometheusServer
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

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
        # credit-risk/1 first: a drift-triggered rollback (the last test) has a release to go back to
        for step in (("demo", "seed"), ("provision", "--yes"), ("deploy", "credit-risk/1", "--yes"),
                     ("deploy", "credit-risk@champion", "--yes")):
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


def _drift_json(ctx: Ctx, *args: str) -> tuple[int, dict[str, Any]]:
    proc = ctx.cli("drift", "credit-risk", "--json", *args, timeout=300)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"drift {args} printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _drifted(data: dict[str, Any]) -> list[str]:
    (scope,) = data["scopes"]
    return [f["feature"] for f in scope["drift"]["features"] if f["verdict"] == "DRIFT"]


def test_drift_on_the_injected_node_reports_the_shifted_feature_and_no_other(ctx: Ctx) -> None:
    sent = ctx.cli("demo", "traffic", "--requests", "150", "--rate", "0", "--batch", "4", "--seed", "11",
                   "--shift", "edge-cpu-01:income=+25%", timeout=600)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    code, data = _drift_json(ctx, "--node", "edge-cpu-01", "--window", "1h")
    assert code == 1 and _drifted(data) == ["income"], data
    income = next(f for f in data["scopes"][0]["drift"]["features"] if f["feature"] == "income")
    assert income["rows"] >= 600 and income["p_value"] < income["alpha"] and income["effect"] >= 0.1
    code, data = _drift_json(ctx, "--node", "edge-cpu-02", "--window", "1h")
    assert code == 0 and _drifted(data) == [], data
    text = ctx.cli("drift", "credit-risk@2", "--node", "edge-cpu-01", "--window", "1h", "--explain")
    assert text.returncode == 1 and "income" in text.stdout and "rule: DRIFT when" in text.stdout
    # too little data to decide: exit 3 (a policy that asks for more rows than the window has)
    policy = ctx.project / "policy" / "monitoring.yaml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text("models:\n  credit-risk:\n    min_rows: 1000000\n    min_group_rows: 1000000\n")
    try:
        code, data = _drift_json(ctx, "--node", "edge-cpu-01", "--window", "1h")
    finally:
        policy.unlink()
    assert code == 3 and data["scopes"][0]["drift"]["verdict"] == "INSUFFICIENT_DATA"
    bad = ctx.cli("drift", "credit-risk@@2")
    assert bad.returncode == 2 and "modelfleet:" in bad.stderr and "Traceback" not in bad.stderr


def test_status_per_version_with_latency_and_drift_verdicts(ctx: Ctx) -> None:
    proc = ctx.cli("status", "credit-risk", "--json", "--window", "1h")
    data = json.loads(proc.stdout)
    (version,) = data["versions"]
    fleet = version["fleet"]
    assert version["version"] == "2" and sorted(fleet["nodes"]) == ["edge-cpu-01", "edge-cpu-02"]
    assert fleet["latency"]["verdict"] in ("OK", "SLO_BREACH") and fleet["latency"]["requests"] >= 300
    assert fleet["window"]["requests"] == fleet["latency"]["requests"] and fleet["rps"] > 0
    per_node = version["nodes"]["edge-cpu-01"]["drift"]
    assert "income" in [f["feature"] for f in per_node["features"] if f["verdict"] == "DRIFT"]
    assert proc.returncode == (1 if data["breaches"] else 0)
    table = ctx.cli("status", "--window", "1h")
    assert "credit-risk" in table.stdout and "P95_MS" in table.stdout


@pytest.fixture(scope="module")
def prometheus(ctx: Ctx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    targets = ctx.project / "monitoring" / "targets" / "agents.json"
    proc = ctx.cli("monitor", "targets", "--out", str(targets))
    assert proc.returncode == 0, proc.stderr
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets)
    toml = ctx.project / "modelfleet.toml"
    toml.write_text(toml.read_text() + f'[monitor]\nprometheus_url = "{server.url}"\n')
    try:
        yield server
    finally:
        server.stop()


def _scraped_up_to_date(ctx: Ctx, server: PrometheusServer) -> None:
    """Wait until Prometheus' last sample of every agent's counters equals what the agent says now."""
    deadline = time.monotonic() + 90
    want = {n.name: ctx.stats(n)["rows"] for n in ctx.nodes()}
    while time.monotonic() < deadline:
        got = {r["metric"]["node"]: int(float(r["value"][1]))
               for r in server.query("modelfleet_agent_scored_rows_total")}
        if got == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus has {got}, agents say {want}")


def _verdicts(data: dict[str, Any]) -> dict[str, Any]:
    (scope,) = data["scopes"]
    d = scope["drift"]
    return {"features": {f["feature"]: (f["verdict"], f["rows"]) for f in d["features"]},
            "groups": {g["group"]: (g["verdict"], g["rows"], g["positives"]) for g in d["groups"]},
            "dataset": d["verdict"], "requests": scope["window"]["requests"],
            "latency": scope["latency"]["verdict"]}


def test_prometheus_source_gives_the_same_verdicts(ctx: Ctx, prometheus: PrometheusServer) -> None:
    _scraped_up_to_date(ctx, prometheus)
    for node in ("edge-cpu-01", "edge-cpu-02"):
        code_a, agents = _drift_json(ctx, "--node", node, "--window", "1h", "--source", "agents")
        code_p, prom = _drift_json(ctx, "--node", node, "--window", "1h", "--source", "prometheus")
        assert code_a == code_p and _verdicts(agents) == _verdicts(prom), (node, agents, prom)
    alerts = prometheus.query('ALERTS{alertname="ModelfleetAgentDown"}')
    assert alerts == []  # the rules load and evaluate (no agent is down)
    rules = httpx.get(prometheus.url + "/api/v1/rules", timeout=10, trust_env=False).json()
    assert {g["name"] for g in rules["data"]["groups"]} == {"modelfleet-recording", "modelfleet-alerts"}


def _admin_reload(ctx: Ctx, node: Node) -> None:
    root = ctx.running.fleet.nodes_dir / node.name / "opt" / "modelfleet"
    token = (root / "etc" / "agents" / "credit-risk.admin-token").read_text().strip()
    r = httpx.post(node.agent_url + "/admin/reload", params={"force": "1"}, timeout=120, trust_env=False,
                   headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["status"] == "switched", r.text


def test_a_counter_reset_gives_a_correct_partial_verdict(ctx: Ctx, prometheus: PrometheusServer) -> None:
    node = next(n for n in ctx.nodes() if n.name == "edge-cpu-01")
    before = ctx.stats(node)
    _admin_reload(ctx, node)  # a new epoch: the counters restart at zero
    after = ctx.stats(node)
    assert after["epoch"] != before["epoch"] and after["requests"] == 0
    sent = ctx.cli("demo", "traffic", "--requests", "60", "--rate", "0", "--batch", "4", "--seed", "12",
                   "--limit", "edge-cpu-01", "--shift", "edge-cpu-01:income=+25%", timeout=600)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    _scraped_up_to_date(ctx, prometheus)
    for source in ("agents", "prometheus"):
        code, data = _drift_json(ctx, "--node", "edge-cpu-01", "--window", "1h", "--source", source)
        scope = data["scopes"][0]
        assert code == 1 and _drifted(data) == ["income"], (source, data)
        partial = " ".join(scope["window"]["partial"])
        # agents: only the new counters exist (they start inside the window); Prometheus saw both epochs and
        # adds them across the reset: either way the window says what it covers
        assert ("counters start" in partial) if source == "agents" else ("reset" in partial), (source, partial)
    agents_rows = _drift_json(ctx, "--node", "edge-cpu-01", "--window", "1h")[1]["scopes"][0]["window"]["rows"]
    assert agents_rows == ctx.stats(node)["rows"] == 240  # exactly what the new epoch counted (60 x 4 rows)


def test_a_node_gone_dark_mid_window_is_explicitly_missing(ctx: Ctx, prometheus: PrometheusServer) -> None:
    ctx.running.fleet.kill("edge-cpu-02")
    try:
        proc = ctx.cli("status", "credit-risk", "--json", "--window", "1h")
        data = json.loads(proc.stdout)
        assert proc.returncode == 1 and "edge-cpu-02" in data["unreachable"]
        assert data["versions"][0]["fleet"]["nodes"] == ["edge-cpu-01"]
        code, agents = _drift_json(ctx, "--window", "1h")
        assert code == 1 and "edge-cpu-02" in agents["unreachable"] and _drifted(agents) == ["income"]
        # Prometheus still has the dark node's samples up to its last scrape: they count, and the notes say when
        code, prom = _drift_json(ctx, "--window", "1h", "--source", "prometheus")
        assert code == 1 and sorted(prom["scopes"][0]["nodes"]) == ["edge-cpu-01", "edge-cpu-02"]
    finally:
        ctx.running.fleet.start("edge-cpu-02")


def test_monitor_run_posts_the_alert_records_it_and_does_not_repeat(ctx: Ctx) -> None:
    policy = ctx.project / "policy" / "monitoring.yaml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text("models:\n  credit-risk:\n    dataset_drift_share: 0.1\n    action: rollback\n")
    receiver = Receiver()
    try:
        first = ctx.cli("monitor", "run", "--once", "--json", "--window", "1h", "--webhook", receiver.url,
                        "--limit", "edge-cpu-01")
        second = ctx.cli("monitor", "run", "--once", "--json", "--window", "1h", "--webhook", receiver.url,
                         "--limit", "edge-cpu-01")
    finally:
        receiver.close()
        policy.unlink()
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    key = "dataset_drift:credit-risk:2:edge-cpu-01"
    assert first.returncode == 1 and key in one["fired"], one
    rollback = next(a for a in one["actions"] if a["key"] == key)
    assert (rollback["action"], rollback["outcome"]) == ("rollback", "ok"), rollback
    run_id = rollback["detail"].removeprefix("run ")
    assert two["fired"] == [] and two["actions"] == []  # no second rollback while the breach is known
    posted = [a for body in receiver.bodies for a in body["alerts"]]
    assert any(a["labels"]["alertname"] == "ModelfleetDatasetDrift" and a["labels"].get("node") == "edge-cpu-01"
               and a["status"] == "firing" for a in posted)
    drift_alerts = [a for a in posted if a["labels"]["alertname"] == "ModelfleetDatasetDrift"]
    # fired once; the rollback took the drifted version off the node, so the next run resolves it (and says so)
    assert [a["status"] for a in drift_alerts] == ["firing", "resolved"] and key in two["resolved"]
    with Ledger(ctx.settings.ledger.url) as ledger:
        actions = [e for e in ledger.events(action="alert_action") if e.details.get("key") == key]
        assert [e.outcome for e in actions] == ["ok"] and actions[0].node == "edge-cpu-01"
        # the rollback is a run like any other, and the ledger says why it happened
        start = ledger.events(run_id=run_id, action="run_start")[0]
        assert start.details["kind"] == "rollback" and start.details["origin"] == "monitor"
        assert start.details["reason"].startswith("dataset_drift") and start.target == "edge-cpu-01"
        node = [e for e in ledger.events(run_id=run_id) if e.node]
        assert [(e.node, e.outcome, e.version) for e in node] == [("edge-cpu-01", "rolled_back", "1")]
        assert ledger.verify().ok
    health = {n.name: httpx.get(n.agent_url + "/health", timeout=5, trust_env=False).json() for n in ctx.nodes()}
    assert str(health["edge-cpu-01"]["version"]) == "1" and str(health["edge-cpu-02"]["version"]) == "2"
