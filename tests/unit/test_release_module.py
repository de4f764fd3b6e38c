"""The node-side step of model_release: its helpers in-process, and the ``modelfleet_release`` module itself run by
real ``ansible`` on localhost (local connection) for the refusals that need no agent: a lock held by another run,
a stale lock, too little disk, a bundle that does not run on the node, a bundle signed by another key, check mode,
a rollback with nothing to go back to. The full deploy (reload, gate, switch back) runs over SSH on simulated
fleets in tests/integration/test_playbooks.py and test_rollout.py."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.supervisord_support import add_program, ctl, run, running_supervisord
from tests.unit.ansible_module_support import (
    PlayRun,
    install_governance,
    role_entry_playbook,
    run_playbook_locally,
    run_role_module,
)

ROLE = REPO_ROOT / "roles" / "model_release"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROLE / "module_utils" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


node_utils = _load("modelfleet_release_node")
gate_utils = _load("modelfleet_release_gate")


# -- links, releases, lock, journal --------------------------------------------------------------------------


def test_links_switch_by_rename_and_leave_nothing_behind(tmp_path: Path) -> None:
    node = node_utils.NodeModel(str(tmp_path), "m")
    node.set_link("current", "releases/1-aaaaaaaaaaaa")
    node.set_link("current", "releases/2-bbbbbbbbbbbb")
    assert node.link("current") == "releases/2-bbbbbbbbbbbb"
    assert sorted(os.listdir(node.model_dir)) == ["current"]
    node.restore_link("previous", "")
    assert node.link("previous") == ""
    node.restore_link("previous", "releases/1-aaaaaaaaaaaa")
    assert node.link("previous") == "releases/1-aaaaaaaaaaaa"


def test_prune_keeps_the_newest_and_the_protected(tmp_path: Path) -> None:
    node = node_utils.NodeModel(str(tmp_path), "m")
    names = [f"{v}-{'a' * 11}{v}" for v in range(1, 6)]
    for age, name in enumerate(names):
        os.makedirs(node.release_path(name))
        os.utime(node.release_path(name), (1000 + age, 1000 + age))
    removed = node.prune(2, ["releases/" + names[0]])
    assert sorted(removed) == sorted(names[1:3])
    assert sorted(node.releases()) == sorted([names[0], names[3], names[4]])


def test_lock_is_exclusive_and_only_its_holder_releases_it(tmp_path: Path) -> None:
    node = node_utils.NodeModel(str(tmp_path), "m")
    assert node.take_lock({"run_id": "A", "pid": 1}) is None
    assert node.take_lock({"run_id": "B"}) == {"run_id": "A", "pid": 1}
    assert not node.release_lock("B")
    assert node.release_lock("A")
    assert node.lock_holder() is None
    Path(node.lock_path).write_text("not json")
    assert node.lock_holder() == {"run_id": "?", "raw": "not json"}


def test_journal_appends_json_lines_private_to_the_node(tmp_path: Path) -> None:
    node = node_utils.NodeModel(str(tmp_path), "m")
    node.journal({"outcome": "deployed", "version": "1"})
    node.journal({"outcome": "rolled_back", "version": "2"})
    lines = Path(node.journal_path).read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in lines] == ["deployed", "rolled_back"]
    assert Path(node.journal_path).stat().st_mode & 0o777 == 0o640


def test_release_names_split_into_version_and_digest() -> None:
    assert node_utils.split_release("releases/12-0123456789ab") == ("12", "0123456789ab")
    assert node_utils.split_release("v1.2-rc-0123456789ab") == ("v1.2-rc", "0123456789ab")
    assert node_utils.split_release("naive") == ("naive", "")


class Recorder:
    """What supervisorctl/systemctl would print, by verb; records the commands run."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.commands: list[list[str]] = []

    def __call__(self, cmd: Any) -> tuple[int, str, str]:
        self.commands.append(list(cmd))
        verb = next(w for w in cmd if w in self.answers)
        return self.answers[verb]


@pytest.mark.parametrize(("status", "state", "verb"), [
    ((0, "modelfleet-agent-m   RUNNING   pid 7, uptime 0:01:00\n", ""), "running", "signal"),
    ((3, "modelfleet-agent-m   STOPPED   Dec 02 06:00 AM\n", ""), "stopped", "start"),
    ((3, "modelfleet-agent-m   FATAL     Exited too quickly\n", ""), "stopped", "start"),
])
def test_supervisord_agent_is_reloaded_when_running_and_started_otherwise(
        status: tuple[int, str, str], state: str, verb: str) -> None:
    run = Recorder({"status": status, "signal": (0, "modelfleet-agent-m: signalled\n", ""),
                    "start": (0, "modelfleet-agent-m: started\n", "")})
    service = node_utils.AgentService(run, "supervisord", "modelfleet-agent-m", "/venv/supervisorctl", "/n/sv.conf")
    assert service.state() == state
    service.reload_or_start()
    assert run.commands[-1][:3] == ["/venv/supervisorctl", "-c", "/n/sv.conf"] and verb in run.commands[-1]


def test_a_program_supervisord_is_already_starting_is_reloaded_once_up() -> None:
    """`supervisorctl start` on a program supervisord is starting answers "ERROR (already started)" with rc 0; that
    failed deploys. Reproduced by `update` (autostart, as model_agent does) and calling the start path at once."""
    from modelfleet.sim.inventory import supervisorctl

    with running_supervisord() as node:
        hup = node.root / "hup"
        script = node.root / "agent.py"
        script.write_text("import pathlib, signal, time\n"
                          f"signal.signal(signal.SIGHUP, lambda *a: pathlib.Path({str(hup)!r}).write_text('hup'))\n"
                          "time.sleep(600)\n")
        add_program(node, "modelfleet-agent-m", f"command = {sys.executable} {script}\nstartsecs = 3\n")
        rc, out, _ = ctl(node, "start", "modelfleet-agent-m")
        assert rc == 0 and "ERROR (already started)" in out  # the answer that failed deploys
        service = node_utils.AgentService(run, "supervisord", "modelfleet-agent-m", str(supervisorctl()),
                                          str(node.supervisor_conf))
        assert service.reload_or_start() == "reloaded"
        assert service.state() == "running"
        deadline = time.monotonic() + 10
        while not hup.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hup.read_text() == "hup"  # HUPped once up: it loads what `current` points at now


def test_missing_program_and_failed_signal_are_errors_that_say_what_to_do() -> None:
    absent = Recorder({"status": (4, "modelfleet-agent-m: ERROR (no such process)\n", "")})
    with pytest.raises(node_utils.ServiceError, match="run the model_agent role"):
        node_utils.AgentService(absent, "supervisord", "modelfleet-agent-m").reload_or_start()
    broken = Recorder({"status": (0, "modelfleet-agent-m RUNNING pid 1\n", ""),
                       "signal": (1, "modelfleet-agent-m: ERROR (not running)\n", "")})
    with pytest.raises(node_utils.ServiceError, match="signal HUP modelfleet-agent-m failed"):
        node_utils.AgentService(broken, "supervisord", "modelfleet-agent-m").reload_or_start()


def test_systemd_agent_reload_or_start() -> None:
    run = Recorder({"show": (0, "LoadState=loaded\nActiveState=inactive\n", ""), "start": (0, "", "")})
    service = node_utils.AgentService(run, "systemd", "modelfleet-agent-m")
    assert service.reload_or_start() == "started"
    assert run.commands[-1] == ["systemctl", "start", "modelfleet-agent-m.service"]
    gone = Recorder({"show": (0, "LoadState=not-found\nActiveState=inactive\n", "")})
    assert node_utils.AgentService(gone, "systemd", "modelfleet-agent-m").state() == "absent"


# -- the health gate against a real HTTP server on loopback ---------------------------------------------------


class Agent:
    """A loopback HTTP server answering like an agent: /health and /invocations, as configured."""

    def __init__(self) -> None:
        self.version = "2"
        self.answer: Any = {"predictions": [1, 0]}
        self.delay_s = 0.0
        self.last_reload: dict[str, Any] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._send(200, {"model": "m", "version": outer.version, "digest": "abc123456789" + "0" * 52,
                                 "last_reload": outer.last_reload})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(outer.delay_s)
                self._send(200, outer.answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def agent() -> Iterator[Agent]:
    a = Agent()
    yield a
    a.server.shutdown()
    a.server.server_close()


PROBE = {"request": {"dataframe_split": {"columns": ["x"], "data": [[1], [2]]}}, "expected": {"predictions": [1, 0]}}


def _gate(url: str, **kw: Any) -> Any:
    return gate_utils.Gate(url, version="2", digest="abc123456789", probe=PROBE, **kw)


class Clock:
    """A fake monotonic clock that only moves when the gate sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_gate_passes_on_the_right_version_and_answer(agent: Agent) -> None:
    verdict = _gate(agent.url).run()
    assert verdict["ok"] and verdict["probe"] == "passed" and verdict["attempts"] == 1, verdict


def test_gate_polls_a_wrong_version_until_its_deadline(agent: Agent) -> None:
    agent.version = "1"
    clock = Clock()
    verdict = _gate(agent.url, wait_s=5.0, backoff_s=0.25, max_backoff_s=1.0).run(sleep=clock.sleep, clock=clock)
    assert not verdict["ok"] and "expected 2" in verdict["reason"]
    # backoff doubles up to its cap, then polls every second until the next pause would pass the deadline
    assert clock.sleeps == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert verdict["attempts"] == 7 and verdict["elapsed_s"] == 4.75


def test_gate_ends_at_once_when_the_agent_refused_the_release_it_waits_for(agent: Agent) -> None:
    agent.version = "1"  # still serving the old release
    clock = Clock()
    agent.last_reload = {"status": "refused", "release": "1-000000000000", "reason": "an older refusal"}
    verdict = _gate(agent.url, wait_s=3.0, release="2-abc123456789").run(sleep=clock.sleep, clock=clock)
    assert not verdict["ok"] and "expected 2" in verdict["reason"] and clock.sleeps  # another release: polled on
    agent.last_reload = {"status": "refused", "release": "2-abc123456789", "reason": "model file model.pkl missing"}
    clock = Clock()
    verdict = _gate(agent.url, wait_s=16.0, release="2-abc123456789").run(sleep=clock.sleep, clock=clock)
    assert verdict["reason"] == "agent refused release 2-abc123456789: model file model.pkl missing", verdict
    assert verdict["attempts"] == 1 and clock.sleeps == [] and verdict["agent_reason"] == "model file model.pkl missing"


def test_gate_fails_a_wrong_answer_at_once(agent: Agent) -> None:
    agent.answer = {"predictions": [7, 7]}
    verdict = _gate(agent.url).run()
    assert not verdict["ok"] and verdict["attempts"] == 1 and "differs from the expected" in verdict["reason"]


def test_gate_fails_a_slow_answer(agent: Agent) -> None:
    agent.delay_s = 0.05
    clock = Clock()
    verdict = _gate(agent.url, latency_ms=10, wait_s=1.0).run(sleep=clock.sleep, clock=clock)
    assert not verdict["ok"] and "budget 10" in verdict["reason"]


def test_gate_names_an_unreachable_agent() -> None:
    clock = Clock()
    verdict = _gate("http://127.0.0.1:9", wait_s=2.0).run(sleep=clock.sleep, clock=clock)
    assert not verdict["ok"] and "127.0.0.1:9 unreachable" in verdict["reason"] and verdict["attempts"] == 4


def test_gate_compares_floats_with_a_tolerance() -> None:
    assert gate_utils.close([0.1 + 0.2, {"a": 1.0}], [0.3, {"a": 1}])
    assert not gate_utils.close([True], [1])
    assert not gate_utils.close([1, 2], [1])


# -- the module, run by ansible on localhost ------------------------------------------------------------------


def module(tmp: Path, args: dict[str, Any], *, check: bool = False) -> tuple[int, dict[str, Any]]:
    """Run ``modelfleet_release`` with ``args`` through ``ansible localhost`` and return (rc, result)."""
    return run_role_module(ROLE, "modelfleet_release", tmp, args, check=check)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "node"
    (r / "run").mkdir(parents=True)
    install_governance(r)
    return r


def base(root: Path, **kw: Any) -> dict[str, Any]:
    args = {"root": str(root), "model": "m", "node": "edge-t-01", "run_id": "run-B", "version": "2",
            "digest": "b" * 64, "release": "2-" + "b" * 12, "holder": {"action": "deploy", "version": "2"}}
    args.update(kw)
    return args


HOLDER_A = {"run_id": "run-A", "action": "deploy", "version": "3", "controller": "ci-7", "pid": 4242,
            "started": "2026-12-01T10:00:00Z"}


def journal(root: Path) -> list[dict[str, Any]]:
    path = root / "log" / "deployments.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_prepare_refuses_a_lock_held_by_another_run_naming_it(root: Path, tmp_path: Path) -> None:
    lock = root / "run" / "m.deploy.lock"
    lock.write_text(json.dumps(HOLDER_A))
    rc, res = module(tmp_path, base(root, action="prepare", ended_runs=["run-Z"]))
    assert rc != 0 and res["outcome"] == "locked" and res["lock_holder"] == HOLDER_A
    assert "m on edge-t-01 is locked by run run-A (deploy of version 3 from controller ci-7, pid 4242, since " \
           "2026-12-01T10:00:00Z); wait for it to finish" in res["msg"], res["msg"]
    assert "`modelfleet unlock m --node edge-t-01`" in res["msg"]
    assert "playbooks/unlock.yml -e model_release_model=m --limit edge-t-01" in res["msg"]
    assert json.loads(lock.read_text()) == HOLDER_A  # untouched
    assert journal(root) == []


def test_prepare_breaks_the_lock_of_an_ended_run_and_logs_it(root: Path, tmp_path: Path) -> None:
    lock = root / "run" / "m.deploy.lock"
    lock.write_text(json.dumps(HOLDER_A))
    rc, res = module(tmp_path, base(root, action="prepare", ended_runs=["run-A"]), check=True)
    assert rc == 0 and res["would_break_lock"]["run_id"] == "run-A" and "broke_lock" not in res, res
    assert json.loads(lock.read_text()) == HOLDER_A and journal(root) == []  # check mode: nothing removed
    rc, res = module(tmp_path, base(root, action="prepare", ended_runs=["run-A"]))
    assert rc == 0 and res["lock_acquired"] and res["outcome"] == "prepared", res
    assert res["broke_lock"]["run_id"] == "run-A" and res["broke_lock"]["holder"] == HOLDER_A
    assert res["broke_lock"]["by_run_id"] == "run-B" and "ended" in res["broke_lock"]["reason"]
    assert json.loads(lock.read_text())["run_id"] == "run-B"
    [line] = journal(root)
    assert line["action"] == "break_lock" and line["broke_lock_of"] == "run-A" and line["run_id"] == "run-B"
    assert line["lock_holder"] == HOLDER_A


def test_unlock_removes_only_a_lock_whose_holder_is_known_gone(root: Path, tmp_path: Path) -> None:
    lock = root / "run" / "m.deploy.lock"
    rc, res = module(tmp_path, base(root, action="unlock"))
    assert rc == 0 and not res["changed"] and res["outcome"] == "no_lock"
    lock.write_text(json.dumps(HOLDER_A))
    rc, res = module(tmp_path, base(root, action="unlock", ended_runs=["run-Z"]))
    assert rc != 0 and res["outcome"] == "locked" and "not known to have ended" in res["msg"], res
    assert "model_release_unlock_force=true (dangerous" in res["msg"] and lock.exists()
    rc, res = module(tmp_path, base(root, action="unlock", lock_run_id="run-Q", force=True))
    assert rc != 0 and "changed while it was checked" in res["msg"] and lock.exists()
    rc, res = module(tmp_path, base(root, action="unlock", holder_gone=True), check=True)
    assert rc == 0 and res["changed"] and res["would_break_lock"]["run_id"] == "run-A" and lock.exists()
    for kw, reason in (({"ended_runs": ["run-A"]}, "has ended"), ({"holder_gone": True}, "process of run run-A"),
                       ({"force": True}, "forced")):
        lock.write_text(json.dumps(HOLDER_A))
        rc, res = module(tmp_path, base(root, action="unlock", lock_run_id="run-A", **kw))
        assert rc == 0 and res["changed"] and res["outcome"] == "unlocked", res
        assert reason in res["broke_lock"]["reason"] and not lock.exists()
        assert journal(root)[-1]["action"] == "break_lock" and reason in journal(root)[-1]["error"]
    assert len(journal(root)) == 3


def test_prepare_takes_the_lock_but_not_in_check_mode(root: Path, tmp_path: Path) -> None:
    rc, res = module(tmp_path, base(root, action="prepare"), check=True)
    assert rc == 0 and not res["lock_acquired"] and not (root / "run" / "m.deploy.lock").exists()
    rc, res = module(tmp_path, base(root, action="prepare"))
    assert rc == 0 and res["lock_acquired"] and not res["is_current"] and res["current"] == ""
    holder = json.loads((root / "run" / "m.deploy.lock").read_text())
    assert holder == {"run_id": "run-B", "action": "deploy", "version": "2"}


def test_prepare_refuses_too_little_disk(root: Path, tmp_path: Path) -> None:
    rc, res = module(tmp_path, base(root, action="prepare", needed_bytes=2**62))
    assert rc != 0 and "MiB free under" in res["msg"] and "prune releases" in res["msg"]
    assert not (root / "run" / "m.deploy.lock").exists()


def test_prepare_refuses_a_bundle_for_another_architecture_or_accelerator(root: Path, tmp_path: Path) -> None:
    rc, res = module(tmp_path, base(root, action="prepare", requires={"arch": ["riscv64"]}))
    assert rc != 0 and "supports riscv64; edge-t-01 is" in res["msg"] and "leave this node out" in res["msg"]
    rc, res = module(tmp_path, base(root, action="prepare", requires={"accelerator": "nvidia"}, node_class="cpu"))
    assert rc != 0 and "needs a nvidia accelerator; edge-t-01 is a cpu node" in res["msg"]
    rc, res = module(tmp_path, base(root, action="prepare", requires={"arch": ["aarch64"]}, node_class="arm",
                                    hardware_check=False))
    assert rc == 0, res  # the simulated fleet's arm nodes count as aarch64


def test_deploy_refuses_a_bundle_signed_by_another_key_and_leaves_current(root: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from modelfleet.core.signing import load_or_create_signing_key
    from tests.integration.test_playbooks import make_release

    ours = tmp_path / "ours"
    load_or_create_signing_key(ours)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "release.pub").write_bytes((ours / "keys" / "release.pub").read_bytes())
    foreign = make_release(tmp_path / "theirs", "m", "2", tmp_path, private_key=Ed25519PrivateKey.generate())
    m = foreign.manifest
    (root / "models" / "m").mkdir(parents=True)
    os.symlink("releases/1-" + "a" * 12, root / "models" / "m" / "current")
    incoming = root / "run" / foreign.path.name
    incoming.write_bytes(foreign.path.read_bytes())
    args = base(root, action="deploy", version=m.version, digest=m.digest, release=m.release_name,
                bundle=str(incoming), python=sys.executable, agent_port=9)
    rc, res = module(tmp_path, args)
    assert rc != 0 and res["outcome"] == "refused" and "refused on edge-t-01" in res["msg"], res
    assert os.readlink(root / "models" / "m" / "current") == "releases/1-" + "a" * 12
    assert not (root / "models" / "m" / "releases" / m.release_name).exists()
    assert not incoming.exists() and not (root / "run" / "m.deploy.lock").exists()
    line = json.loads((root / "log" / "deployments.jsonl").read_text().splitlines()[-1])
    assert line["outcome"] == "refused" and line["version"] == m.version
    assert line["current"] == "1-" + "a" * 12  # every line names where current points after its step
    assert "another key" in line["error"] or "signature" in line["error"], line


def test_observe_reads_what_the_node_holds_and_changes_nothing(root: Path, tmp_path: Path) -> None:
    (root / "models" / "m" / "releases" / ("1-" + "a" * 12)).mkdir(parents=True)
    os.symlink("releases/1-" + "a" * 12, root / "models" / "m" / "current")
    (root / "run" / "m.deploy.lock").write_text(json.dumps(HOLDER_A))
    (root / "log").mkdir()
    mine = {"model": "m", "action": "switch", "outcome": "switching", "run_id": "run-A", "current": "2-" + "b" * 12}
    (root / "log" / "deployments.jsonl").write_text(
        json.dumps(mine) + "\n" + json.dumps({**mine, "model": "other"}) + "\nnot json\n")
    before = {str(p): (p.stat().st_mtime_ns if not p.is_symlink() else os.readlink(p)) for p in root.rglob("*")}
    for check in (True, False):
        rc, res = module(tmp_path, base(root, action="observe"), check=check)
        assert rc == 0 and not res["changed"] and res["outcome"] == "observed", res
        assert res["observed"] == {"current": "1-" + "a" * 12, "previous": "", "lock_holder": HOLDER_A,
                                   "journal": [mine]}
    assert {str(p): (p.stat().st_mtime_ns if not p.is_symlink() else os.readlink(p)) for p in root.rglob("*")} == \
        before


def test_deploy_in_check_mode_shows_the_switch_and_touches_nothing(root: Path, tmp_path: Path) -> None:
    (root / "models" / "m").mkdir(parents=True)
    os.symlink("releases/1-" + "a" * 12, root / "models" / "m" / "current")
    before = sorted(str(p) for p in root.rglob("*"))
    rc, res = module(tmp_path, base(root, action="deploy", bundle=str(root / "run" / "b.tar.gz")), check=True)
    assert rc == 0 and res["changed"] and res["outcome"] == "deployed", res
    assert '-    "current": "releases/1-aaaaaaaaaaaa"' in res["_output"], res["_output"]
    assert '+    "current": "releases/2-bbbbbbbbbbbb"' in res["_output"]
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_rollback_to_a_version_not_on_the_node_or_already_current(root: Path, tmp_path: Path) -> None:
    for v, d in (("1", "a"), ("2", "b")):
        (root / "models" / "m" / "releases" / f"{v}-{d * 12}").mkdir(parents=True)
    os.symlink("releases/2-" + "b" * 12, root / "models" / "m" / "current")
    rc, res = module(tmp_path, base(root, action="rollback", rollback_to="99"))
    assert rc != 0 and res["outcome"] == "version_absent", res
    assert res["msg"] == "version 99 of m is not on edge-t-01; releases there: 1-aaaaaaaaaaaa, 2-bbbbbbbbbbbb"
    assert res["version"] == "2" and res["release"] == "2-" + "b" * 12  # what the node still serves
    rc, res = module(tmp_path, base(root, action="rollback", rollback_to="2"))
    assert rc == 0 and not res["changed"] and res["outcome"] == "already_current", res
    assert res["version"] == "2" and "already on 2-bbbbbbbbbbbb" in res["msg"]
    assert not (root / "run" / "m.deploy.lock").exists() and not (root / "log").exists()


# -- rollback through the role's task file (ansible-playbook on localhost) -----------------------------------


def rollback(tmp: Path, root: Path, **extra: Any) -> PlayRun:
    """``tasks_from: rollback`` of model_release on localhost, the node root at ``root``."""
    args = {"model_release_model": "m", "model_release_root": str(root), "modelfleet_run_id": "run-B",
            "model_release_service_manager": "supervisord", **extra}
    return run_playbook_locally(role_entry_playbook(tmp, "model_release", "rollback"), tmp, args)


def node_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_text() if p.is_file() else "/")
            for p in sorted(root.rglob("*"))}


def test_rollback_refused_by_a_lock_fails_the_host_naming_the_holder(root: Path, tmp_path: Path) -> None:
    for v, d in (("1", "a"), ("2", "b")):
        (root / "models" / "m" / "releases" / f"{v}-{d * 12}").mkdir(parents=True)
    os.symlink("releases/2-" + "b" * 12, root / "models" / "m" / "current")
    os.symlink("releases/1-" + "a" * 12, root / "models" / "m" / "previous")
    holder = {"run_id": "run-A", "action": "deploy", "version": "3", "controller": "ci-7", "pid": 4242,
              "started": "2026-12-01T10:00:00Z"}
    (root / "run" / "m.deploy.lock").write_text(json.dumps(holder))
    before = node_files(root)
    run = rollback(tmp_path, root)
    assert run.rc != 0, run.out[-3000:]
    assert "m on localhost is locked by run run-A (deploy of version 3 from controller ci-7, pid 4242, since " \
           "2026-12-01T10:00:00Z)" in run.failure, run.failure
    assert run.facts["model_release_outcome"] == "locked" and run.facts["model_release_failed"]
    assert run.facts["model_release_version"] == "2"  # still on 2: nothing changed
    assert node_files(root) == before


def test_rollback_with_nothing_to_go_back_to_fails_the_host(root: Path, tmp_path: Path) -> None:
    (root / "models" / "m" / "releases" / ("1-" + "a" * 12)).mkdir(parents=True)
    os.symlink("releases/1-" + "a" * 12, root / "models" / "m" / "current")
    before = node_files(root)
    run = rollback(tmp_path, root)
    assert run.rc != 0, run.out[-3000:]
    assert run.failure == "nothing to roll back to: m has only release 1-aaaaaaaaaaaa on localhost", run.failure
    assert run.facts["model_release_outcome"] == "nothing_to_roll_back"
    assert node_files(root) == before


def test_rollback_of_a_model_the_node_never_had_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "bare"  # a provisioned node root with no models/ at all
    (root / "etc").mkdir(parents=True)
    before = node_files(root)
    run = rollback(tmp_path, root, model_release_model="nosuch")
    assert run.rc != 0, run.out[-3000:]
    assert run.failure.startswith("nothing to roll back to: nosuch has never been deployed on localhost"), run.failure
    assert run.facts["model_release_outcome"] == "model_absent"
    assert node_files(root) == before


def test_unlock_playbook_checks_the_holders_process_on_this_controller(root: Path, tmp_path: Path) -> None:
    import subprocess
    from datetime import UTC, datetime

    lock = root / "run" / "m.deploy.lock"
    here = subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = {"model_release_model": "m", "model_release_root": str(root), "modelfleet_target": "localhost"}
    playbook = REPO_ROOT / "playbooks" / "unlock.yml"

    # held by a process of this controller that still runs (this test, older than the lock): it stays
    lock.write_text(json.dumps(dict(HOLDER_A, controller=here, pid=os.getpid(), started=now)))
    run = run_playbook_locally(playbook, tmp_path, args)
    assert run.rc != 0 and "not known to have ended" in run.failure, run.out[-3000:]
    assert run.facts["model_release_outcome"] == "locked" and lock.exists()

    # the same pid, but the lock is older than that process: the pid was reused, the holder is gone (check mode)
    lock.write_text(json.dumps(dict(HOLDER_A, controller=here, pid=os.getpid(), started="2020-01-01T00:00:00Z")))
    run = run_playbook_locally(playbook, tmp_path, args, check=True)
    assert run.rc == 0 and run.facts["model_release_outcome"] == "unlocked", run.out[-3000:]
    assert lock.exists() and journal(root) == []

    # a process that has exited: removed, and the node's journal says so
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(json.dumps(dict(HOLDER_A, controller=here, pid=gone.pid, started=now)))
    run = run_playbook_locally(playbook, tmp_path, dict(args, modelfleet_run_id="unlock-1"))
    assert run.rc == 0 and run.facts["model_release_outcome"] == "unlocked", run.out[-3000:]
    assert not lock.exists()
    [line] = journal(root)
    assert line["action"] == "break_lock" and line["broke_lock_of"] == "run-A" and line["run_id"] == "unlock-1"
    assert "process of run run-A is gone" in line["error"]


def deploy_current(tmp: Path, root: Path, **extra: Any) -> PlayRun:
    """The deploy entry point of model_release on localhost for a release that is already current (s3 source, so
    no bundle is read): only the preflight runs."""
    name = "2-" + "b" * 12
    (root / "models" / "m" / "releases" / name).mkdir(parents=True, exist_ok=True)
    if not (root / "models" / "m" / "current").is_symlink():
        os.symlink("releases/" + name, root / "models" / "m" / "current")
    args = {"model_release_model": "m", "model_release_version": "2", "model_release_digest": "b" * 64,
            "model_release_source": "s3", "model_release_root": str(root), "model_release_run_id": "run-B",
            "model_release_service_manager": "supervisord", **extra}
    return run_playbook_locally(role_entry_playbook(tmp, "model_release", "main"), tmp, args)


def test_deploy_breaks_an_ended_runs_lock_and_fails_on_a_live_one(root: Path, tmp_path: Path) -> None:
    lock = root / "run" / "m.deploy.lock"
    lock.write_text(json.dumps(HOLDER_A))
    run = deploy_current(tmp_path, root)
    assert run.rc != 0 and "m on localhost is locked by run run-A" in run.failure, run.out[-3000:]
    assert run.facts["model_release_outcome"] == "locked" and lock.exists()
    run = deploy_current(tmp_path, root, model_release_ended_runs=["run-A"])
    assert run.rc == 0 and run.facts["model_release_outcome"] == "unchanged", run.out[-3000:]
    assert not lock.exists()  # the release was current: broken, and nothing else to do
    assert [r["broke_lock"]["run_id"] for _, r in run.results if "broke_lock" in r] == ["run-A"]
    assert journal(root)[-1]["action"] == "break_lock"


def test_unknown_action_is_a_usage_error(root: Path, tmp_path: Path) -> None:
    rc, res = module(tmp_path, base(root, action="explode"))
    assert rc != 0 and "value of action must be one of" in res["msg"]
