"""Run one of the roles' own modules (``roles/<role>/library``) through real ``ansible localhost`` (local
connection), the way a play calls it, and return (rc, result)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
