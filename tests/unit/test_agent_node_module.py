"""``modelfleet_agent_node`` (model_agent's node-side preflight) run by real ``ansible localhost``: the port chosen
and recorded, tokens created once, idempotence, check mode, and the refusals that must change nothing (agent not
installed, a port another model holds, a damaged port record, a bad model name)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.unit.ansible_module_support import run_role_module

ROLE = REPO_ROOT / "roles" / "model_agent"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "node"
    agent = r / "agent" / "venv" / "bin" / "modelfleet-agent"
    agent.parent.mkdir(parents=True)
    agent.write_text("#!/bin/sh\n", encoding="utf-8")
    return r


def call(tmp: Path, root: Path, *, check: bool = False, **kw: Any) -> tuple[int, dict[str, Any]]:
    args = {"root": str(root), "model": "credit-risk", "node": "edge-t-01", "tokens": ["admin-token"]}
    args.update(kw)
    return run_role_module(ROLE, "modelfleet_agent_node", tmp, args, check=check)


def ports(root: Path) -> dict[str, int]:
    return json.loads((root / "etc" / "agents" / "ports.json").read_text(encoding="utf-8"))


def test_first_call_records_the_first_free_port_and_creates_the_token_once(tmp_path: Path, root: Path) -> None:
    (root / "etc" / "agents").mkdir(parents=True)
    (root / "etc" / "agents" / "ports.json").write_text('{"churn": 8080}\n', encoding="utf-8")
    rc, res = call(tmp_path, root, port_base=8080)
    assert rc == 0 and res["changed"]
    assert res["ansible_facts"] == {"model_agent_port": 8081}
    assert ports(root) == {"churn": 8080, "credit-risk": 8081}
    token = root / "etc" / "agents" / "credit-risk.admin-token"
    text = token.read_text(encoding="utf-8")
    assert len(text.strip()) == 40 and text.strip().isalnum()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600

    rc, again = call(tmp_path, root, port_base=8080)
    assert rc == 0 and not again["changed"], "a second run changes nothing"
    assert again["ansible_facts"] == {"model_agent_port": 8081}
    assert token.read_text(encoding="utf-8") == text, "an existing token is never replaced"


def test_explicit_port_wins_and_a_new_token_kind_is_a_change(tmp_path: Path, root: Path) -> None:
    rc, res = call(tmp_path, root, ports={"credit-risk": 9100})
    assert rc == 0 and res["ansible_facts"]["model_agent_port"] == 9100 and ports(root) == {"credit-risk": 9100}
    rc, res = call(tmp_path, root, ports={"credit-risk": 9100}, tokens=["admin-token", "token"])
    assert rc == 0 and res["changed"] and [Path(p).name for p in res["created_tokens"]] == ["credit-risk.token"]


def test_check_mode_reports_the_change_and_writes_nothing(tmp_path: Path) -> None:
    bare = tmp_path / "unprovisioned"  # check mode does not require the agent to be installed yet
    rc, res = call(tmp_path, bare, check=True)
    assert rc == 0 and res["changed"] and res["ansible_facts"]["model_agent_port"] == 8080
    assert '"credit-risk": 8080' in res["_output"], "the port record's diff is shown"
    assert not bare.exists()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["no_agent", "port_taken", "damaged_record", "bad_name"])
def test_refusals_name_the_problem_and_change_nothing(tmp_path: Path, root: Path, case: str) -> None:
    agents = root / "etc" / "agents"
    agents.mkdir(parents=True)
    (agents / "ports.json").write_text('{"churn": 8080}\n', encoding="utf-8")
    kw: dict[str, Any] = {}
    if case == "no_agent":
        os.unlink(root / "agent" / "venv" / "bin" / "modelfleet-agent")
        expected = "provision it first"
    elif case == "port_taken":
        kw["ports"] = {"credit-risk": 8080}
        expected = "port 8080 for credit-risk on edge-t-01 is already recorded for churn"
    elif case == "damaged_record":
        (agents / "ports.json").write_text('{"churn": "eighty"', encoding="utf-8")
        expected = "cannot read " + str(agents / "ports.json")
    else:
        kw["model"] = "../etc"
        expected = "is not a model name"
    before = _tree(root)
    rc, res = call(tmp_path, root, **kw)
    assert rc != 0
    assert expected in res["msg"]
    assert _tree(root) == before
