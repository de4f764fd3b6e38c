"""The repository's ansible.cfg runs playbooks with ``modelfleet_linear``: Mitogen when installed, else linear."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"

pytestmark = pytest.mark.integration

PLAY = """\
- name: Strategy check
  hosts: localhost
  gather_facts: false
  tasks:
    - name: First module run (its command prints the pid of the process that ran the module)
      ansible.builtin.command:
        argv: [sh, -c, 'echo $PPID']
      register: first
      changed_when: false
    - name: Second module run
      ansible.builtin.command:
        argv: [sh, -c, 'echo $PPID']
      register: second
      changed_when: false
    - name: Report
      ansible.builtin.debug:
        msg: "MODULE-PIDS {{ first.stdout }} {{ second.stdout }}"
"""


def _module_pids(out: str) -> tuple[str, str]:
    found = re.search(r"MODULE-PIDS (\d+) (\d+)", out)
    assert found, out[-3000:]
    return found[1], found[2]


def _run(tmp_path: Path, extra_pythonpath: Path | None = None, play_text: str = PLAY,
         ) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "play.yml"
    play.write_text(play_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    callbacks = tmp_path / "callbacks"
    callbacks.mkdir(exist_ok=True)
    env["ANSIBLE_CALLBACK_PLUGINS"] = str(callbacks)  # the ledger callback is not found: no ledger for this check
    if extra_pythonpath is not None:
        env["PYTHONPATH"] = str(extra_pythonpath)
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_modules_run_in_one_persistent_interpreter_through_mitogen(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first, second = _module_pids(run.stdout)
    assert first == second, "each module ran in an interpreter of its own: Mitogen is not in use"
    assert "mitogen is not installed" not in run.stdout + run.stderr


def test_without_mitogen_the_strategy_is_plain_linear_and_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "no-mitogen" / "ansible_mitogen"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    run = _run(tmp_path, extra_pythonpath=blocker.parent)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "mitogen is not installed (blocked for this test)" in " ".join((run.stdout + run.stderr).split())
    first, second = _module_pids(run.stdout)
    assert first != second  # plain Ansible: one AnsiballZ interpreter per module run


DEPRECATING_MODULE = """\
#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule


def main():
    AnsibleModule(argument_spec={}).exit_json(
        changed=False, deprecations=[{"msg": "TEST-DEPRECATION from a module", "version": "9.99"}])


if __name__ == "__main__":
    main()
"""

PLAY_WITH_A_DEPRECATION = """\
- name: A deprecation that must still be shown
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A module that reports a deprecation
      deprecating:
"""


def test_the_third_party_strategy_notice_is_gone_and_other_deprecations_stay(tmp_path: Path) -> None:
    """ansible-core warns that non-builtin strategies are deprecated on every run; modelfleet_linear drops exactly
    that notice (it opened every console run's output), and a deprecation from anywhere else is still shown."""
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "deprecating.py").write_text(DEPRECATING_MODULE)
    run = _run(tmp_path, play_text=PLAY_WITH_A_DEPRECATION)  # (library/ beside the playbook)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "strategy plugins not included in ansible.builtin" not in out
    assert "[DEPRECATION WARNING]" in out and "TEST-DEPRECATION from a module" in out
