"""Honest outcomes through the real ``modelfleet`` CLI on the shared provisioned fleet (issue 15).

Every case runs the ``modelfleet`` executable as a process of its own in the fleet's project (tests/provisioned.py:
six nodes on ``credit-risk/1``, reset before the first case and after the last) and checks the three things an
operator reads: the exit code, ``--json`` (or the printed recap), and the ledger (``modelfleet ledger runs --json``
and the node events). Each case touches one or two nodes:

* a rollback or an unlock refused by a deploy lock that a live run holds (a lock file naming another run whose
  controller process is alive: a ``sleep`` started here), an unlock that clears the lock once that run is over;
* a rollback with nothing to roll back to, a successful rollback after a deploy;
* a rollback of an unknown model or version, refused before any run starts (nothing in the ledger);
* a deploy whose release the agent refuses (a signed bundle whose probe answer is wrong, or whose model file is
  missing): the agent's own reason reaches the CLI and the ledger.

The cases run in file order; the lock and rollback cases share the fleet state the previous case left
(edge-cpu-01 and edge-cpu-02 on version 2 after the lock case), and say so where they rely on it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from modelfleet.core.ledger import Event, Ledger
from tests.provisioned import BASE_VERSION, MODEL, ProvisionedFleet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

LOCKED_NODE = "edge-cpu-01"
PAIR = ("edge-cpu-01", "edge-cpu-02")
UNLOCK_NODE = "edge-cpu-02"
REFUSE_NODE = "edge-cpu-03"
NEW = "2"


@pytest.fixture(scope="module")
def fleet(provisioned_fleet: ProvisionedFleet) -> Iterator[ProvisionedFleet]:
    provisioned_fleet.reset()
    yield provisioned_fleet
    provisioned_fleet.reset()


# -- helpers ---------------------------------------------------------------------------------------------------


def cli_json(fleet: ProvisionedFleet, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``modelfleet ARGS --json``: the process and its JSON (fails the test when it printed none)."""
    proc = fleet.cli(*args, "--json")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"modelfleet {' '.join(args)} printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n"
                    f"{proc.stderr}")
    assert isinstance(data, dict), data
    return proc, data


def ledger_runs(fleet: ProvisionedFleet) -> dict[str, dict[str, Any]]:
    """run id -> what ``modelfleet ledger runs --json`` says of it."""
    proc = fleet.cli("ledger", "runs", "--model", MODEL, "--limit", "10000", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {r["run_id"]: r for r in json.loads(proc.stdout)}


def ledger_count(fleet: ProvisionedFleet) -> int:
    with Ledger(fleet.settings.ledger.url) as ledger:
        ledger.ensure_schema()
        return sum(1 for _ in ledger.iter_rows())


def node_events(fleet: ProvisionedFleet, run_id: str) -> dict[str, Event]:
    """node -> the run's one ``node_<kind>`` event there."""
    with Ledger(fleet.settings.ledger.url) as ledger:
        events = [e for e in ledger.events(run_id=run_id) if e.node]
    by_node = {e.node: e for e in events if e.node}
    assert len(by_node) == len(events), f"more than one event per node: {events}"
    return by_node


def hostname() -> str:
    """The controller's name as the playbooks read it (``lookup('pipe', 'hostname')``)."""
    return subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def live_holder() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for the controller of a run that is still going; stopped on exit."""
    proc = subprocess.Popen(["sleep", "3600"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def plant_lock(fleet: ProvisionedFleet, node: str, run_id: str, pid: int) -> dict[str, Any]:
    """Write the model's deploy lock on ``node`` as a deploy run ``run_id`` driven by process ``pid`` of this
    controller would (roles/model_release/tasks/preflight.yml: model_release_holder); returns the holder."""
    holder = {"action": "deploy", "controller": hostname(), "pid": pid, "run_id": run_id,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": "3"}
    path = fleet.lock_path(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder, sort_keys=True) + "\n", encoding="utf-8")
    st = path.parent.stat()
    os.chown(path, st.st_uid, st.st_gid)
    path.chmod(0o644)
    return holder


def foreign_run_id(tag: str) -> str:
    return f"deploy-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{tag}"


# -- refused before any run ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (("rollback", "nosuch", "--yes"), r"no model 'nosuch'"),
    (("rollback", MODEL, "--to", "99", "--yes"), r"credit-risk has no version 99: the registry has 1, 2, 3"),
])
def test_unknown_model_or_version_is_refused_before_any_run(fleet: ProvisionedFleet, args: tuple[str, ...],
                                                            message: str) -> None:
    before, versions = ledger_count(fleet), fleet.versions()
    proc = fleet.cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert not re.search(r"^run \S+:", proc.stderr, re.M), "a run was started: " + proc.stderr
    as_json = fleet.cli(*args, "--json")
    assert as_json.returncode == 2 and re.search(message, as_json.stderr), as_json.stdout + as_json.stderr
    assert ledger_count(fleet) == before, "a refused rollback wrote to the ledger"
    assert fleet.versions() == versions
    health = fleet.cli("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    assert {r["model"] for r in json.loads(health.stdout)} == {MODEL}


# -- a rollback that cannot happen -----------------------------------------------------------------------------


def test_rollback_with_no_earlier_release_says_there_is_nothing_to_roll_back_to(fleet: ProvisionedFleet) -> None:
    """On the base fleet every node holds only release 1 (the reset prunes the others)."""
    node = LOCKED_NODE
    before = fleet.current(node)
    assert before and before.startswith(f"{BASE_VERSION}-")
    proc = fleet.cli("rollback", MODEL, "--limit", node, "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nothing to roll back to" in proc.stdout, proc.stdout
    assert "successful" not in proc.stdout.lower() and "nothing changed" not in proc.stdout, proc.stdout
    [run_id] = re.findall(r"run (\S+) failed", proc.stdout)
    assert ledger_runs(fleet)[run_id]["outcome"] == "failed"
    event = node_events(fleet, run_id)[node]
    assert (event.action, event.outcome) == ("node_rollback", "failed"), event
    assert event.details.get("node_outcome") == "nothing_to_roll_back", event.details
    assert "nothing to roll back to" in str(event.details.get("message")), event.details
    assert fleet.current(node) == before


# -- unlock ----------------------------------------------------------------------------------------------------


def test_unlock_refuses_a_live_holder_and_clears_the_lock_once_its_run_is_over(fleet: ProvisionedFleet) -> None:
    node = UNLOCK_NODE
    run_id = foreign_run_id("e2elive")
    with live_holder() as holder:
        planted = plant_lock(fleet, node, run_id, holder.pid)
        proc, data = cli_json(fleet, "unlock", MODEL, "--node", node, "--yes")
        assert proc.returncode == 1, data
        assert data["outcome"] == "failed" and data["hosts"][node]["outcome"] == "failed", data
        message = str(data["hosts"][node]["message"])
        assert run_id in message and "not known to have ended" in message, message
        assert fleet.locks().get(node) == planted, "the lock of a live run was touched"
        assert ledger_runs(fleet)[data["run_id"]]["outcome"] == "failed"
        event = node_events(fleet, data["run_id"])[node]
        assert (event.action, event.outcome) == ("node_unlock", "failed") and run_id in str(event.details), event
    # the holder's process is gone now: the same command clears the lock, and the node and the ledger say whose
    proc, data = cli_json(fleet, "unlock", MODEL, "--node", node, "--yes")
    assert proc.returncode == 0, data
    assert data["outcome"] == "ok" and data["hosts"][node]["outcome"] == "changed", data
    assert data["hosts"][node]["node_outcome"] == "unlocked", data
    assert node not in fleet.locks()
    assert ledger_runs(fleet)[data["run_id"]]["outcome"] == "ok"
    event = node_events(fleet, data["run_id"])[node]
    assert (event.action, event.outcome) == ("node_unlock", "changed"), event
    assert event.details.get("broke_lock", {}).get("run_id") == run_id, event.details
    assert "process of run" in event.details["broke_lock"].get("reason", ""), event.details
    journal = fleet.journal(node)[-1]
    assert (journal.get("action"), journal.get("broke_lock_of")) == ("break_lock", run_id), journal


def test_unlock_clears_the_lock_of_a_run_the_ledger_says_has_ended(fleet: ProvisionedFleet) -> None:
    """The holder's pid is alive (reused by another process), but its run has a run_end: the lock is stale."""
    node = UNLOCK_NODE
    ended = [r for r, run in ledger_runs(fleet).items() if run["ended"] and run["kind"] == "deploy"]
    assert ended, "the base deploy of the shared fleet is an ended deploy run"
    with live_holder() as holder:
        plant_lock(fleet, node, ended[-1], holder.pid)
        proc, data = cli_json(fleet, "unlock", MODEL, "--node", node, "--yes")
    assert proc.returncode == 0, data
    assert data["hosts"][node]["node_outcome"] == "unlocked" and node not in fleet.locks(), data
    event = node_events(fleet, data["run_id"])[node]
    assert event.details.get("broke_lock", {}).get("run_id") == ended[-1], event.details
    assert "has ended" in event.details["broke_lock"].get("reason", ""), event.details


# -- rollback under another run's lock, and a rollback that works ------------------------------------------------


def test_rollback_refused_while_another_run_holds_the_lock(fleet: ProvisionedFleet) -> None:
    """edge-cpu-01 and -02 get version 2 (so each has release 1 to go back to); another run holds edge-cpu-01's
    lock: the rollback there fails naming that run, changes nothing, and the ledger says failed."""
    proc, data = cli_json(fleet, "deploy", f"{MODEL}/{NEW}", "--limit", ",".join(PAIR), "--waves", "100%", "--yes")
    assert proc.returncode == 0, data
    assert {n: fleet.version(n) for n in PAIR} == dict.fromkeys(PAIR, NEW)
    node = LOCKED_NODE
    before = fleet.current(node)
    run_id = foreign_run_id("e2elock")
    try:
        with live_holder() as holder:
            planted = plant_lock(fleet, node, run_id, holder.pid)
            proc, data = cli_json(fleet, "rollback", MODEL, "--limit", node, "--yes")
            assert fleet.locks().get(node) == planted, "the rollback touched another run's lock"
    finally:
        fleet.lock_path(node).unlink(missing_ok=True)
    assert proc.returncode == 1, data
    assert data["outcome"] == "failed" and data["ok"] is False, data
    host = data["hosts"][node]
    assert host["outcome"] == "failed" and host["node_outcome"] == "locked", host
    assert f"locked by run {run_id}" in str(host["message"]), host
    assert run_id in str(data["problem"]), data
    assert fleet.current(node) == before and fleet.agent_health(node).get("version") == NEW
    assert ledger_runs(fleet)[data["run_id"]]["outcome"] == "failed"
    event = node_events(fleet, data["run_id"])[node]
    assert (event.action, event.outcome) == ("node_rollback", "failed"), event
    assert event.details.get("node_outcome") == "locked" and run_id in str(event.details.get("message")), event


def test_rollback_after_a_deploy_rolls_back_and_says_ok(fleet: ProvisionedFleet) -> None:
    """Both nodes on version 2 (the lock case left them there; deployed again here when it did not), then back."""
    assert not fleet.locks(), fleet.locks()
    proc, data = cli_json(fleet, "deploy", f"{MODEL}/{NEW}", "--limit", ",".join(PAIR), "--waves", "100%", "--yes")
    assert proc.returncode == 0, data
    assert {n: fleet.version(n) for n in PAIR} == dict.fromkeys(PAIR, NEW)
    proc, data = cli_json(fleet, "rollback", MODEL, "--limit", ",".join(PAIR), "--yes")
    assert proc.returncode == 0, data
    assert data["outcome"] == "ok" and data["problem"] is None, data
    assert {n: (h["outcome"], h["version"]) for n, h in data["hosts"].items()} == dict.fromkeys(
        PAIR, ("rolled_back", BASE_VERSION)), data["hosts"]
    assert {n: fleet.version(n) for n in PAIR} == dict.fromkeys(PAIR, BASE_VERSION)
    assert {n: str(fleet.agent_health(n).get("version")) for n in PAIR} == dict.fromkeys(PAIR, BASE_VERSION)
    assert ledger_runs(fleet)[data["run_id"]]["outcome"] == "ok"
    events = node_events(fleet, data["run_id"])
    assert {n: (e.action, e.outcome, e.version) for n, e in events.items()} == dict.fromkeys(
        PAIR, ("node_rollback", "rolled_back", BASE_VERSION)), events
    text = fleet.cli("ledger", "runs", "--model", MODEL)
    assert re.search(rf"{re.escape(data['run_id'])}.*\bok\b", text.stdout), text.stdout


# -- the agent refuses the release: its reason reaches the CLI and the ledger -----------------------------------


def _entries(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            stream = tar.extractfile(member)
            assert stream is not None
            out[member.name] = stream.read()
        return out


def sign_altered_bundle(fleet: ProvisionedFleet, bundle: Path, fault: str) -> None:
    """Rewrite the cached ``bundle`` in place, signed with the controller's own key, so that it verifies
    everywhere and the deploy ships it; its agent then refuses it (``fault``: wrong_probe or missing_model_file)."""
    from modelfleet.core.bundle import MANIFEST, SIGNATURE, write_deterministic_tar
    from modelfleet.core.signing import load_signing_key, sign

    key = load_signing_key(Path(fleet.settings.state_dir))
    assert key is not None
    entries = _entries(bundle)
    manifest = json.loads(entries[MANIFEST])
    if fault == "wrong_probe":
        assert manifest["probe"], manifest
        rows = len(manifest["probe"]["expected"]["predictions"])
        manifest["probe"]["expected"] = {"predictions": [-12345] * rows}
    else:
        [model_file] = [n for n in manifest["files"] if re.fullmatch(r"model/model\.(pkl|skops|joblib)", n)]
        del entries[model_file], manifest["files"][model_file]
    body = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    entries[MANIFEST], entries[SIGNATURE] = body, sign(key, body).encode("ascii")
    write_deterministic_tar(bundle, entries)


REFUSALS = {
    "wrong_probe": r"the probe answered .*expected \[-12345",
    "missing_model_file": r"model\.(pkl|skops|joblib)|no such file|not found|missing",
}


@pytest.mark.parametrize("fault", sorted(REFUSALS))
def test_the_agents_refusal_reaches_the_cli_and_the_ledger(fleet: ProvisionedFleet, fault: str) -> None:
    node, ref = REFUSE_NODE, f"{MODEL}/3"
    fleet.prune_releases(node)  # the release must be transferred, not found unpacked from an earlier deploy
    built = fleet.cli("bundle", ref, "--json")
    assert built.returncode == 0, built.stdout + built.stderr
    bundle = Path(json.loads(built.stdout)["bundle"])
    good = bundle.read_bytes()
    try:
        sign_altered_bundle(fleet, bundle, fault)
        proc, data = cli_json(fleet, "deploy", ref, "--limit", node, "--waves", "100%", "--yes")
    finally:
        bundle.write_bytes(good)
        fleet.prune_releases(node)  # the refused copy: a later deploy of version 3 must transfer the good one
    assert proc.returncode == 1, data
    assert data["release"]["bundle"] == str(bundle) and data["release"]["cached"], data["release"]
    host = data["hosts"][node]
    assert host["outcome"] == "reverted" and data["outcome"] == "failed", host
    message = str(host["message"])
    assert "agent refused release 3-" in message and re.search(REFUSALS[fault], message, re.I), message
    assert "/health names version" not in message, message
    assert "agent refused release 3-" in str(data["problem"]), data["problem"]
    assert "agent refused release 3-" in proc.stderr, proc.stderr  # the live line as the host fails
    assert fleet.version(node) == BASE_VERSION and fleet.agent_health(node).get("version") == BASE_VERSION
    assert ledger_runs(fleet)[data["run_id"]]["outcome"] == "failed"
    event = node_events(fleet, data["run_id"])[node]
    assert (event.action, event.outcome) == ("node_deploy", "reverted"), event
    recorded = str(event.details.get("message"))
    assert "agent refused release 3-" in recorded and re.search(REFUSALS[fault], recorded, re.I), event.details
