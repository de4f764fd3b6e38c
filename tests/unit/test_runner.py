"""The run pipeline (runners/pipeline.py, requests.py, records.py), the executor (runners/ansible.py) and the one
fold (runners/runstate.py), on real ansible-playbook runs of a tiny local playbook (connection local, no ssh).

The tiny playbook is launched through a request class of the test's own: a new kind of run is a new request
type, nothing else."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest

from modelfleet.core.config import Settings
from modelfleet.core.errors import RunError, UsageError
from modelfleet.core.ledger import Ledger
from modelfleet.runners.ansible import AnsibleRun, RunSpec, list_runs, new_run_id
from modelfleet.runners.events import EventKind, parse_event
from modelfleet.runners.pipeline import launch, prepare, replay
from modelfleet.runners.requests import PreparedRun, Progress, RunRequest
from modelfleet.runners.runstate import HostOutcome, RunState

HOSTS = ["n1", "n2", "n3", "n4"]

INVENTORY = f"""
all:
  children:
    edge:
      vars:
        ansible_connection: local
        ansible_python_interpreter: {sys.executable}
        modelfleet_node_class: cpu
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
    - name: A controller step that can fail
      ansible.builtin.fail:
        msg: the controller could not pin the release
      when: fail_controller | default(false)
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
        - name: Recover | switch `current` back (the node module says so in its facts)
          ansible.builtin.set_fact:
            model_release_outcome: rolled_back
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


@dataclass(frozen=True, kw_only=True)
class TinyRequest(RunRequest):
    """A run kind of this test's own: the tiny playbook, recorded as ``as_kind``."""

    kind: ClassVar[str] = "deploy"
    path: Path
    as_kind: str = "deploy"
    extra: tuple[tuple[str, Any], ...] = ()

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        hosts = self.target_hosts(settings)
        return PreparedRun(request=self, run_id=run_id, kind=self.as_kind, summary=f"tiny {self.as_kind}",
                           hosts=hosts, inventory=self.inventory_path(settings), playbook=str(self.path),
                           extra_vars={"modelfleet_run_id": run_id, **dict(self.extra)}, model="m", version="3",
                           digest="a" * 64, details=self._common_details())


@pytest.fixture
def project(tmp_path: Path, settings: Settings) -> tuple[Settings, Path, Path]:
    (tmp_path / "inv.yml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "pb.yml").write_text(PLAYBOOK, encoding="utf-8")
    (tmp_path / "slow.yml").write_text(SLOW_PLAYBOOK, encoding="utf-8")
    settings = replace(settings, ledger=replace(settings.ledger, url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    return settings, tmp_path / "inv.yml", tmp_path


def test_a_run_is_folded_once_for_the_result_the_ledger_and_the_replay(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    seen: list[EventKind] = []
    raw_count: list[int] = []
    handle = launch(settings, TinyRequest(path=tmp / "pb.yml", inventory=inventory),
                    on_event=lambda e: seen.append(e.kind), on_raw_event=lambda r: raw_count.append(1))
    result = handle.wait(300)

    assert result.outcome == "failed" and result.status == "failed" and result.rc == 2 and not result.ok
    assert [sorted(b) for b in result.batches] == [["n1"], ["n2", "n3"], ["n4"]]
    outcomes = {h: result.outcome_of(h) for h in result.hosts}
    assert outcomes == {"n1": "changed", "n2": "changed", "n3": "reverted", "n4": "changed"}
    assert "localhost" not in result.hosts
    n3 = result.hosts["n3"]
    assert n3.switched_back and n3.batch == 2 and "rolled back" in (n3.message or "")
    assert result.hosts["n1"].agent_port == 8081
    assert result.problem and result.problem.startswith("n3 reverted")
    for kind in (EventKind.PLAY_START, EventKind.TASK_START, EventKind.HOST_CHANGED, EventKind.HOST_FAILED,
                 EventKind.HOST_SKIPPED, EventKind.STATS):
        assert kind in seen
    assert raw_count

    # the ledger says what the result says: run_start/run_end by the pipeline, node events by the callback
    with Ledger(settings.ledger.url) as ledger:
        events = ledger.events(run_id=handle.run_id)
        assert ledger.verify().ok
    assert events[0].action == "run_start" and events[-1].action == "run_end"
    assert events[0].details["summary"] == "tiny deploy" and events[0].details["origin"] == "cli"
    assert events[-1].outcome == "failed" and events[-1].details["outcomes"] == {"changed": 3, "reverted": 1}
    assert {e.node: e.outcome for e in events if e.node} == outcomes

    # the run folder: listed, and replayed as it ran
    meta = json.loads((handle.artifact_dir.parent.parent / "run.json").read_text())
    assert meta["result"]["status"] == "failed"
    past = list_runs(settings.state_dir)
    assert [p.run_id for p in past] == [handle.run_id] and past[0].status == "failed"
    again = replay(settings, handle.run_id)
    assert again.batches == result.batches and again.outcome() == "failed"
    assert {h: o.value for h, o in again.outcomes().items()} == outcomes
    assert again.hosts["n3"].tasks  # the replay keeps the task results for the drill-down


def test_a_failed_controller_step_fails_the_run_though_no_node_failed(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    handle = launch(settings, TinyRequest(path=tmp / "pb.yml", inventory=inventory,
                                          extra=(("fail_controller", True),)))
    result = handle.wait(300)
    assert result.outcome == "failed"
    assert result.problem == "controller: A controller step that can fail: the controller could not pin the release"
    assert {result.outcome_of(h) for h in HOSTS} == {"not_started"}  # the rollout never reached them
    with Ledger(settings.ledger.url) as ledger:
        end = ledger.events(run_id=handle.run_id, action="run_end")[0]
    assert end.outcome == "failed" and "could not pin" in end.details["problem"]


def test_events_iterator_and_state_from_another_thread(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    handle = launch(settings, TinyRequest(path=tmp / "pb.yml", inventory=inventory, limit="n1,n2",
                                          extra=(("waves", ["100%"]),)))
    kinds = [e.kind for e in handle.events()]
    result = handle.wait(10)
    assert EventKind.STATS in kinds
    assert result.outcome == "ok" and result.ok and set(result.hosts) == {"n1", "n2"}
    assert [sorted(b) for b in result.batches] == [["n1", "n2"]]
    assert handle.state()["outcome"] == "ok"


def test_cancel_stops_the_playbook_and_records_an_incomplete_run(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    handle = launch(settings, TinyRequest(path=tmp / "slow.yml", inventory=inventory))
    started_tasks: list[int] = []
    handle.subscribe(lambda e: started_tasks.append(1) if e.kind is EventKind.TASK_START else None)
    deadline = time.monotonic() + 60
    while not started_tasks and time.monotonic() < deadline:
        time.sleep(0.1)
    handle.cancel()
    result = handle.wait(30)
    assert result.outcome == "incomplete" and result.status == "canceled"
    assert {result.outcome_of(h) for h in result.hosts} == {"not_started"}
    assert result.problem == "cancelled"
    with Ledger(settings.ledger.url) as ledger:
        assert [(e.action, e.outcome) for e in ledger.events(run_id=handle.run_id) if not e.node] == [
            ("run_start", "started"), ("run_end", "incomplete")]
    # nothing of the run is left running: not ansible-playbook, not Mitogen's per-connection interpreters
    leftovers = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("MODELFLEET_RUN_ID") == handle.run_id:
                leftovers.append(proc.cmdline())
    assert leftovers == []


def test_a_refused_request_writes_nothing(project: tuple[Settings, Path, Path]) -> None:
    from modelfleet.runners.requests import DeployRequest, RollbackRequest

    settings, inventory, tmp = project
    for request in (TinyRequest(path=tmp / "pb.yml", inventory=inventory, limit="nosuchnode"),
                    DeployRequest(ref="credit-risk@@x", inventory=inventory),
                    RollbackRequest(model="nosuch", inventory=inventory),
                    RollbackRequest(model="m", to="latest", inventory=inventory)):
        with pytest.raises(Exception) as info:
            launch(settings, request)
        assert getattr(info.value, "exit_code", None) == 2, info.value
    assert not Path(settings.ledger.url.removeprefix("sqlite:///")).exists() or \
        Ledger(settings.ledger.url).events() == []
    assert list_runs(settings.state_dir) == []


def test_prepare_then_launch_runs_exactly_what_was_prepared(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    prepared = prepare(settings, TinyRequest(path=tmp / "pb.yml", inventory=inventory, limit="n4"))
    assert prepared.hosts == ("n4",) and prepared.extra_vars["modelfleet_run_id"] == prepared.run_id
    result = launch(settings, prepared).wait(300)
    assert result.run_id == prepared.run_id and result.outcome == "ok"


def test_executor_start_errors_name_the_problem(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    with pytest.raises(RunError, match="does not exist"):
        AnsibleRun(settings, RunSpec("no-such-playbook.yml", inventory))
    with pytest.raises(RunError, match="inventory"):
        AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), tmp / "missing.yml")).start()
    run = AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), inventory))
    with pytest.raises(RunError, match="not started"):
        run.wait(1)
    with pytest.raises(RunError, match="no run"):
        replay(settings, "nope")
    with pytest.raises(UsageError, match="does not exist"):
        launch(settings, TinyRequest(path=tmp / "pb.yml", inventory=tmp / "missing.yml"))


def test_environment_points_ansible_at_the_repo_config_and_the_ledger(project: tuple[Settings, Path, Path]) -> None:
    settings, inventory, tmp = project
    run = AnsibleRun(settings, RunSpec(str(tmp / "pb.yml"), inventory), run_id="r-1", ledger_owner=True)
    env = run.environment()
    assert Path(env["ANSIBLE_CONFIG"]).name == "ansible.cfg" and Path(env["ANSIBLE_CONFIG"]).is_file()
    assert Path(env["ANSIBLE_CALLBACK_PLUGINS"], "modelfleet_ledger.py").is_file()
    assert env["MODELFLEET_LEDGER_URL"] == settings.ledger.url
    assert env["MODELFLEET_RUN_ID"] == "r-1" and env["MODELFLEET_LEDGER_RUN_OWNER"] == "caller"
    assert new_run_id() != new_run_id()


# -- the fold, on runner event dicts --------------------------------------------------------------------------


def _feeder(state: RunState):  # type: ignore[no-untyped-def]
    def feed(event: str, **data: object) -> None:
        state.feed({"event": event, "counter": 1, "event_data": data})

    return feed


def test_fold_outcomes_depend_on_the_kind_of_run() -> None:
    switched = {"changed": True, "modelfleet_rolled_back": True, "outcome": "rolled_back",
                "ansible_facts": {"model_release_outcome": "rolled_back", "model_release_version": "2"}}
    for kind, expected, run_outcome in (("rollback", HostOutcome.ROLLED_BACK, "ok"),
                                        ("deploy", HostOutcome.REVERTED, "failed")):
        state = RunState("r", kind=kind, hosts=["a", "b"])
        feed = _feeder(state)
        feed("playbook_on_play_start", name="Roll", uuid="u1")
        feed("runner_on_ok", host="a", task="Roll back", res=switched)
        feed("runner_on_ok", host="b", task="Roll back", res={"changed": False, "outcome": "already_current"})
        feed("playbook_on_stats", failures={}, dark={})
        state.finish("successful", 0)
        assert state.host_outcome("a") is expected
        assert state.host_outcome("b") is HostOutcome.OK
        assert state.hosts["a"].version == "2" and state.hosts["a"].node_outcome == "rolled_back"
        assert state.outcome() == run_outcome
    # a rollback the node refused (lock held, nothing to roll back to) fails its host and the run
    state = RunState("r", kind="rollback", hosts=["a"])
    feed = _feeder(state)
    feed("playbook_on_play_start", name="Roll", uuid="u1")
    feed("runner_on_failed", host="a", task="Roll back", res={
        "msg": "credit-risk is locked by run x", "ansible_facts": {"model_release_outcome": "locked"}})
    feed("playbook_on_stats", failures={"a": 1}, dark={})
    state.finish("failed", 2)
    assert state.host_outcome("a") is HostOutcome.FAILED and state.outcome() == "failed"
    assert state.problem() == "a failed: credit-risk is locked by run x"


def test_fold_batches_delegated_reverts_unreachable_and_stats() -> None:
    state = RunState("r", kind="deploy", hosts=["a", "b"])
    feed = _feeder(state)
    feed("playbook_on_play_start", name="Roll", uuid="u1")
    feed("runner_on_ok", host="a", task="Configure", res={"changed": True})
    feed("runner_on_failed", host="a", task="Gate", res={"msg": "bad answer"})
    assert state.host_outcome("a") is HostOutcome.FAILED
    feed("runner_on_ok", host="a", task="Recover", res={"changed": True,
                                                          "ansible_facts": {"model_release_outcome": "rolled_back"}})
    assert state.host_outcome("a") is HostOutcome.REVERTED
    feed("playbook_on_play_start", name="Roll", uuid="u1_1")  # awx_display suffixes repeated play uuids
    feed("runner_on_unreachable", host="b", task="Gather", res={"msg": "ssh: connect refused"})
    # a revert delegated from b to a marks a, not b
    feed("runner_on_ok", host="b", task="Revert", res={
        "changed": True, "modelfleet_rolled_back": True, "_ansible_delegated_vars": {"ansible_delegated_host": "a"}})
    # with ansible-core 2.19 only the delegate's address survives; an unknown one is never this host's revert
    feed("runner_on_ok", host="b", task="Revert", res={
        "changed": True, "modelfleet_rolled_back": True, "_ansible_delegated_vars": {"ansible_host": "10.0.0.9"}})
    assert state.hosts["b"].switched_back is False
    mapped = RunState("r", kind="deploy", hosts=["a", "b"], addresses={"10.0.0.1": "a"})
    mapped.feed({"event": "runner_on_ok", "event_data": {
        "host": "b", "task": "Revert",
        "res": {"changed": True, "modelfleet_rolled_back": True,
                "_ansible_delegated_vars": {"ansible_host": "10.0.0.1"}}}})
    assert mapped.hosts["a"].switched_back and not mapped.hosts["b"].switched_back
    # a task name alone never marks a switch back: only the module's markers do
    named = RunState("r", kind="deploy", hosts=["a"])
    _feeder(named)("runner_on_ok", host="a", task="Recover | switch `current` back", res={"changed": True})
    assert not named.hosts["a"].switched_back
    feed("playbook_on_stats", failures={}, dark={"b": 1}, rescued={"a": 1})
    state.finish("failed", 4)
    assert state.batches == [["a"], ["b"]]
    assert state.host_outcome("a") is HostOutcome.REVERTED and state.hosts["a"].rescued == 1
    assert state.host_outcome("b") is HostOutcome.UNREACHABLE
    assert state.hosts["b"].message == "ssh: connect refused"
    assert parse_event({"event": "verbose", "stdout": " hi "}).message == "hi"
    assert parse_event({"event": "something_new"}).kind is EventKind.OTHER


def test_a_controller_step_delegated_to_localhost_is_the_runs_not_the_nodes() -> None:
    """deploy.yml pins in a play on the target nodes, run_once and delegated to localhost: those results report
    under the first node, but they are the controller's (a failure fails the run; the node is not reached)."""
    state = RunState("r", kind="deploy", hosts=["a", "b"])
    feed = _feeder(state)
    feed("playbook_on_play_start", name="Pin", uuid="u0")
    local = {"_ansible_delegated_vars": {"ansible_host": "localhost", "ansible_connection": "local"}}
    feed("runner_on_ok", host="a", task="Pin | the release", res={"changed": False, **local})
    feed("runner_on_failed", host="a", task="Pin | the version is named", res={"msg": "no version", **local})
    feed("playbook_on_stats", failures={"a": 1}, dark={})
    state.finish("failed", 2)
    assert state.controller_error == "Pin | the version is named: no version"
    assert state.host_outcome("a") is HostOutcome.NOT_STARTED and state.outcome() == "failed"


def test_fold_keeps_bounded_output_and_task_results() -> None:
    state = RunState("r", kind="deploy", hosts=["a"], max_lines=3)
    for i in range(5):
        state.feed({"event": "verbose", "stdout": f"line {i}"})
    assert list(state.lines) == ["line 2", "line 3", "line 4"] and state.dropped_lines == 2
    quiet = RunState("r", kind="deploy", hosts=["a"], keep_tasks=False)
    _feeder(quiet)("runner_on_ok", host="a", task="t", res={"changed": True})
    assert quiet.hosts["a"].changed == 1 and not quiet.hosts["a"].tasks


def test_an_unreachable_node_keeps_the_whole_reason() -> None:
    """Mitogen says "EOF on stream; last 100 lines received:" and the reason follows on the next lines."""
    from modelfleet.runners.events import one_line

    text = "EOF on stream; last 100 lines received:\nssh: connect to host 127.0.77.3 port 2277: Connection refused\n"
    assert one_line(text) == ("EOF on stream; last 100 lines received: ssh: connect to host 127.0.77.3 port 2277: "
                              "Connection refused")
    assert one_line("plain\nsecond") == "plain" and len(one_line("x" * 900)) == 500


def test_a_held_run_starts_no_further_wave_until_resumed_or_cancelled(project: tuple[Settings, Path, Path]) -> None:
    """What the console's cancel question promises: while it is open, the wave in progress finishes and no
    further wave starts; "keep going" lets the run go on, "cancel" stops it with the later hosts untouched."""
    settings, inventory, tmp = project
    for answer in ("resume", "cancel"):
        started: list[int] = []
        held: list[Any] = []  # the handle, once launched (the callback is subscribed before the run starts)

        def on_event(event: Any, started: list[int] = started, held: list[Any] = held) -> None:
            if event.kind is EventKind.PLAY_START and event.play == "Rollout":
                started.append(event.batch or 0)
            # Hold once n1 (wave 1) has started a task: its wave's play start is behind the ledger callback's
            # hold check then. Holding on wave 1's play_start event raced that check and, under load, held
            # wave 1 itself (the hold is honoured at the next play start the callback reaches).
            if event.kind is EventKind.HOST_START and event.host == "n1" and "holding" not in held:
                while not held:
                    time.sleep(0.01)
                held[0].hold()
                held.append("holding")

        handle = launch(settings, TinyRequest(path=tmp / "pb.yml", inventory=inventory, limit="n1,n2,n4",
                                              extra=(("waves", [1, 1, 1]),)), on_event=on_event)
        held.append(handle)
        deadline = time.monotonic() + 120
        while not handle.hosts()["n1"].changed and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(4)  # far longer than a wave of this playbook takes
        # the next wave may be announced (ansible-runner's own callback runs first) but none of its hosts runs
        assert not handle.hosts()["n2"].ok and not handle.hosts()["n2"].tasks, "a wave ran while the run was held"
        if answer == "resume":
            handle.resume()
            result = handle.wait(120)
            assert result.outcome == "ok" and started == [1, 2, 3]
        else:
            handle.cancel()
            result = handle.wait(60)
            assert result.outcome == "incomplete"
            assert {h: result.outcome_of(h) for h in result.hosts} == {
                "n1": "changed", "n2": "not_started", "n4": "not_started"}
