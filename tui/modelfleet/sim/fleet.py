"""``SimFleet``: bring the simulated edge fleet up and down, make nodes go dark and come back, report status.

One object per state directory; all state lives in ``<state_dir>/sim/state.json`` (see :mod:`.state`), so any
number of short-lived ``SimFleet`` objects (one per CLI command) see the same fleet. Changing operations hold
the fleet lock. The same code serves ``modelfleet sim``, ``terraform/envs/local``, molecule's create/destroy
and the integration-test fixtures.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfleet.core.config import Settings
from modelfleet.core.errors import ConfigError, FleetError, NodeNotFound, UsageError
from modelfleet.core.fleet import NodeClass
from modelfleet.sim import inventory, procs, supervisor
from modelfleet.sim.spec import format_spec, parse_spec, plan_nodes
from modelfleet.sim.sshd import SshServer, banner
from modelfleet.sim.state import FleetState, NodeState, clear_state, fleet_lock, load_state, save_state

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class NodeStatus:
    name: str
    address: str
    node_class: str
    root: str
    killed: bool
    ssh: bool
    ssh_banner: str | None
    supervisor: str | None  # supervisord state (RUNNING, ...) or None when it does not answer

    @property
    def healthy(self) -> bool:
        """Answers as it should: both up when live, both silent when killed."""
        live = self.ssh and self.supervisor == "RUNNING"
        dark = not self.ssh and self.supervisor is None
        return dark if self.killed else live


@dataclass(frozen=True)
class FleetStatus:
    state: str  # "up" | "degraded" | "down"
    spec: str | None = None
    address_prefix: str | None = None
    ssh_port: int | None = None
    inventory: str | None = None
    nodes: list[NodeStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UpResult:
    already_up: bool
    status: FleetStatus


class SimFleet:
    """The simulated fleet of one state directory."""

    def __init__(self, settings: Settings, *, progress: Progress | None = None) -> None:
        self.settings = settings
        self.sim_dir = settings.state_dir / "sim"
        self.state_file = self.sim_dir / "state.json"
        self.nodes_dir = self.sim_dir / "nodes"
        self.inventory_path = Path(settings.fleet.inventory)
        self._say = progress or _quiet

    # -- public API -------------------------------------------------------------------------------------------

    def up(self, spec: str | None = None) -> UpResult:
        """Start sshd, every node's supervisord and write the inventory. A running fleet is left as it is.

        ``spec`` defaults to ``sim.nodes``. It is validated before anything changes.
        """
        explicit = spec is not None
        if spec is not None:
            plan = plan_nodes(spec, self.settings.sim.address_prefix, origin="--nodes")
        else:
            spec = self.settings.sim.nodes
            try:
                plan = plan_nodes(spec, self.settings.sim.address_prefix, origin="sim.nodes")
            except UsageError as exc:
                raise ConfigError(
                    exc.message, hint="fix sim.nodes in modelfleet.toml or MODELFLEET_SIM_NODES"
                ) from None
        canonical = format_spec(parse_spec(spec))
        with fleet_lock(self.sim_dir):
            current = load_state(self.state_file)
            if current is not None and self._running(current):
                if explicit and canonical != current.spec:
                    raise FleetError(
                        f"the simulated fleet is already up with {current.spec}, not {canonical}",
                        hint="run `modelfleet sim down` first to change the fleet's shape",
                    )
                self._say(f"simulated fleet already up ({len(current.nodes)} nodes, {current.spec})")
                return UpResult(True, self._status(current))
            if current is not None:
                self._say("found stale fleet state (processes gone, e.g. after a reboot): cleaning up")
                self._stop_all(current)
                clear_state(self.state_file)

            state = FleetState(
                spec=canonical,
                address_prefix=self.settings.sim.address_prefix,
                ssh_port=self.settings.sim.ssh_port,
                user=pwd.getpwuid(os.geteuid()).pw_name,
                inventory=self.inventory_path.resolve(),
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                nodes=[
                    NodeState(p.name, p.address, p.node_class, (self.nodes_dir / p.name).resolve())
                    for p in plan
                ],
            )
            for node in state.nodes:
                supervisor.check_socket_path(node)
            try:
                self._start_all(state)
            except BaseException:
                self._say("start failed: stopping what was started")
                self._stop_all(state)
                clear_state(self.state_file)
                raise
            return UpResult(False, self._status(state))

    def down(self) -> list[str]:
        """Stop every process the fleet started and wait for them. Returns what was stopped (for messages)."""
        with fleet_lock(self.sim_dir):
            state = load_state(self.state_file)
            if state is None:
                self._say("simulated fleet is not up")
                return []
            stopped = self._stop_all(state)
            clear_state(self.state_file)
            leftovers = procs.listeners_on(n.address for n in state.nodes)
            if leftovers:
                a, p, pid = leftovers[0]
                raise FleetError(
                    f"after stopping the fleet, {a}:{p} still listens (pid {pid or 'unknown'}); "
                    "it was not started by the fleet",
                    hint=f"stop pid {pid} yourself if it is a leftover" if pid else "find it with `ss -ltnp`",
                )
            self._say(f"simulated fleet down ({len(stopped)} processes stopped)")
            return stopped

    def status(self) -> FleetStatus:
        state = load_state(self.state_file)
        if state is None:
            return FleetStatus(state="down")
        return self._status(state)

    def kill(self, name: str) -> bool:
        """Make ``name`` go dark: its supervisord and programs stop, its SSH address stops answering.

        Returns False when the node was already dark.
        """
        with fleet_lock(self.sim_dir):
            state = self._require_up()
            node = self._node(state, name)
            if node.killed:
                self._say(f"{name} is already dark")
                return False
            node.killed = True
            save_state(self.state_file, state)
            live = [n.address for n in state.nodes if not n.killed]
            ssh = self._ssh(state)
            self._say(f"{name}: stopping supervisord and closing {node.address}:{state.ssh_port}")
            # supervisord takes about a second to wind down; close the ssh address meanwhile
            with ThreadPoolExecutor(max_workers=1) as pool:
                stopping = pool.submit(supervisor.stop, node.supervisord)
                if live:
                    ssh.reload(self._require_sshd(state), live, removed=[node.address])
                else:  # no ListenAddress left would mean "listen everywhere": stop sshd instead
                    procs.stop_tree(state.sshd, timeout=5.0)
                    state.sshd = None
                stopping.result()
            node.supervisord = None
            save_state(self.state_file, state)
            self._say(f"{name} ({node.address}) is dark")
            return True

    def start(self, name: str) -> bool:
        """Bring a node that was killed back. Returns False when it was already up."""
        with fleet_lock(self.sim_dir):
            state = self._require_up()
            node = self._node(state, name)
            if not node.killed and procs.is_alive(node.supervisord):
                self._say(f"{name} is already up")
                return False
            if not procs.is_alive(node.supervisord):
                self._say(f"{name}: starting supervisord")
                node.supervisord = supervisor.start(node)
                save_state(self.state_file, state)
            node.killed = False
            live = [n.address for n in state.nodes if not n.killed]
            ssh = self._ssh(state)
            if procs.is_alive(state.sshd):
                assert state.sshd is not None
                ssh.reload(state.sshd, live)
            else:
                state.sshd = ssh.start(live)
            save_state(self.state_file, state)
            self._say(f"{name} ({node.address}) is up")
            return True

    # -- one node at a time (terraform/envs/local creates and destroys nodes like this) ----------------------

    def add_node(self, name: str, node_class: str, address: str, *, ssh_port: int | None = None,
                 owner: str = "cli") -> bool:
        """Make sure node ``name`` of ``node_class`` answers on ``address``; start the fleet with it if none runs.

        Idempotent: a node that is already there as asked is left alone (False), one whose supervisord died is
        started again. A node of that name with another class or address, a node made by ``sim up``, or an
        address another node holds is refused before anything changes. ``ssh_port`` must match a running
        fleet's sshd (default ``sim.ssh_port``).
        """
        cls = self._node_request(name, node_class, address)
        with fleet_lock(self.sim_dir):
            state = load_state(self.state_file)
            if state is not None and not self._anything_alive(state):
                self._say("found stale fleet state (processes gone, e.g. after a reboot): cleaning up")
                self._stop_all(state)
                clear_state(self.state_file)
                state = None
            port = ssh_port or (state.ssh_port if state is not None else self.settings.sim.ssh_port)
            if state is None:
                state = FleetState(
                    spec="", address_prefix=address.rsplit(".", 1)[0], ssh_port=port,
                    user=pwd.getpwuid(os.geteuid()).pw_name, inventory=self.inventory_path.resolve(),
                    started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                )
            elif port != state.ssh_port:
                raise FleetError(f"the simulated fleet's sshd listens on port {state.ssh_port}, not {port}",
                                 hint=f"ask for ssh port {state.ssh_port}, or remove every node first")
            node = state.node(name)
            if node is not None:
                if node.owner is None:
                    raise FleetError(f"node {name} was started by `modelfleet sim up`, not added one by one",
                                     hint="run `modelfleet sim down` first, or pick another node name")
                if (node.node_class, node.address) != (cls, address):
                    raise FleetError(
                        f"node {name} already exists with class {node.node_class.value} on {node.address}",
                        hint=f"remove it first: modelfleet sim remove {name}")
                if procs.is_alive(node.supervisord) and procs.is_alive(state.sshd):
                    self._say(f"{name} ({address}) is already up")
                    return False
            else:
                taken = next((n for n in state.nodes if n.address == address), None)
                if taken is not None:
                    raise FleetError(f"address {address} belongs to node {taken.name}",
                                     hint="give the new node another address")
                node = NodeState(name, address, cls, (self.nodes_dir / name).resolve(), owner=owner)
                supervisor.check_socket_path(node)
                state.nodes.append(node)
            node.killed = False
            self._grow(state, node)
            return True

    def remove_node(self, name: str) -> bool:
        """Stop node ``name`` and delete its root; the last node takes sshd with it. False if it was not there."""
        with fleet_lock(self.sim_dir):
            state = load_state(self.state_file)
            node = state.node(name) if state is not None else None
            if state is None or node is None:
                self._say(f"{name} is not in the simulated fleet")
                return False
            supervisor.stop(node.supervisord)
            self._stop_strays(node)
            state.nodes.remove(node)
            if not state.nodes:
                procs.stop_tree(state.sshd, timeout=5.0)
                procs.stop_trees(state.helpers.values(), timeout=5.0)  # the fleet is gone: so are its helpers
                clear_state(self.state_file)
                leftovers = procs.listeners_on([node.address])
            else:
                live = [n.address for n in state.nodes if not n.killed]
                ssh = self._ssh(state)
                state.spec = self._spec_of(state)
                save_state(self.state_file, state)
                if live and procs.is_alive(state.sshd):
                    assert state.sshd is not None
                    ssh.reload(state.sshd, live, removed=[node.address])
                elif not live:
                    procs.stop_tree(state.sshd, timeout=5.0)
                    state.sshd = None
                    save_state(self.state_file, state)
                ssh.write_known_hosts([n.address for n in state.nodes])
                self._write_inventory(state, ssh)
                leftovers = procs.listeners_on([node.address])
            shutil.rmtree(node.root, ignore_errors=True)
            if leftovers:
                a, p, pid = leftovers[0]
                raise FleetError(f"after removing {name}, {a}:{p} still listens (pid {pid or 'unknown'})",
                                 hint=f"stop pid {pid} yourself if it is a leftover" if pid else "see `ss -ltnp`")
            self._say(f"{name} ({node.address}) removed")
            return True

    @staticmethod
    def _node_request(name: str, node_class: str, address: str) -> NodeClass:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", name):
            raise UsageError(f"node name {name!r} is not a host name (lowercase letters, digits, dashes)",
                             hint="name nodes like edge-cpu-01")
        cls = NodeClass.parse(node_class, where=f"node {name}")
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if ip is None or ip.version != 4 or not ip.is_loopback or address.endswith((".0", ".255")):
            raise UsageError(f"node {name}: address {address!r} is not a host address in 127.0.0.0/8",
                             hint="simulated nodes live on loopback, e.g. 127.0.10.1")
        return cls

    @staticmethod
    def _stop_strays(node: NodeState) -> None:
        """Stop supervisord processes of ``node`` that the state does not name: a ``sim add`` killed between
        starting supervisord and saving its pid (Terraform kills provisioners when a run is cancelled)."""
        import psutil

        conf = str(node.supervisor_conf)
        strays: list[psutil.Process] = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if conf in (proc.info["cmdline"] or []) and not (node.supervisord and node.supervisord.matches(proc)):
                    strays.extend([proc, *procs.descendants(proc)])
        if strays:
            procs.stop_processes(strays, timeout=5.0)

    @staticmethod
    def _anything_alive(state: FleetState) -> bool:
        """False after a reboot: none of the processes the state names runs (a half-added node is not stale)."""
        return procs.is_alive(state.sshd) or any(procs.is_alive(n.supervisord) for n in state.nodes)

    @staticmethod
    def _spec_of(state: FleetState) -> str:
        counts = [(c, sum(1 for n in state.nodes if n.node_class is c)) for c in NodeClass]
        return format_spec([(c, k) for c, k in counts if k])

    def _grow(self, state: FleetState, node: NodeState) -> None:
        """Start ``node``'s supervisord and let sshd answer on its address (sshd starts with the first node)."""
        ssh = self._ssh(state)
        ssh.ensure_keys()
        state.spec = self._spec_of(state)
        ssh.write_known_hosts([n.address for n in state.nodes])
        save_state(self.state_file, state)
        supervisord = node.supervisord
        if supervisord is None or not procs.is_alive(supervisord):
            self._stop_strays(node)
            supervisord = node.supervisord = supervisor.spawn(node)
            save_state(self.state_file, state)
        live = [n.address for n in state.nodes if not n.killed]
        if procs.is_alive(state.sshd):
            assert state.sshd is not None
            ssh.reload(state.sshd, live)
        else:
            state.sshd = ssh.start(live)
            save_state(self.state_file, state)
        supervisor.wait_running(node, supervisord)
        self._write_inventory(state, ssh)
        self._say(f"{node.name} ({node.address}, {node.node_class.value}) is up")

    def _write_inventory(self, state: FleetState, ssh: SshServer) -> None:
        inventory.write(
            state, known_hosts=ssh.known_hosts, client_key=ssh.client_key, agent_port=self.settings.fleet.agent_port
        )

    def start_helper(self, name: str, argv: list[str], *, cwd: Path) -> Path:
        """Run ``argv`` beside the fleet, owned by it: a helper of the same name is replaced, and `down` stops
        it. Its output goes to ``sim/<name>.log`` (returned)."""
        log = self.sim_dir / f"{name}.log"
        with fleet_lock(self.sim_dir):
            state = self._require_up()
            old = state.helpers.pop(name, None)
            if procs.stop_tree(old, timeout=5.0):
                self._say(f"stopped the previous {name} (pid {old.pid if old else '?'})")
            state.helpers[name] = procs.spawn_detached(argv, log=log, cwd=cwd)
            save_state(self.state_file, state)
            self._say(f"{name} running (pid {state.helpers[name].pid}); output in {log}")
        return log

    # -- internals --------------------------------------------------------------------------------------------

    def _ssh(self, state: FleetState) -> SshServer:
        return SshServer(self.sim_dir / "ssh", state.ssh_port, state.user)

    def _start_all(self, state: FleetState) -> None:
        ssh = self._ssh(state)
        ssh.ensure_keys()
        addresses = [n.address for n in state.nodes]
        ssh.write_known_hosts(addresses)
        save_state(self.state_file, state)  # from here on, `down` can find whatever we start
        for node in state.nodes:
            node.supervisord = supervisor.spawn(node)
            save_state(self.state_file, state)
        state.sshd = ssh.start(addresses)
        save_state(self.state_file, state)
        self._say(f"sshd listening on {addresses[0]}..{addresses[-1]} port {state.ssh_port}")
        for node in state.nodes:
            assert node.supervisord is not None
            supervisor.wait_running(node, node.supervisord)
        self._say(f"{len(state.nodes)} nodes running their own supervisord")
        self._write_inventory(state, ssh)
        self._say(f"inventory written to {state.inventory}")

    def _stop_all(self, state: FleetState) -> list[str]:
        stopped: list[str] = []
        for name, ref in list(state.helpers.items()):
            if procs.stop_tree(ref, timeout=5.0):
                stopped.append(name)
        state.helpers.clear()
        if procs.stop_tree(state.sshd, timeout=5.0):
            stopped.append("sshd")
        state.sshd = None
        was_running = supervisor.stop_many([n.supervisord for n in state.nodes])
        for node in state.nodes:
            if node.supervisord in was_running:
                stopped.append(f"supervisord of {node.name}")
            node.supervisord = None
        return stopped

    def _running(self, state: FleetState) -> bool:
        """True when every process the state says should run still runs (otherwise the state is stale)."""
        live = [n for n in state.nodes if not n.killed]
        if live and not procs.is_alive(state.sshd):
            return False
        return all(procs.is_alive(n.supervisord) for n in live)

    def _require_up(self) -> FleetState:
        state = load_state(self.state_file)
        if state is None:
            raise FleetError("the simulated fleet is not up", hint="run `modelfleet sim up`")
        return state

    def _require_sshd(self, state: FleetState) -> procs.ProcessRef:
        if not procs.is_alive(state.sshd) or state.sshd is None:
            raise FleetError("the fleet's sshd is not running", hint="run `modelfleet sim down` then `sim up`")
        return state.sshd

    @staticmethod
    def _node(state: FleetState, name: str) -> NodeState:
        node = state.node(name)
        if node is None:
            raise NodeNotFound(
                f"no simulated node named {name!r}; known nodes: {', '.join(n.name for n in state.nodes)}",
                hint="pick a name from `modelfleet sim status`",
            )
        return node

    def _status(self, state: FleetState) -> FleetStatus:
        def probe(n: NodeState) -> NodeStatus:
            line = banner(n.address, state.ssh_port, timeout=1.0)
            return NodeStatus(
                name=n.name,
                address=n.address,
                node_class=n.node_class.value,
                root=str(n.root),
                killed=n.killed,
                ssh=line is not None,
                ssh_banner=line,
                supervisor=supervisor.state_of(n),
            )

        with ThreadPoolExecutor(max_workers=min(32, max(1, len(state.nodes)))) as pool:
            nodes = list(pool.map(probe, state.nodes))
        overall = "up" if all(s.healthy for s in nodes) else "degraded"
        return FleetStatus(
            state=overall,
            spec=state.spec,
            address_prefix=state.address_prefix,
            ssh_port=state.ssh_port,
            inventory=str(state.inventory),
            nodes=nodes,
        )
