"""Run the roles' own modules (``roles/<role>/library``) through real ``ansible localhost`` (local connection), the
way a play calls them, and return (rc, result); or a role's entry point (its task file) through real
``ansible-playbook`` on localhost, with every task's result."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = str(Path(sys.executable).parent / "ansible")


def run_role_module(role: Path, name: str, tmp: Path, args: dict[str, Any], *,
                    check: bool = False) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MODELFLEET_"))}
    env.update(ANSIBLE_LIBRARY=str(role / "library"), ANSIBLE_MODULE_UTILS=str(role / "module_utils"),
               ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    (tmp / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")  # not the repository's (its strategy)
    env["ANSIBLE_CONFIG"] = str(tmp / "ansible.cfg")
    cmd = [ANSIBLE, "localhost", "-c", "local", "-m", name, "-a", json.dumps(args)]
    proc = subprocess.run(cmd + (["--check", "--diff"] if check else []), capture_output=True, text=True,
                          env=env, cwd=tmp, timeout=120, check=False)
    head, _, body = proc.stdout.partition(" => ")  # minimal callback: "localhost | FAILED! => {...}"
    try:
        result = json.loads(body)
    except ValueError:
        pytest.fail(f"no result from ansible (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result["_output"] = head  # with --diff, the diff is printed before the result
    return proc.returncode, result


class PlayRun:
    """One ``ansible-playbook`` run on localhost: its exit code, output and every task result, in order."""

    def __init__(self, rc: int, out: str, results: list[tuple[str, dict[str, Any]]]) -> None:
        self.rc = rc
        self.out = out
        self.results = results  # (status as printed: SUCCESS, CHANGED, FAILED!, ...; result) of the host read

    @property
    def facts(self) -> dict[str, Any]:
        """The host's facts as the play left them (every set_fact and ansible_facts merged, in order)."""
        facts: dict[str, Any] = {}
        for _, res in self.results:
            facts.update(res.get("ansible_facts") or {})
        return facts

    @property
    def failure(self) -> str:
        """The message of the task that failed the host (empty when none did)."""
        return next((str(res.get("msg", "")) for status, res in reversed(self.results) if status == "FAILED!"), "")


def run_playbook_locally(playbook: Path, tmp: Path, extra_vars: dict[str, Any], *, check: bool = False,
                         limit: str | None = None, inventory: str = "localhost,", host: str = "localhost",
                         args: list[str] | None = None) -> PlayRun:
    """``ansible-playbook`` with the repository's roles on localhost (local connection), minimal callback: every
    task prints ``<host> | STATUS => {result}``; ``host``'s are read back into :class:`PlayRun`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MODELFLEET_"))}
    env.update(ANSIBLE_ROLES_PATH=str(REPO_ROOT / "roles"), ANSIBLE_STDOUT_CALLBACK="minimal",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_CONFIG=str(tmp / "ansible.cfg"))
    (tmp / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    cmd = [str(Path(ANSIBLE).with_name("ansible-playbook")), "-i", inventory, "-c", "local", str(playbook),
           "-e", json.dumps(extra_vars)]
    if limit:
        cmd += ["--limit", limit]
    cmd += args or []
    proc = subprocess.run(cmd + (["--check"] if check else []), capture_output=True, text=True, env=env, cwd=tmp,
                          timeout=300, check=False)
    decoder = json.JSONDecoder()
    results: list[tuple[str, dict[str, Any]]] = []
    for match in re.finditer(rf"^{re.escape(host)} \| (\S+) => ", proc.stdout, re.M):
        result, _ = decoder.raw_decode(proc.stdout, match.end())
        results.append((match.group(1), result))
    return PlayRun(proc.returncode, proc.stdout + proc.stderr, results)


def role_entry_playbook(tmp: Path, role: str, tasks_from: str) -> Path:
    """A one-play playbook on localhost that runs ``role``'s ``tasks_from`` entry point."""
    path = tmp / f"{role}-{tasks_from}.yml"
    path.write_text(json.dumps([{"name": f"{role} {tasks_from}", "hosts": "localhost", "gather_facts": False,
                                 "tasks": [{"name": "entry", "ansible.builtin.include_role": {
                                     "name": role, "tasks_from": tasks_from}}]}]), encoding="utf-8")
    return path


def install_governance(root: Path, trust: dict[str, Any] | None = None, environment: str = "") -> None:
    """What provisioning installs under a node root for governance (edge_runtime): the trust file (default: one
    that protects nothing) and the node's environment."""
    folder = root / "etc" / "governance"
    folder.mkdir(parents=True, exist_ok=True)
    doc = trust or {"format": "modelfleet-trust/1", "people": [], "environments": {}}
    (folder / "trust.json").write_text(json.dumps(doc) + "\n", encoding="utf-8")
    (folder / "environment").write_text(environment + "\n", encoding="utf-8")
