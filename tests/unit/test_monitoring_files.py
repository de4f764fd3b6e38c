"""monitoring/: the rules load in Debian's promtool, the config is valid, every alert has `for:`, a severity and a
runbook entry in docs/runbook.md; the file_sd targets come from the inventory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from modelfleet.core.fleet import Inventory, Node, NodeClass
from modelfleet.core.prometheus_targets import file_sd, write_file_sd
from tests.conftest import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is not installed; fix: sudo apt-get install -y prometheus (make test does it)"
    return found


def test_rules_and_config_pass_promtool() -> None:
    rules = sorted(str(p) for p in (MONITORING / "rules").glob("*.yml"))
    done = subprocess.run([_promtool(), "check", "rules", *rules], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([_promtool(), "check", "config", str(MONITORING / "prometheus.yml")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_for_severity_and_a_runbook_entry() -> None:
    runbook = (REPO_ROOT / "docs" / "runbook.md").read_text()
    alerts = [r for g in yaml.safe_load((MONITORING / "rules" / "alerts.yml").read_text())["groups"]
              for r in g["rules"]]
    assert {a["alert"] for a in alerts} >= {"ModelfleetAgentDown", "ModelfleetLatencySLOBreach",
                                             "ModelfleetHighErrorRate"}
    for a in alerts:
        assert a.get("for") and a["labels"]["severity"] in ("info", "warning", "critical"), a["alert"]
        anchor = a["annotations"]["runbook_url"].split("#")[1]
        assert f'<a id="{anchor}"></a>' in runbook, f"docs/runbook.md has no entry for {a['alert']}"
    # the alerts the monitoring loop posts (core/alerts.py) have runbook entries too
    from modelfleet.core.alerts import ALERT_NAMES

    for name in ALERT_NAMES.values():
        assert f'<a id="{name.lower()}"></a>' in runbook, name


def test_file_sd_targets_from_the_inventory(tmp_path: Path) -> None:
    nodes = [Node("edge-cpu-01", "127.0.10.1", NodeClass.CPU, groups=("edge", "edge_cpu", "staging")),
             Node("edge-arm-01", "127.0.10.2", NodeClass.ARM, agent_port=8081, groups=("edge", "edge_arm"))]
    groups = file_sd(Inventory(nodes, {"edge": ["edge-cpu-01", "edge-arm-01"]}))
    assert groups == [
        {"targets": ["127.0.10.1:8080"], "labels": {"node": "edge-cpu-01", "node_class": "cpu",
                                                   "groups": "edge,edge_cpu,staging", "environment": "staging"}},
        {"targets": ["127.0.10.2:8081"], "labels": {"node": "edge-arm-01", "node_class": "arm",
                                                   "groups": "edge,edge_arm"}},
    ]
    out = tmp_path / "targets" / "agents.json"
    assert write_file_sd(out, groups) is True and write_file_sd(out, groups) is False
    assert json.loads(out.read_text()) == groups
