"""Pin -> bundle -> run -> record on the simulated fleet: real ansible-playbook over SSH, real agents.

On the session's shared provisioned fleet (tests/provisioned.py: 6 nodes on 127.0.78.1-6, seeded, provisioned
and on ``credit-risk/1``, reset once before the first test); the tests run in file order and each starts from
the fleet the previous one left. Waves are the default ``[1, "25%", "100%"]``: on 6 nodes, batches of 1, 1 and 4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.core.bundle import verify_bundle
from modelfleet.core.ledger import Ledger
from modelfleet.runners.events import EventKind
from modelfleet.runners.pipeline import replay
from tests.conftest import REPO_ROOT
from tests.integration.simfleet import ProjectCtx, run_processes
from tests.provisioned import ProvisionedFleet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3000)]

MODELFLEET = str(Path(sys.executable).parent / "modelfleet")
NODES = ["edge-cpu-01", "edge-cpu-02", "edge-cpu-03", "edge-gpu-01", "edge-arm-01", "edge-arm-02"]


class Ctx(ProjectCtx):
    def deploy(self, ref: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        proc = self.cli("deploy", ref, "--yes", "--json", *extra)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"deploy {ref} printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc, data

    def node_root(self, node: str) -> Path:
        return Path(self.running.fleet.nodes_dir / node / "opt" / "modelfleet")

    def versions(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for node in NODES:
            link = self.node_root(node) / "models" / "credit-risk" / "current"
            out[node] = os.readlink(link).split("/")[-1].split("-")[0] if link.is_symlink() else None
        return out

    def agents(self) -> dict[str, dict[str, Any]]:
        inv = self.settings.fleet.inventory
        from modelfleet.core.fleet import Inventory

        out = {}
        for node in Inventory.load(inv).nodes:
            try:
                out[node.name] = httpx.get(node.agent_url + "/health", timeout=3, trust_env=False).json()
            except httpx.HTTPError as exc:
                out[node.name] = {"error": str(exc)}
        return out

    def bad_probe(self, nodes: list[str], ref_bundle: Path) -> None:
        """Give ``nodes`` a probe whose expected answer is wrong (host_vars next to the inventory)."""
        manifest = verify_bundle(ref_bundle, self.settings.state_dir / "keys" / "release.pub")
        assert manifest.probe is not None
        wrong = {"request": manifest.probe["request"], "expected": {"predictions": [-12345] * 3}}
        folder = Path(self.settings.fleet.inventory).parent / "host_vars"
        folder.mkdir(exist_ok=True)
        for node in nodes:
            (folder / f"{node}.yml").write_text(json.dumps({"model_release_probe": wrong}), encoding="utf-8")

    def clear_bad_probes(self) -> None:
        folder = Path(self.settings.fleet.inventory).parent / "host_vars"
        for path in folder.glob("*.yml") if folder.is_dir() else []:
            path.unlink()

    def diagnostics(self) -> str:
        """The tail of every node's agent logs (for failure messages)."""
        out = []
        for node in NODES:
            for log in sorted((self.node_root(node) / "log").glob("agent-*.log")):
                lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                out.append(f"--- {node} {log.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def ledger_events(self, run_id: str) -> list[Any]:
        with Ledger(self.settings.ledger.url) as ledger:
            return ledger.events(run_id=run_id)


@pytest.fixture(scope="module")
def ctx(provisioned_fleet: ProvisionedFleet) -> Iterator[Ctx]:
    provisioned_fleet.reset()
    c = Ctx(provisioned_fleet.running, provisioned_fleet.project)
    yield c
    c.clear_bad_probes()


def test_deploy_champion_every_agent_answers_the_probe(ctx: Ctx) -> None:
    proc, data = ctx.deploy("credit-risk@champion")
    assert proc.returncode == 0, proc.stderr + ctx.diagnostics()
    assert data["release"]["version"] == "2" and data["release"]["probe"] == "input_example"
    manifest = verify_bundle(Path(data["release"]["bundle"]), ctx.settings.state_dir / "keys" / "release.pub")
    assert manifest.probe is not None
    for node, health in ctx.agents().items():
        assert health.get("version") == "2", (node, health)
    from modelfleet.core.fleet import Inventory

    for node in Inventory.load(ctx.settings.fleet.inventory).nodes:
        answer = httpx.post(node.agent_url + "/invocations", json=manifest.probe["request"], timeout=5,
                            trust_env=False).json()
        assert answer == manifest.probe["expected"], node.name
    health = ctx.cli("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    rows = json.loads(health.stdout)
    assert {(r["node"], r["model"], r["version"], r["verdict"]) for r in rows} == {
        (n, "credit-risk", "2", "healthy") for n in NODES}
    assert all(r["url"].endswith(":8080") for r in rows)


def test_same_deploy_again_changes_nothing(ctx: Ctx) -> None:
    proc, data = ctx.deploy("credit-risk@champion")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sum(h["changed"] for h in data["hosts"].values()) == 0 and data["changed"] == 0
    assert {h["outcome"] for h in data["hosts"].values()} == {"ok"} and data["outcome"] == "ok"
    assert "nothing changed" in ctx.cli("deploy", "credit-risk@champion", "--yes").stdout


def test_challenger_rolls_out_in_waves_of_1_then_25pct_then_the_rest(ctx: Ctx) -> None:
    proc, data = ctx.deploy("credit-risk@challenger")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [len(b) for b in data["batches"]] == [1, 1, 4]
    assert set(ctx.versions().values()) == {"3"}
    assert [len(b) for b in replay(ctx.settings, data["run_id"]).batches] == [1, 1, 4]


def test_wrong_probe_answer_rolls_one_node_back(ctx: Ctx) -> None:
    bundle = Path(json.loads(ctx.cli("bundle", "credit-risk/1", "--json").stdout)["bundle"])
    ctx.bad_probe(["edge-gpu-01"], bundle)
    try:
        proc, data = ctx.deploy("credit-risk/1")
    finally:
        ctx.clear_bad_probes()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert data["hosts"]["edge-gpu-01"]["outcome"] == "reverted" and data["outcome"] == "failed"
    assert {h: s["outcome"] for h, s in data["hosts"].items() if h != "edge-gpu-01"} == dict.fromkeys(
        set(NODES) - {"edge-gpu-01"}, "changed")
    versions = ctx.versions()
    assert versions.pop("edge-gpu-01") == "3" and set(versions.values()) == {"1"}
    assert ctx.agents()["edge-gpu-01"].get("version") == "3"
    # back on its previous release within 10 s of the failed check: the node-side step's own record, as the
    # run's event stream carries it (the failed gate, then the old release answering again)
    from modelfleet.runners.events import parse_event
    from modelfleet.runners.runstate import iter_artifact_events

    events = [parse_event(raw) for raw in iter_artifact_events(Path(data["artifacts"]))]
    step = next(e.data["modelfleet"] for e in events if e.host == "edge-gpu-01" and e.kind is EventKind.HOST_FAILED
                and "modelfleet" in e.data)
    assert step["outcome"] == "rolled_back" and "differs from the expected" in step["error"], step
    assert 0 <= step["rolled_back_at"] - step["gate_failed_at"] < 10, step
    # one final event per node in the ledger
    nodes = [e for e in ctx.ledger_events(data["run_id"]) if e.node]
    assert sorted(e.node for e in nodes) == sorted(NODES)
    assert {e.node: e.outcome for e in nodes}["edge-gpu-01"] == "reverted"


def test_failure_budget_stops_later_batches(ctx: Ctx) -> None:
    before = ctx.versions()  # 1 everywhere but edge-gpu-01 (3)
    bundle = Path(json.loads(ctx.cli("bundle", "credit-risk/2", "--json").stdout)["bundle"])
    ctx.bad_probe(["edge-cpu-02", "edge-cpu-03", "edge-gpu-01"], bundle)
    try:
        proc, data = ctx.deploy("credit-risk/2", "--max-fail", "20")
    finally:
        ctx.clear_bad_probes()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    after = ctx.versions()
    assert after["edge-cpu-01"] == "2"  # batch 1 went through
    assert after["edge-cpu-02"] == before["edge-cpu-02"]  # batch 2 failed and was rolled back
    for node in NODES[2:]:  # batch 3 never started
        assert after[node] == before[node]
        assert data["hosts"][node]["outcome"] == "not_started"
    recorded = {e.node: e.outcome for e in ctx.ledger_events(data["run_id"]) if e.node}
    assert recorded == {"edge-cpu-01": "changed", "edge-cpu-02": "reverted", **dict.fromkeys(NODES[2:], "not_started")}
    # health says the fleet is not where this run meant it to be
    health = ctx.cli("health", "--json")
    assert health.returncode == 1
    verdicts = {r["node"]: r["verdict"] for r in json.loads(health.stdout)}
    assert verdicts["edge-cpu-01"] == "healthy" and {verdicts[n] for n in NODES[1:]} == {"behind"}


def test_revert_on_abort_returns_updated_nodes(ctx: Ctx) -> None:
    before = ctx.versions()  # edge-cpu-01 on 2
    bundle = Path(json.loads(ctx.cli("bundle", "credit-risk/3", "--json").stdout)["bundle"])
    ctx.bad_probe(["edge-cpu-02", "edge-cpu-03", "edge-gpu-01"], bundle)
    try:
        proc, data = ctx.deploy("credit-risk/3", "--max-fail", "20", "--revert-on-abort")
    finally:
        ctx.clear_bad_probes()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ctx.versions() == before
    assert data["hosts"]["edge-cpu-01"]["outcome"] == "reverted"
    assert ctx.agents()["edge-cpu-01"].get("version") == before["edge-cpu-01"]


def test_node_killed_mid_run_is_unreachable_and_rerun_converges(ctx: Ctx) -> None:
    from modelfleet.runners.pipeline import launch
    from modelfleet.runners.requests import DeployRequest

    killed = threading.Event()

    def on_event(event: Any) -> None:
        if event.kind is EventKind.PLAY_START and event.batch == 2 and not killed.is_set():
            killed.set()
            threading.Thread(target=ctx.running.fleet.kill, args=("edge-arm-02",), daemon=True).start()

    handle = launch(ctx.settings, DeployRequest(ref="credit-risk/3", max_fail=50), on_event=on_event)
    result = handle.wait(1500)
    assert killed.is_set()
    statuses = {h: result.outcome_of(h) for h in result.hosts}
    assert statuses.pop("edge-arm-02") == "unreachable"
    assert set(statuses.values()) <= {"changed", "ok"}
    ctx.running.fleet.start("edge-arm-02")
    proc, _ = ctx.deploy("credit-risk/3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(ctx.versions().values()) == {"3"}


def _run_alive(run_id: str) -> bool:
    return bool(run_processes(run_id))


def test_controller_killed_mid_rollout_then_rerun_converges(ctx: Ctx) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFLEET_", "ANSIBLE_"))}
    proc = subprocess.Popen([MODELFLEET, "deploy", "credit-risk/1", "--yes"], cwd=ctx.project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_id = None
    deadline = time.monotonic() + 900
    with Ledger(ctx.settings.ledger.url) as ledger:
        while time.monotonic() < deadline and proc.poll() is None:
            runs = [r for r in ledger.runs() if r.version == "1" and r.outcome == "incomplete"]
            if runs:
                run_id = runs[-1].run_id
                if any(e.node for e in ledger.events(run_id=run_id)):  # batch 1 done, batch 2 running
                    break
            time.sleep(0.5)
    assert run_id is not None and proc.poll() is None, "the deploy ended before it could be killed"
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 60
    while _run_alive(run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _run_alive(run_id), f"ansible-playbook outlived its controller: {run_processes(run_id)}"
    rerun, data = ctx.deploy("credit-risk/1")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert set(ctx.versions().values()) == {"1"}
    with Ledger(ctx.settings.ledger.url) as ledger:
        outcome = {r.run_id: r.outcome for r in ledger.runs()}
        start = ledger.events(run_id=data["run_id"], action="run_start")[0]
    assert outcome[run_id] == "incomplete"
    assert start.details.get("closed_dead_runs") == [run_id]
    listing = ctx.cli("ledger", "runs")
    assert run_id in listing.stdout and "incomplete" in listing.stdout


def test_ledger_verifies_after_all_that(ctx: Ctx) -> None:
    verify = ctx.cli("ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ledger ok" in verify.stdout


def test_repo_root_is_where_the_playbooks_are() -> None:
    assert (REPO_ROOT / "playbooks" / "deploy.yml").is_file()
