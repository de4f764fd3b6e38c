"""The fault suite's harness: a deploy on the shared provisioned fleet, a fault injected at a chosen moment, and
the checks every case ends with.

Every case starts from :meth:`ProvisionedFleet.reset` (tests/provisioned.py: six nodes on ``credit-risk/1``,
no lock, the ledger saying so), deploys to :data:`TARGET` (two nodes, one wave, so a case costs one deploy of
two nodes), injects its fault with the real tools (``SimFleet.kill``/``start``, SIGKILL of the ``modelfleet``
process, bytes written into files, mounts) when a condition on the fleet becomes true (a wait for the
condition, never a sleep), and ends with :func:`assert_settled`:

* every node serves a known version: its agent's ``/health`` answers the version its ``current`` points at;
* ``modelfleet reconcile`` (what an operator runs once the nodes are back: each target node's ``current`` and
  journal read back into the ledger, recorded, changing nothing on the nodes) succeeds; then ``modelfleet ledger
  verify`` passes, and the ledger's placement (core/placement.py) of every node is the version the node really
  holds;
* a rerun of the deploy converges: it succeeds, the target nodes hold the version, the ledger says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.integration.simfleet import VENV_BIN, run_processes
from tests.provisioned import MODEL, ProvisionedFleet

TARGET = ("edge-cpu-01", "edge-cpu-02")
#: the node each case hits (the second of the wave, so the first shows the run went on around it)
VICTIM = "edge-cpu-02"
NEW = "2"
KNOWN_VERSIONS = {"1", "2", "3"}


@dataclass
class Deploy:
    """A ``modelfleet deploy --json`` running as a process of its own (so it can be killed like an operator's)."""

    proc: subprocess.Popen[str]
    ref: str

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self, timeout: float = 900) -> tuple[int, dict[str, object]]:
        out, err = self.proc.communicate(timeout=timeout)
        try:
            data = json.loads(out)
        except ValueError:
            data = {"stdout": out}
        data.setdefault("stderr", err)
        return self.proc.returncode, data


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("MODELFLEET_", "ANSIBLE_")) or k == "MODELFLEET_WHEELHOUSE_DIR"}


def start_deploy(fleet: ProvisionedFleet, ref: str = f"{MODEL}/{NEW}", nodes: tuple[str, ...] = TARGET,
                 *extra: str) -> Deploy:
    cmd = [str(VENV_BIN / "modelfleet"), "deploy", ref, "--yes", "--json", "--limit", ",".join(nodes),
           "--waves", "100%", "--max-fail", "100", *extra]
    proc = subprocess.Popen(cmd, cwd=fleet.project, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return Deploy(proc, ref)


def wait_for(condition: Callable[[], bool], *, while_: Callable[[], bool] = lambda: True, timeout: float = 600,
             what: str = "condition") -> bool:
    """Poll ``condition`` (every 20 ms) until it holds; False when ``while_`` stops holding first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if not while_():
            return condition()
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def kill_controller(deploy: Deploy) -> None:
    """SIGKILL the ``modelfleet`` process, as an operator's crashed terminal would."""
    deploy.proc.send_signal(signal.SIGKILL)
    deploy.proc.communicate(timeout=60)


@contextlib.contextmanager
def init_paused(fleet: ProvisionedFleet, node: str) -> Iterator[Path]:
    """``node``'s init (its supervisord) stopped with SIGSTOP for the block, SIGCONT at its end, whatever happens.

    Yields the node's supervisord config. While the init is stopped the node's agent keeps serving, but a step of
    a run that talks to the init (``supervisorctl -c CONF ...``: the model_agent role, a reload) waits for it,
    so a run is held at that step of its task order, however fast or slow the machine is."""
    from modelfleet.sim import procs
    from modelfleet.sim.state import load_state

    state = load_state(fleet.running.fleet.state_file)
    assert state is not None, "the simulated fleet is not up"
    [record] = [n for n in state.nodes if n.name == node]
    proc = procs.process_of(record.supervisord)
    assert proc is not None, f"{node}'s supervisord is not running"
    proc.suspend()
    try:
        yield record.supervisor_conf
    finally:
        proc.resume()


def waiting_on_init(conf: Path) -> bool:
    """Whether a ``supervisorctl`` of the supervisord configured by ``conf`` is running (a step waiting on it)."""
    return any("supervisorctl" in cmd and str(conf) in cmd.split()
               for cmd in map(cmdline, Path("/proc").glob("[0-9]*")))


def cmdline(proc: Path) -> str:
    """The command line of the process ``/proc/<pid>`` (arguments joined by spaces; empty when it is gone)."""
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def open_runs(fleet: ProvisionedFleet) -> list[str]:
    """Run ids the project's ledger shows started and not ended (a run closed as incomplete has ended)."""
    from modelfleet.core.ledger import Ledger

    with Ledger(fleet.settings.ledger.url) as ledger:
        return [r.run_id for r in ledger.runs() if r.ended is None]


def placements(fleet: ProvisionedFleet) -> dict[str, tuple[str | None, bool]]:
    """node -> (the version the ledger places there, behind) for the model."""
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.placement import PLACING_ACTIONS
    from modelfleet.core.placement import placements as read

    with Ledger(fleet.settings.ledger.url) as ledger:
        placed = read((e for e in ledger.events(model=MODEL) if e.action in PLACING_ACTIONS), model=MODEL)
    return {n: ((p.version, p.behind) if (p := placed.get((n, MODEL))) else (None, False)) for n in fleet.nodes}


def reconciled_by(fleet: ProvisionedFleet, node: str) -> list[str]:
    """The runs the ledger's ``node_reconcile`` events say put ``node`` where it is (outcome ``reconciled``)."""
    from modelfleet.core.ledger import Ledger

    with Ledger(fleet.settings.ledger.url) as ledger:
        return [str(e.details.get("by_run")) for e in ledger.events(model=MODEL, node=node, action="node_reconcile")
                if e.outcome == "reconciled"]


def assert_serving_known_versions(fleet: ProvisionedFleet) -> dict[str, str]:
    """Every node's agent answers the version its ``current`` points at, one of the registry's."""
    serving = {}
    for node in fleet.nodes:
        health = fleet.agent_health(node)
        assert str(health.get("version")) == fleet.version(node) and fleet.version(node) in KNOWN_VERSIONS, (
            node, fleet.version(node), health)
        serving[node] = str(health["version"])
    return serving


def assert_ledger_true(fleet: ProvisionedFleet) -> None:
    verify = fleet.cli("ledger", "verify")
    assert verify.returncode == 0 and "ledger ok" in verify.stdout, verify.stdout + verify.stderr
    placed = {n: v for n, (v, _) in placements(fleet).items()}
    assert placed == fleet.versions(), f"ledger places {placed}, nodes hold {fleet.versions()}"


def reconcile(fleet: ProvisionedFleet, nodes: tuple[str, ...] = TARGET) -> dict[str, str]:
    """``modelfleet reconcile`` on ``nodes``: node -> what the ledger recorded (agrees, reconciled, unexplained)."""
    proc = fleet.cli("reconcile", MODEL, "--limit", ",".join(nodes), "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = {str(n["node"]): str(n["outcome"]) for n in json.loads(proc.stdout)["nodes"]}
    assert set(recorded) == set(nodes) and "unexplained" not in recorded.values(), recorded
    return recorded


def assert_settled(fleet: ProvisionedFleet, ref: str = f"{MODEL}/{NEW}", nodes: tuple[str, ...] = TARGET) -> None:
    """The end of every case: nodes serving known versions, the ledger verifying and true, a rerun converging."""
    for node in fleet.dark_nodes():
        fleet.running.fleet.start(node)
    wait_for(lambda: all(fleet.agent_health(n).get("version") is not None for n in fleet.nodes), timeout=120,
             what="every agent serving a version (a restarted node's agent loads its model first)")
    assert_serving_known_versions(fleet)
    assert not open_runs(fleet) or all(not run_processes(r) for r in open_runs(fleet))
    reconcile(fleet, nodes)
    assert_ledger_true(fleet)
    rc, data = start_deploy(fleet, ref, nodes).result()
    assert rc == 0, data
    version = ref.split("/")[-1]
    assert {n: fleet.version(n) for n in nodes} == dict.fromkeys(nodes, version)
    assert_serving_known_versions(fleet)
    assert_ledger_true(fleet)
    assert not any(behind for n, (_, behind) in placements(fleet).items() if n in nodes)
    assert not fleet.locks(), fleet.locks()

