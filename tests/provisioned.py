"""The shared provisioned fleet: one simulated fleet, seeded and provisioned once per test session.

Provisioning is the largest cost of the suite (every node gets an agent venv with numpy, pandas, scipy and
scikit-learn), so the tests that only deploy, roll back and break things share one fleet instead of building
their own. The session fixture ``provisioned_fleet`` (tests/conftest.py) yields a :class:`ProvisionedFleet`.

Contract (what :meth:`ProvisionedFleet.reset` guarantees, and what every user gets before it starts):

* six nodes (``cpu=3,gpu=1,arm=2`` on 127.0.78.1-6, sshd on port 2278; pytest-xdist worker ``gw1`` gets its
  own on 127.0.79 / 2279, see :func:`fleet_address`), none dark, provisioned once;
* the demo registry seeded in the project (``credit-risk`` versions 1-3, champion -> 2, challenger -> 3);
* every node on the **base release** ``credit-risk/1``: ``current`` points at it and no other release is unpacked
  there (a deploy of another version transfers its bundle), the agent's ``/health`` answers version 1, no node
  holds a deploy lock, and no test override (host_vars) is left in the inventory;
* the project's ledger (its ``modelfleet.toml``) says so: every node's placement (``core/placement.py``) is
  version 1 and none is behind. A user that asks for a ledger of its own (``reset(ledger="name")``) gets a
  fresh file, which the reset fills with one run that deploys the base release (changing nothing on the nodes).

The reset works through the run pipeline, never behind its back: dark nodes are started (``SimFleet.start``),
leftover locks are removed by an ``unlock --force`` run, nodes off the base release get a deploy of it (in one
wave, only those nodes). When the fleet is as promised it costs a few file reads and one ``/health`` per node.

Each pytest-xdist worker that runs a user brings up a fleet of its own, on addresses of its own, once; users run
one after the other in that worker, so a test may change the fleet freely; it must stop what it started
(processes, mounts) and call :meth:`reset` (or rely on the next user's) to hand the fleet back. The fault cases
are each a unit of work of their own (``XDIST_EACH_TEST``, tests/conftest.py), so they spread over the workers
instead of queueing in one: a single shared fleet was the suite's critical path. Users: tests/faults/,
tests/integration/test_cli_outcomes.py, test_rollout.py, test_node_logs_live.py, test_thresholds_fleet.py and
tests/console/test_tmux.py (the shell test).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelfleet.sim.session import RunningFleet
from tests.integration.simfleet import ProjectCtx, write_project

SPEC = "cpu=3,gpu=1,arm=2"
#: loopback prefix and sshd port of the fleet of each pytest-xdist worker (gw0, gw1, ...; a serial run uses the
#: first); free in the table of tests/integration/conftest.py
WORKER_ADDRESSES = (("127.0.78", 2278), ("127.0.79", 2279), ("127.0.80", 2280), ("127.0.82", 2282))


def fleet_address(worker: str | None = None) -> tuple[str, int]:
    """(address prefix, ssh port) of the provisioned fleet of xdist worker ``worker`` (default: this process's)."""
    worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0) if worker.removeprefix("gw").isdigit() else 0
    if index >= len(WORKER_ADDRESSES):
        raise RuntimeError(f"pytest-xdist worker {worker}: the provisioned fleet has addresses for "
                           f"{len(WORKER_ADDRESSES)} workers; fix: run with -n {len(WORKER_ADDRESSES)} or fewer, "
                           "or add a free prefix to WORKER_ADDRESSES in tests/provisioned.py")
    return WORKER_ADDRESSES[index]


MODEL = "credit-risk"
BASE_VERSION = "1"
BASE_REF = f"{MODEL}/{BASE_VERSION}"
#: the gate's patience on a loaded 2-core machine (a first agent start can take longer than the default 16 s)
GROUP_VARS = "model_release_gate_wait_s: 40\n"


@dataclass
class ResetReport:
    """What :meth:`ProvisionedFleet.reset` had to do (empty when the fleet was as promised)."""

    started: list[str] = field(default_factory=list)
    unlocked: list[str] = field(default_factory=list)
    redeployed: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.started or self.unlocked or self.redeployed)


class ProvisionedFleet(ProjectCtx):
    """The shared fleet and its project folder (``modelfleet.toml``: registry, ledger, inventory of the fleet)."""

    def __init__(self, running: RunningFleet, project: Path) -> None:
        super().__init__(running, project)
        from modelfleet.core.fleet import Inventory

        self.inventory = Inventory.load(self.settings.fleet.inventory)
        self.nodes = [n.name for n in self.inventory.nodes]
        self.ledger_name = "ledger"

    # -- the project's ledger ----------------------------------------------------------------------------------

    @property
    def ledger_url(self) -> str:
        return f"sqlite:///{self.project}/{self.ledger_name}.db"

    def use_ledger(self, name: str) -> None:
        """Point the project (its modelfleet.toml, so the CLI too) and :attr:`settings` at ledger ``name``."""
        from modelfleet.core.config import load_settings

        toml = self.project / "modelfleet.toml"
        text = toml.read_text(encoding="utf-8")
        toml.write_text(text.replace(f'url = "{self.ledger_url}"', f'url = "sqlite:///{self.project}/{name}.db"'),
                        encoding="utf-8")
        self.ledger_name = name
        self.settings = load_settings(config_file=toml)
        assert self.settings.ledger.url == self.ledger_url, (self.settings.ledger.url, self.ledger_url)

    # -- what the nodes hold -----------------------------------------------------------------------------------

    def node_root(self, node: str) -> Path:
        return Path(self.running.fleet.nodes_dir / node / "opt" / "modelfleet")

    def model_dir(self, node: str) -> Path:
        return self.node_root(node) / "models" / MODEL

    def current(self, node: str) -> str | None:
        """The release ``current`` points at (``1-0123456789ab``), or None."""
        link = self.model_dir(node) / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def version(self, node: str) -> str | None:
        release = self.current(node)
        return release.split("-")[0] if release else None

    def versions(self) -> dict[str, str | None]:
        return {node: self.version(node) for node in self.nodes}

    def lock_path(self, node: str) -> Path:
        return self.node_root(node) / "run" / f"{MODEL}.deploy.lock"

    def locks(self) -> dict[str, dict[str, Any]]:
        """node -> the holder written in its deploy lock, for every locked node."""
        out: dict[str, dict[str, Any]] = {}
        for node in self.nodes:
            path = self.lock_path(node)
            if path.exists():
                try:
                    out[node] = json.loads(path.read_text(encoding="utf-8") or "{}")
                except (OSError, ValueError):
                    out[node] = {"unreadable": str(path)}
        return out

    def journal(self, node: str) -> list[dict[str, Any]]:
        """The node's own ``log/deployments.jsonl``, one dict per line."""
        path = self.node_root(node) / "log" / "deployments.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def agent_health(self, node: str, timeout: float = 5.0) -> dict[str, Any]:
        """The agent's ``/health`` on ``node`` (``{"status_code": ..., **body}``; ``{"error": ...}`` when silent)."""
        url = self.inventory.node(node).agent_url + "/health"
        try:
            resp = httpx.get(url, timeout=timeout, trust_env=False)
        except httpx.HTTPError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        try:
            body = resp.json()
        except ValueError:
            body = {}
        return {"status_code": resp.status_code, **(body if isinstance(body, dict) else {})}

    def dark_nodes(self) -> list[str]:
        return [n.name for n in self.running.fleet.status().nodes if not n.healthy or n.killed]

    # -- test overrides --------------------------------------------------------------------------------------

    @property
    def host_vars_dir(self) -> Path:
        return Path(self.settings.fleet.inventory).parent / "host_vars"

    def override(self, node: str, variables: dict[str, Any]) -> None:
        """Inventory variables for one node (``host_vars/<node>.yml``), removed by :meth:`reset`."""
        self.host_vars_dir.mkdir(exist_ok=True)
        (self.host_vars_dir / f"{node}.yml").write_text(json.dumps(variables), encoding="utf-8")

    def clear_overrides(self) -> None:
        if self.host_vars_dir.is_dir():
            shutil.rmtree(self.host_vars_dir)

    # -- the reset -------------------------------------------------------------------------------------------

    def prune_releases(self, node: str) -> None:
        """Remove the node's unpacked releases other than the one ``current`` points at, and a ``previous`` link
        left dangling (a node that holds a release switches to it without a transfer, so a case that breaks the
        transfer would test nothing)."""
        current = self.current(node)
        releases = self.model_dir(node) / "releases"
        for release in releases.iterdir() if current and releases.is_dir() else []:
            if release.name != current and release.is_dir() and not release.is_symlink():
                shutil.rmtree(release)
        previous = self.model_dir(node) / "previous"
        if previous.is_symlink() and not previous.exists():
            previous.unlink()

    def extra_releases(self) -> dict[str, list[str]]:
        """node -> the unpacked releases other than ``current`` (none, by the contract)."""
        out: dict[str, list[str]] = {}
        for node in self.nodes:
            releases = self.model_dir(node) / "releases"
            names = sorted(p.name for p in releases.iterdir() if p.is_dir() and not p.is_symlink()) \
                if releases.is_dir() else []
            if extra := [name for name in names if name != self.current(node)]:
                out[node] = extra
        return out

    def off_base(self) -> list[str]:
        """Nodes not as the contract says: another release current, or an agent that does not answer version 1."""
        off = []
        for node in self.nodes:
            health = self.agent_health(node)
            if self.version(node) != BASE_VERSION or str(health.get("version")) != BASE_VERSION:
                off.append(node)
        return off

    def unplaced(self) -> list[str]:
        """Nodes whose placement in the project's ledger is not the base release, or that are behind."""
        from modelfleet.core.ledger import Ledger
        from modelfleet.core.placement import PLACING_ACTIONS, placements

        with Ledger(self.settings.ledger.url) as ledger:
            ledger.ensure_schema()
            placed = placements((e for e in ledger.events(model=MODEL) if e.action in PLACING_ACTIONS), model=MODEL)
        return [n for n in self.nodes
                if (p := placed.get((n, MODEL))) is None or p.version != BASE_VERSION or p.behind]

    def reset(self, *, ledger: str | None = None) -> ResetReport:
        """Bring the fleet back to the contract (module docstring), through the run pipeline."""
        from modelfleet.runners.pipeline import launch
        from modelfleet.runners.requests import DeployRequest, UnlockRequest

        report = ResetReport()
        self.clear_overrides()
        if ledger is not None and ledger != self.ledger_name:
            self.use_ledger(ledger)
        for node in self.dark_nodes():
            self.running.fleet.start(node)
            report.started.append(node)
        locked = sorted(self.locks())
        if locked:
            result = launch(self.settings, UnlockRequest(model=MODEL, limit=",".join(locked), force=True,
                                                         origin="test-reset",
                                                         reason="shared test fleet reset")).wait(600)
            assert result.ok, f"reset: unlock {result.outcome}: {result.problem}"
            report.unlocked, report.run_ids = locked, [*report.run_ids, result.run_id]
        redeploy = sorted(set(self.off_base()) | set(self.unplaced()), key=self.nodes.index)
        if redeploy:
            result = launch(self.settings, DeployRequest(ref=BASE_REF, limit=",".join(redeploy), waves="100%",
                                                         max_fail=100, origin="test-reset",
                                                         reason="shared test fleet reset")).wait(1200)
            assert result.ok, f"reset: deploy {BASE_REF} {result.outcome}: {result.problem}"
            report.redeployed, report.run_ids = redeploy, [*report.run_ids, result.run_id]
        # after the redeploy: a node moved back to the base release keeps the one it left unpacked
        for node in self.nodes:
            self.prune_releases(node)
        self.assert_contract()
        return report

    def assert_contract(self) -> None:
        assert not self.dark_nodes(), self.dark_nodes()
        assert not self.locks(), self.locks()
        assert not self.off_base(), {n: (self.version(n), self.agent_health(n)) for n in self.off_base()}
        assert not self.extra_releases(), self.extra_releases()
        assert not self.unplaced(), self.unplaced()


def provisioned_fleet_session() -> Iterator[ProvisionedFleet]:
    """Bring the shared fleet up, seed, provision, deploy the base release; down at the end of the session."""
    from tests.integration.simfleet import make_sim_fleet

    prefix, ssh_port = fleet_address()
    with make_sim_fleet(prefix, ssh_port, SPEC) as running:
        project = write_project(running, SPEC)
        group_vars = Path(running.inventory).parent / "group_vars"
        group_vars.mkdir(exist_ok=True)
        (group_vars / "edge.yml").write_text(GROUP_VARS, encoding="utf-8")
        fleet = ProvisionedFleet(running, project)
        for step in (("demo", "seed"), ("provision", "--yes"), ("deploy", BASE_REF, "--yes", "--waves", "100%")):
            proc = fleet.cli(*step)
            assert proc.returncode == 0, f"{' '.join(step)}: {proc.stdout}\n{proc.stderr}"
        fleet.assert_contract()
        yield fleet
