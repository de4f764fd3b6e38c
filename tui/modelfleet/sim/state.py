"""The simulated fleet's state file (``<state_dir>/sim/state.json``) and the lock around changing it.

The file is the only memory the fleet has between commands: which processes *we* started (pid + start time),
the nodes with their addresses, and which nodes were made to go dark. It is written atomically (temp file,
fsync, rename) so a crash never leaves half a file, and every command that changes the fleet holds an
exclusive ``flock`` on ``sim/.lock`` so two operators (or a test and a CLI) cannot interleave.

Layout (version 1)::

    {"version": 1, "spec": "cpu=3,gpu=1,arm=2", "address_prefix": "127.0.10", "ssh_port": 2222,
     "user": "root", "inventory": "/abs/inventory.yml", "started_at": "2025-01-01T00:00:00+00:00",
     "sshd": {"pid": 123, "create_time": 1735689600.12, "since_boot": 512.3, "boot": "<boot id>"} | null,
     "nodes": [{"name": "edge-cpu-01", "address": "127.0.10.1", "node_class": "cpu",
                "root": "/abs/sim/nodes/edge-cpu-01", "killed": false,
                "supervisord": {"pid": 124, "create_time": 1735689600.3, ...} | null}, ...],
     "helpers": {"traffic": {"pid": 130, ...}}}     (may be missing: no helpers)
    (``since_boot``/``boot`` may be missing in files written before they existed: identity then falls back to
    ``create_time``.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.core.errors import FleetError
from modelfleet.core.fleet import NodeClass
from modelfleet.sim.procs import ProcessRef

STATE_VERSION = 1


@dataclass
class NodeState:
    name: str
    address: str
    node_class: NodeClass
    root: Path
    supervisord: ProcessRef | None = None
    killed: bool = False
    owner: str | None = None  # who added it one by one (e.g. "terraform:local"); None: `sim up`

    @property
    def modelfleet_root(self) -> Path:
        """Where ``/opt/modelfleet`` of this node lives on the controller's disk."""
        return self.root / "opt" / "modelfleet"

    @property
    def supervisor_conf(self) -> Path:
        return self.root / "etc" / "supervisor" / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "run" / "supervisor.sock"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "node_class": self.node_class.value,
            "root": str(self.root),
            "killed": self.killed,
            "supervisord": self.supervisord.to_json() if self.supervisord else None,
            "owner": self.owner,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeState:
        return cls(
            name=str(d["name"]),
            address=str(d["address"]),
            node_class=NodeClass(d["node_class"]),
            root=Path(d["root"]),
            supervisord=ProcessRef.from_json(d.get("supervisord")),
            killed=bool(d.get("killed", False)),
            owner=d.get("owner"),
        )


@dataclass
class FleetState:
    spec: str
    address_prefix: str
    ssh_port: int
    user: str
    inventory: Path
    started_at: str
    sshd: ProcessRef | None = None
    nodes: list[NodeState] = field(default_factory=list)
    # processes the fleet runs beside its nodes (the demo traffic of `make run`), stopped with the fleet
    helpers: dict[str, ProcessRef] = field(default_factory=dict)

    def node(self, name: str) -> NodeState | None:
        return next((n for n in self.nodes if n.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "spec": self.spec,
            "address_prefix": self.address_prefix,
            "ssh_port": self.ssh_port,
            "user": self.user,
            "inventory": str(self.inventory),
            "started_at": self.started_at,
            "sshd": self.sshd.to_json() if self.sshd else None,
            "nodes": [n.to_json() for n in self.nodes],
            "helpers": {name: ref.to_json() for name, ref in self.helpers.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FleetState:
        return cls(
            spec=str(d["spec"]),
            address_prefix=str(d["address_prefix"]),
            ssh_port=int(d["ssh_port"]),
            user=str(d["user"]),
            inventory=Path(d["inventory"]),
            started_at=str(d["started_at"]),
            sshd=ProcessRef.from_json(d.get("sshd")),
            nodes=[NodeState.from_json(n) for n in d.get("nodes", [])],
            helpers={str(k): ref for k, v in (d.get("helpers") or {}).items()
                     if (ref := ProcessRef.from_json(v)) is not None},
        )


def load_state(path: Path) -> FleetState | None:
    """The recorded fleet, or None when there is none. A corrupt file is a FleetError naming it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FleetError(
            f"simulated fleet state {path} is unreadable: {exc}",
            hint=f"stop leftover sshd/supervisord processes by hand if any, then delete {path}",
        ) from None
    if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
        found = raw.get("version") if isinstance(raw, dict) else "?"
        raise FleetError(
            f"simulated fleet state {path} has an unknown layout (version {found})",
            hint=f"delete {path} after stopping leftover processes",
        )
    try:
        return FleetState.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise FleetError(
            f"simulated fleet state {path} is incomplete ({exc})",
            hint=f"delete {path} after stopping leftover processes",
        ) from None


def save_state(path: Path, state: FleetState) -> None:
    """Write atomically: a reader sees the old file or the new one, never a mix."""
    write_atomic(path, json.dumps(state.to_json(), indent=2) + "\n")


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def clear_state(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def fleet_lock(sim_dir: Path) -> Iterator[None]:
    """Exclusive lock for commands that change the fleet (blocks until the other command is done)."""
    sim_dir.mkdir(parents=True, exist_ok=True)
    with open(sim_dir / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
