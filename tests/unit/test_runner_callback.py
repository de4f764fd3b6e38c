"""The ledger callback plugin, driven through real ``ansible-playbook`` runs of a tiny local playbook with the
repository's ansible.cfg (no fake Ansible objects)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet.core.ledger import Ledger
from tests.conftest import REPO_ROOT
from tests.unit.test_runner import INVENTORY, PLAYBOOK

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def _run(tmp: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp / "inv.yml").write_text(INVENTORY, encoding="utf-8")
    (tmp / "pb.yml").write_text(PLAYBOOK, encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MODELFLEET_"))}
    base.update(ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **env)
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp / "inv.yml"), str(tmp / "pb.yml"), *extra],
                          capture_output=True, text=True, env=base, cwd=tmp, timeout=300, check=False)


def test_plain_ansible_playbook_run_is_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    proc = _run(tmp_path, "-e", "model_release_model=m", "-e", "model_release_version=3",
                "-e", "model_release_digest=" + "a" * 64, "--limit", "edge", MODELFLEET_LEDGER_URL=url,
                MODELFLEET_ACTOR="ci")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # n3 failed its gate
    with Ledger(url) as ledger:
        events = ledger.events()
        assert ledger.verify().ok
    assert events[0].action == "run_start" and events[-1].action == "run_end"
    run_ids = {e.run_id for e in events}
    assert len(run_ids) == 1 and None not in run_ids
    nodes = [e for e in events if e.node]
    assert sorted(e.node for e in nodes if e.node) == ["n1", "n2", "n3", "n4"]  # one final event per node
    outcome = {e.node: e.outcome for e in nodes}
    assert outcome == {"n1": "changed", "n2": "changed", "n3": "reverted", "n4": "changed"}
    assert all(e.action == "node_pb" and e.actor == "ci" and e.model == "m" and e.version == "3" for e in nodes)
    assert nodes[0].details["agent_port"] == 8081 and nodes[0].details["batch"] == 1
    assert events[0].details["origin"] == "ansible-playbook" and events[0].target == "edge"
    assert events[-1].outcome == "failed" and events[-1].details["outcomes"]["reverted"] == 1
    # the batch-1 node is recorded when its batch ends, before the later batches run
    assert nodes[0].node == "n1"


def test_caller_owned_run_gets_only_node_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    proc = _run(tmp_path, "-e", "modelfleet_run_id=run-7", "--limit", "n1,n2", MODELFLEET_LEDGER_URL=url,
                MODELFLEET_LEDGER_RUN_OWNER="caller", MODELFLEET_RUN_KIND="deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with Ledger(url) as ledger:
        events = ledger.events()
    assert {e.action for e in events} == {"node_deploy"}
    assert {e.run_id for e in events} == {"run-7"} and len(events) == 2


def test_existing_run_start_is_not_repeated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as ledger:
        ledger.append("run_start", actor="cli", run_id="run-8", outcome="started", details={"kind": "deploy"})
    proc = _run(tmp_path, "--limit", "n1", MODELFLEET_LEDGER_URL=url, MODELFLEET_RUN_ID="run-8")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with Ledger(url) as ledger:
        actions = [e.action for e in ledger.events(run_id="run-8")]
    assert actions == ["run_start", "node_pb"]


@pytest.mark.parametrize("url", ["postgresql+psycopg2://nobody@127.0.0.1:1/none", "mysql://x@127.0.0.1/db"])
def test_unreachable_ledger_warns_and_never_breaks_the_playbook(tmp_path: Path, url: str) -> None:
    proc = _run(tmp_path, "--limit", "n1,n2", MODELFLEET_LEDGER_URL=url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "NOT being recorded" in out
    assert "were NOT recorded" in out and "node_pb node=n1" in out


DELEGATING_PLAYBOOK = """
- name: Rollout
  hosts: n1,n2
  gather_facts: false
  serial: 1
  tasks:
    - name: Change something
      ansible.builtin.command: "true"
    - name: Revert | switch `current` back on the first node (as the budget revert does; the module says so)
      ansible.builtin.set_fact:
        modelfleet_rolled_back: true
      delegate_to: n1
      when: inventory_hostname == 'n2'
"""


def test_delegated_revert_marks_the_node_it_ran_on(tmp_path: Path, settings: object) -> None:
    from dataclasses import replace as dc_replace

    from modelfleet.runners.pipeline import launch
    from tests.unit.test_runner import TinyRequest

    (tmp_path / "inv.yml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "deleg.yml").write_text(DELEGATING_PLAYBOOK, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    s = dc_replace(settings, ledger=dc_replace(settings.ledger, url=url))  # type: ignore[type-var]
    result = launch(s, TinyRequest(path=tmp_path / "deleg.yml", inventory=tmp_path / "inv.yml",  # type: ignore[arg-type]
                                   limit="n1,n2")).wait(300)
    assert result.status == "successful"
    assert result.outcome_of("n1") == "reverted" and result.outcome_of("n2") == "changed"
    with Ledger(url) as ledger:
        nodes = [(e.node, e.outcome) for e in ledger.events() if e.node]
    # n1 is recorded when its batch ends, then again when the later batch reverts it
    assert [o for n, o in nodes if n == "n1"] == ["changed", "reverted"]
    assert [o for n, o in nodes if n == "n2"] == ["changed"]


RUN_ID_PLAYBOOK = """
- name: The run id the nodes see
  hosts: n1
  gather_facts: false
  tasks:
    - name: This run's id (as deploy.yml, rollback.yml and unlock.yml make it)
      ansible.builtin.import_role:
        name: model_release
        tasks_from: run
    - name: Write it down
      ansible.builtin.copy:
        content: "{{ hostvars['localhost'].model_release_run.run_id }}"
        dest: "{{ out }}"
        mode: "0644"
      delegate_to: localhost
"""


def test_a_plain_run_has_one_id_in_the_ledger_and_on_the_nodes(tmp_path: Path) -> None:
    """The id a plain ansible-playbook run records in the ledger is the id its locks and node journals carry,
    so that a later run can tell the node that run is over (model_release_ended_runs)."""
    (tmp_path / "inv.yml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "ids.yml").write_text(RUN_ID_PLAYBOOK, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MODELFLEET_"))}
    env.update(ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", MODELFLEET_LEDGER_URL=url)
    out = tmp_path / "run_id.txt"
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inv.yml"), str(tmp_path / "ids.yml"),
                           "-e", f"out={out}"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with Ledger(url) as ledger:
        run_ids = {e.run_id for e in ledger.events()}
    assert run_ids == {out.read_text()}
