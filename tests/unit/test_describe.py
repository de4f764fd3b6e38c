"""``modelfleet describe node`` without a fleet: a real ledger, a hand-written inventory, agents that refuse.

What it shows on a live fleet (the agents' versions, releases on disk, a model's placements and disagreements)
is checked on the fleet `make run` brings up (tests/integration/test_make_run.py); here: the facts that need no
agent, and the bad inputs (unknown node, malformed reference, negative --tail), through the real executable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelfleet.core.describe import describe_model
from modelfleet.core.registry import ModelSummary, ModelVersionInfo
from modelfleet.runners.health import HealthRow
from tests.unit.cli_support import placed_fleet, run


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    return placed_fleet(tmp_path)


def test_describe_node_from_inventory_and_ledger(project: tuple[Path, dict[str, str]]) -> None:
    folder, env = project
    proc = run(folder, "describe", "node", "edge-arm-01", "--json", **env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["node"], data["class"], data["environment"]) == ("edge-arm-01", "arm", "staging")
    assert data["groups"] == ["edge", "edge_arm", "staging"]
    assert [(m["model"], m["expected_version"], m["verdict"]) for m in data["models"]] == [
        ("credit-risk", "3", "unreachable")]  # the ledger's last word for this node; its agent does not answer
    assert data["health"] == "unreachable"
    assert [r["run_id"] for r in data["runs"]] == ["r2", "r1"]  # newest first
    assert [e["action"] for e in data["ledger"]] == ["node_deploy", "node_deploy"]

    text = run(folder, "describe", "node", "edge-cpu-01", "--tail", "1", **env)
    assert text.returncode == 0, text.stderr
    assert "class        cpu" in text.stdout and "last runs (touching edge-cpu-01" in text.stdout
    assert "r1" in text.stdout and "r2" not in text.stdout  # r2 never touched edge-cpu-01


@pytest.mark.parametrize(
    ("args", "message", "fix"),
    [
        (["describe", "node", "edge-gpu-09"],
         "modelfleet: no node named 'edge-gpu-09' in", "  fix: pick one of the known nodes"),
        (["describe", "model", "credit-risk@@x"], "modelfleet: model reference 'credit-risk@@x'", "  fix: write"),
        (["describe", "node", "edge-cpu-01", "--tail", "-1"], "modelfleet: describe node: --tail: -1 must be 0",
         "  fix: --tail N: how many of the latest runs"),
        (["describe"], "modelfleet: describe: the following arguments are required: KIND",
         "  fix: give KIND: one of node, model"),
    ],
)
def test_bad_input(project: tuple[Path, dict[str, str]], args: list[str], message: str, fix: str) -> None:
    folder, env = project
    proc = run(folder, *args, **env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(message) and lines[1].startswith(fix), proc.stderr
    if "edge-gpu-09" in message:
        assert "known nodes: edge-cpu-01, edge-cpu-02, edge-arm-01" in lines[0]


def test_model_placements_and_disagreements() -> None:
    """Pure: where each version runs per ledger and agents, the disagreement, the alias warning, one version."""
    summary = ModelSummary("credit-risk", "", 3, {"champion": 2, "challenger": 3}, {}, None, None)
    versions = [ModelVersionInfo("credit-risk", v, a, {}, None, {"auc": 0.7 + v / 100, "other": 1.0}, {"t": "x"},
                                 None, "", "READY", "") for v, a in ((3, ("challenger",)), (2, ("champion",)),
                                                                     (1, ()))]
    expected = {("n1", "credit-risk"): "2", ("n2", "credit-risk"): "2", ("n3", "credit-risk"): "3",
                ("n1", "other-model"): "9"}
    answers = [HealthRow("n1", "credit-risk", "2", "u1", "healthy"),
               HealthRow("n2", "credit-risk", "3", "u2", "wrong_version", expected_version="2"),
               HealthRow("n3", "credit-risk", None, "u3", "unreachable")]
    d = describe_model(summary, versions, [], [], answers, expected)
    rows = {v.version: (v.ledger_nodes, v.reported_nodes) for v in d.versions}
    assert rows == {"3": (("n3",), ("n2",)), "2": (("n1", "n2"), ("n1",)), "1": ((), ())}
    assert d.disagreements == ("n2: the ledger says v2, its agent answers v3",)
    assert d.alias_warnings == ("champion is v2 but 1 node run v3",)
    assert d.versions[0].metrics == {"auc": 0.73}  # the summary metrics only
    one = describe_model(summary, versions, [], [], answers, expected, selected=2)
    assert [v.version for v in one.versions] == ["2"] and one.versions[0].metrics["other"] == 1.0
    assert one.versions[0].params == {"t": "x"}
