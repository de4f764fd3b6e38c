"""The deploy's health gate meets a real agent that refuses the release: the gate ends as soon as the agent says so
(``/health``'s ``last_reload``), with the agent's reason in the module's result, instead of polling until its
deadline. The agent runs under a real supervisord and is reloaded by SIGHUP, as on the simulated fleet; the module
``modelfleet_release`` (action ``gate``, the step after the switch) runs through real ``ansible localhost``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.sim.inventory import supervisorctl
from tests.agent import modelkit
from tests.agent.conftest import Models, free_port
from tests.conftest import REPO_ROOT
from tests.supervisord_support import add_program, running_supervisord
from tests.unit.ansible_module_support import run_role_module

WAIT_S = 60.0  # the gate's deadline here: a gate that polled until it would make about this many attempts


def release(root: Path, models: Models, version: str, probe: dict[str, Any], *, drop_model_file: bool = False) -> str:
    """Lay out a release under ``root``'s releases/ as ``<version>-<digest12>``; return that name."""
    work = root / "work" / version
    modelkit.write_release(work, models.dir_v1 if version == "1" else models.dir_v2, version, probe=probe)
    if drop_model_file:  # the MLmodel file names it, the release lacks it
        for name in ("model.pkl", "model.skops"):
            if (work / "model" / name).exists():
                (work / "model" / name).unlink()
    digest = json.loads((work / "manifest.json").read_text())["digest"]
    name = f"{version}-{digest[:12]}"
    (root / "models" / "m" / "releases").mkdir(parents=True, exist_ok=True)
    work.rename(root / "models" / "m" / "releases" / name)
    return name


def switch(root: Path, name: str) -> None:
    tmp = root / "models" / "m" / ".current.tmp"
    tmp.symlink_to(f"releases/{name}")
    os.replace(tmp, root / "models" / "m" / "current")


def gate_polls_until(wait_s: float, backoff_s: float = 0.25, cap_s: float = 1.0) -> int:
    """How many attempts a gate makes when it polls until its deadline (see Gate.run)."""
    attempts, spent = 1, 0.0
    while spent + min(backoff_s * 2 ** (attempts - 1), cap_s) <= wait_s:
        spent += min(backoff_s * 2 ** (attempts - 1), cap_s)
        attempts += 1
    return attempts


def test_the_gate_ends_with_the_agents_reason_when_the_agent_refuses_the_release(models: Models,
                                                                                 tmp_path: Path) -> None:
    with running_supervisord() as node:
        root = node.modelfleet_root
        good = release(root, models, "1", models.probe_v1)
        switch(root, good)
        port = free_port("127.0.0.1")
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "log").mkdir(parents=True, exist_ok=True)
        config = root / "etc" / "m.toml"
        config.write_text(f'[server]\naddress = "127.0.0.1"\nport = {port}\n[model]\nname = "credit-risk"\n'
                          f'current = "{root / "models" / "m" / "current"}"\n')
        add_program(node, "modelfleet-agent-m",
                    f"command = {sys.executable} -m modelfleet.agent.main --config {config}\n"
                    f'environment = PYTHONPATH="{REPO_ROOT / "tui"}"\nstartsecs = 1\n')
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the agent never answered"
            time.sleep(0.2)

        wrong = json.loads(json.dumps(models.probe_v2))
        wrong["expected"]["predictions"] = [1 - p for p in wrong["expected"]["predictions"]]
        cases = [("model file missing", dict(probe=models.probe_v2, drop_model_file=True),
                  "but the file is missing"),
                 ("wrong probe answer", dict(probe=wrong), "the probe answered")]
        for case, kw, agent_says in cases:
            bad = release(root, models, "2", **kw)
            switch(root, bad)  # what the deploy step did before the gate
            args = {"action": "gate", "root": str(root), "model": "m", "node": "edge-t-01", "run_id": "run-1",
                    "version": "2", "digest": bad.split("-")[1], "release": bad, "old_link": f"releases/{good}",
                    "service_manager": "supervisord", "supervisorctl": str(supervisorctl()),
                    "supervisor_conf": str(node.supervisor_conf), "agent_address": "127.0.0.1", "agent_port": port,
                    "gate_wait_s": WAIT_S}
            rc, res = run_role_module(REPO_ROOT / "roles" / "model_release", "modelfleet_release", tmp_path, args)
            assert rc != 0 and res["outcome"] == "rolled_back", (case, res)
            reason = res["agent_refused"]["reason"]
            assert agent_says in reason and res["agent_refused"]["release"] == bad, (case, res)
            assert f"agent refused release {bad}: {reason}" in res["msg"], (case, res["msg"])
            verdict = res["modelfleet"]["gate"]
            # ended on the agent's word, long before polling to the deadline would have
            assert verdict["refused"] and verdict["attempts"] < gate_polls_until(WAIT_S) // 2, (case, verdict)
            assert os.readlink(root / "models" / "m" / "current") == f"releases/{good}"  # switched back
            assert res["modelfleet"]["old_answers"] and not (root / "models" / "m" / "releases" / bad).exists()
            line = json.loads((root / "log" / "deployments.jsonl").read_text().splitlines()[-1])
            assert line["outcome"] == "rolled_back" and agent_says in line["error"], (case, line)


pytestmark = pytest.mark.slow
