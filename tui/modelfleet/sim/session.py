"""A fleet for the duration of a ``with`` block: tests, molecule create/destroy and benchmarks use this.

Each caller picks its own state directory, address prefix and ssh port, so several fleets (one per test
module, one per engineer) run side by side on loopback without sharing anything::

    with sim_fleet_session(tmp / "state", address_prefix="127.0.77", ssh_port=2277) as running:
        subprocess.run([".venv/bin/ansible", "-i", str(running.inventory), "edge", "-m", "ping"])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from modelfleet.core.config import Settings, load_settings
from modelfleet.sim.fleet import FleetStatus, SimFleet


@dataclass(frozen=True)
class RunningFleet:
    fleet: SimFleet
    settings: Settings
    inventory: Path
    status: FleetStatus

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir


def fleet_settings(
    state_dir: Path,
    *,
    address_prefix: str,
    ssh_port: int,
    nodes: str = "cpu=3,gpu=1,arm=2",
    base: Settings | None = None,
) -> Settings:
    """Settings whose state dir, inventory and sim section point at this fleet; the rest from ``base``.

    Without ``base``, embedded defaults rooted at ``state_dir``'s parent (no modelfleet.toml, no environment).
    """
    state_dir = Path(state_dir).resolve()
    if base is None:
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        base = load_settings(env={}, cwd=state_dir.parent)
    return replace(
        base,
        paths=replace(base.paths, state_dir=state_dir),
        fleet=replace(base.fleet, inventory=state_dir / "sim" / "inventory.yml"),
        sim=replace(base.sim, nodes=nodes, address_prefix=address_prefix, ssh_port=ssh_port),
    )


@contextlib.contextmanager
def sim_fleet_session(
    state_dir: Path,
    *,
    address_prefix: str,
    ssh_port: int,
    nodes: str = "cpu=3,gpu=1,arm=2",
    base: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[RunningFleet]:
    """Bring a fleet up, yield it, and always bring it down again (even when the block raises)."""
    settings = fleet_settings(state_dir, address_prefix=address_prefix, ssh_port=ssh_port, nodes=nodes, base=base)
    fleet = SimFleet(settings, progress=progress)
    try:
        result = fleet.up(nodes)
        yield RunningFleet(fleet, settings, Path(settings.fleet.inventory), result.status)
    finally:
        fleet.down()
