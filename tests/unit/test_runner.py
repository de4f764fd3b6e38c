"""runners/ansible.py and runners/events.py: real ansible-playbook runs of a tiny local playbook (connection
local, no ssh), event typing, batches, rescued failures, rolled-back hosts, cancel, run folders and replay."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from modelfleet.core.config import Settings
from modelfleet.core.errors import RunError
from modelfleet.runners.ansible import AnsibleRun, RunSpec, list_runs, new_run_id, replay
from modelfleet.runners.events import EventKind, HostStatus, RunTracker, parse_event

HOSTS = ["n1", "n2", "n3", "n4"]

INVENTORY = f"""
all:
  children:
    edge:
      vars:
        ansible_connection: local
        ansible_python_interpreter: {sys.executable}
      hosts:
        n1: {{}}
        n2: {{}}
        n3: {{fail_me: true}}
        n4: {{}}
"""

PLAYBOOK = """
- name: Controller play
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
- name: Rollout
  hosts: edge
  gather_facts: false
  serial: "{{ waves | default([1, '50%', '100%']) }}"
  tasks:
    - name: Change something
      ansible.builtin.command: "true"
    - name: Record the agent port
      ansible.builtin.set_fact:
        model_agent_port: 8081
    - name: Gate
      block:
        - name: Gate | probe
          ansible.builtin.fail:
            msg: probe answer is wrong
          when: fail_me | default(false)
      rescue:
        - name: Recover | switch `current` back
          ansible.builtin.command: "true"
        - name: Re-raise
          ansible.builtin.fail:
            msg: rolled back after a failed gate
"""

SLOW_PLAYBOOK = """
- name: Slow
  hosts: edge
  gather_facts: false
  tasks:
    - name: Sleep
      ansible.builtin.command: sleep 60
"""


@pytest.fixture
def project(tmp_path: Path, settings: Settings) -> tuple[Settings, Path, Path]:
    (tmp_path / "inv.yml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "pb.yml").write_text(PLAYBOOK, encoding="utf-8")
    (tmp_path / "slow.yml").write_text(SLOW_PLAYBOOK, encoding="utf-8")
    settings = replace(settings, ledger=replace(settings.ledger, url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    return settings, tmp_path / "inv.yml", tmp_path


def test_run_types_events_batches_and_rolled_back_hosts(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    seen: list[EventKind] = []
    raw_count = []
    run = AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), inventory, hosts=HOSTS, kind="deploy"),
                     on_event=lambda e: seen.append(e.kind), on_raw_event=lambda r: raw_count.append(1))
    result = run.run(timeout=300)

    assert result.status == "failed" and result.rc == 2
    assert [sorted(b) for b in result.batches] == [["n1"], ["n2", "n3"], ["n4"]]
    states = {h: st.status for h, st in result.hosts.items()}
    assert states == {"n1": HostStatus.CHANGED, "n2": HostStatus.CHANGED, "n3": HostStatus.ROLLED_BACK,
                      "n4": HostStatus.CHANGED}
    assert "localhost" not in result.hosts
    n3 = result.hosts["n3"]
    assert n3.rolled_back and n3.failing and n3.batch == 2 and "rolled back" in (n3.message or "")
    assert result.hosts["n1"].agent_port == 8081
    assert result.failed_hosts == ["n3"]
    for kind in (EventKind.PLAY_START, EventKind.TASK_START, EventKind.HOST_CHANGED, EventKind.HOST_FAILED,
                 EventKind.HOST_SKIPPED, EventKind.STATS, EventKind.STATUS):
        assert kind in seen
    assert raw_count

    # the run folder: ansible-runner artifacts + run.json; listed and replayed as it ran
    meta = json.loads((run.run_dir / "run.json").read_text())
    assert meta["status"] == "failed" and meta["result"]["hosts"]["n3"]["status"] == "rolled_back"
    assert (run.artifact_dir / "job_events").is_dir()
    past = list_runs(settings.state_dir)
    assert [p.run_id for p in past] == [run.run_id] and past[0].status == "failed"
    events, hosts, batches = replay(settings.state_dir, run.run_id)
    assert batches == result.batches
    assert {h: st.status for h, st in hosts.items()} == states
    assert [e.kind for e in events if e.kind is EventKind.PLAY_START] == [EventKind.PLAY_START] * 4


def test_events_iterator_and_snapshots_from_another_thread(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    run = AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), inventory, hosts=HOSTS, limit="n1,n2",
                                       extra_vars={"waves": ["100%"]}))
    run.start()
    kinds = [e.kind for e in run.events()]
    result = run.wait(10)
    assert EventKind.STATS in kinds
    assert result.status == "successful" and result.ok
    assert [sorted(b) for b in result.batches] == [["n1", "n2"]]
    assert run.hosts()["n3"].status is HostStatus.PENDING  # targeted but outside the limit: never started
    assert len(run.event_log()) >= len(kinds) - 3


def test_cancel_stops_the_playbook_quickly(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    run = AnsibleRun(settings, RunSpec(str(tmp / "slow.yml"), inventory, hosts=HOSTS))
    run.start()
    deadline = time.monotonic() + 60
    while not any(e.kind is EventKind.TASK_START for e in run.event_log()) and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    run.cancel()
    result = run.wait(30)
    assert result.status == "canceled"
    assert time.monotonic() - started < 10
    assert all(st.status is HostStatus.PENDING for st in result.hosts.values())
    # nothing of the run is left running: not ansible-playbook, not Mitogen's per-connection interpreters
    leftovers = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("MODELFLEET_RUN_ID") == run.run_id:
                leftovers.append(proc.cmdline())
    assert leftovers == []


def test_start_errors_name_the_problem(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    with pytest.raises(RunError, match="does not exist"):
        AnsibleRun(settings, RunSpec("no-such-playbook.yml", inventory))
    with pytest.raises(RunError, match="inventory"):
        AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), tmp / "missing.yml")).start()
    run = AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), inventory))
    with pytest.raises(RunError, match="not started"):
        run.wait(1)
    with pytest.raises(RunError, match="no run"):
        replay(settings.state_dir, "nope")


def test_environment_points_ansible_at_the_repo_config_and_the_ledger(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    run = AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), inventory), run_id="r-1", ledger_owner=True)
    env = run.environment()
    assert Path(env["ANSIBLE_CONFIG"]).name == "ansible.cfg" and Path(env["ANSIBLE_CONFIG"]).is_file()
    assert Path(env["ANSIBLE_CALLBACK_PLUGINS"], "modelfleet_ledger.py").is_file()
    assert env["MODELFLEET_LEDGER_URL"] == settings.ledger.url
    assert env["MODELFLEET_RUN_ID"] == "r-1" and env["MODELFLEET_LEDGER_RUN_OWNER"] == "caller"
    assert new_run_id() != new_run_id()


def test_parse_event_and_tracker_on_runner_event_dicts() -> None:
    tracker = RunTracker(["a", "b"])

    def feed(event: str, **data: object) -> None:
        tracker.feed(parse_event({"event": event, "counter": 1, "event_data": data}))

    feed("playbook_on_play_start", name="Roll", uuid="u1")
    feed("runner_on_ok", host="a", task="Configure", res={"changed": True})
    feed("runner_on_failed", host="a", task="Gate", res={"msg": "bad answer"})
    assert tracker.hosts["a"].status is HostStatus.FAILED
    feed("runner_on_ok", host="a", task="Recover", res={"changed": True,
                                                          "ansible_facts": {"model_release_outcome": "rolled_back"}})
    assert tracker.hosts["a"].status is HostStatus.ROLLED_BACK  # rescued, and switched back
    feed("playbook_on_play_start", name="Roll", uuid="u1_1")  # awx_display suffixes repeated play uuids
    feed("runner_on_unreachable", host="b", task="Gather", res={"msg": "ssh: connect refused"})
    # a revert delegated from b to a marks a, not b
    feed("runner_on_ok", host="b", task="Revert | switch back", res={
        "changed": True, "_ansible_delegated_vars": {"ansible_delegated_host": "a"}})
    # with ansible-core 2.19 only the delegate's address survives; the inventory maps it to a name
    feed("runner_on_ok", host="b", task="Revert | switch back", res={
        "changed": True, "_ansible_delegated_vars": {"ansible_host": "10.0.0.9"}})
    assert tracker.hosts["b"].rolled_back is False  # an unknown delegate is never this host's revert
    mapped = RunTracker(["a", "b"], addresses={"10.0.0.1": "a"})
    mapped.feed(parse_event({"event": "runner_on_ok", "event_data": {
        "host": "b", "task": "Revert | switch back",
        "res": {"changed": True, "_ansible_delegated_vars": {"ansible_host": "10.0.0.1"}}}}))
    assert mapped.hosts["a"].rolled_back and not mapped.hosts["b"].rolled_back
    feed("playbook_on_stats", failures={}, dark={"b": 1}, rescued={"a": 1})
    assert tracker.batches == [["a"], ["b"]]
    assert tracker.hosts["a"].status is HostStatus.ROLLED_BACK and tracker.hosts["a"].rescued == 1
    assert tracker.hosts["b"].status is HostStatus.UNREACHABLE
    assert tracker.hosts["b"].message == "ssh: connect refused"
    assert parse_event({"event": "verbose", "stdout": " hi "}).message == "hi"
    assert parse_event({"event": "something_new"}).kind is EventKind.OTHER
