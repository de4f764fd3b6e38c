"""Read an environment's outputs and write its Ansible inventory (``modelfleet infra output|inventory``).

Reading outputs changes nothing, so it is not a run: one ``terraform output -json`` with the run environment of
:mod:`modelfleet.runners.terraform`. The inventory comes from the ``nodes`` output
(:func:`modelfleet.core.infra_inventory.render_inventory`). An environment whose ``connection`` output is
``modelfleet-sim`` (envs/local) runs on the simulated fleet: its nodes are reached through the fleet's own sshd,
key and known_hosts, and live in folders on this machine, so their connection and folder variables are taken
from the simulated fleet's own inventory (``modelfleet.sim.inventory``), for exactly the nodes Terraform made.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.core.errors import ConfigError, FleetError, RunError
from modelfleet.core.infra import InfraEnv, InfraNode, get_env, parse_nodes
from modelfleet.core.infra_inventory import InventoryExtras, render_inventory
from modelfleet.runners.ansible import new_run_id
from modelfleet.runners.terraform import engine_environment
from modelfleet.runners.terraform_engine import Engine, find_engine, flag

SIM_CONNECTION = "modelfleet-sim"
NO_STATE = "No state file was found"  # `terraform state list` before anything was applied
# host variables the simulated fleet's inventory sets that Terraform's nodes output already gives
_FROM_NODES = {"ansible_host", "ansible_port", "ansible_user", "modelfleet_node_class", "modelfleet_agent_address"}


@dataclass(frozen=True)
class WrittenInventory:
    env: str
    path: Path
    nodes: list[InfraNode]
    simulated: bool


def read_outputs(settings: Any, env: InfraEnv, *, engine: Engine | None = None,
                 environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{name: value}`` of the environment's root outputs (empty when nothing was applied yet)."""
    raw = json.loads(_engine_stdout(settings, env, "output", engine, environ, json=flag(), no_color=flag()) or "{}")
    return {name: item.get("value") for name, item in raw.items() if isinstance(item, dict)}


def read_resources(settings: Any, env: InfraEnv, *, engine: Engine | None = None,
                   environ: Mapping[str, str] | None = None) -> list[str]:
    """Addresses of the resources in the environment's state (``terraform state list``; empty before an apply)."""
    text = _engine_stdout(settings, env, "state", engine, environ, "list", no_state_ok=True)
    return [line.strip() for line in text.splitlines() if line.strip()]


def _engine_stdout(settings: Any, env: InfraEnv, command: str, engine: Engine | None,
                   environ: Mapping[str, str] | None, *args: str, no_state_ok: bool = False, **options: Any) -> str:
    """Run one read-only engine command in the environment (as a run's engine runs) and return its stdout."""
    if not env.initialized:
        raise ConfigError(f"environment {env.name} was never initialised here, so it has no state or outputs",
                          hint=f"run `modelfleet infra plan --env {env.name}` and `infra apply --env {env.name}`")
    engine = engine or find_engine(settings.infra.engine, environ=environ)
    proc = subprocess.run(
        engine.argv(command, *args, **options), cwd=env.path, capture_output=True, text=True,
        env=engine_environment(settings, env, new_run_id(), environ), stdin=subprocess.DEVNULL, timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        if no_state_ok and NO_STATE in proc.stderr + proc.stdout:
            return ""
        first = next((line.strip() for line in proc.stderr.splitlines() if line.strip()), f"exit {proc.returncode}")
        raise RunError(f"terraform {command} for {env.name} failed: {first}",
                       hint=f"run `modelfleet infra init --env {env.name}` and check its state backend")
    return proc.stdout


def sim_extras(settings: Any, nodes: list[InfraNode], env: str) -> InventoryExtras:
    """Connection and folder variables of Terraform-made simulated nodes, from the simulated fleet itself."""
    import yaml

    from modelfleet.sim import inventory as sim_inventory
    from modelfleet.sim.fleet import SimFleet
    from modelfleet.sim.sshd import SshServer
    from modelfleet.sim.state import load_state

    fleet = SimFleet(settings)
    state = load_state(fleet.state_file)
    running = {n.name: n for n in state.nodes} if state is not None else {}
    missing = [n.name for n in nodes if n.name not in running]
    if state is None or missing:
        raise FleetError(
            f"environment {env}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} in Terraform's state "
            "but not in the simulated fleet (stopped by `modelfleet sim down`?)",
            hint=f"recreate: modelfleet infra plan --env {env} "
                 + " ".join(f"--replace 'terraform_data.node[\"{m}\"]'" for m in missing)
                 + f" && modelfleet infra apply --env {env}")
    for node in nodes:
        sim_node = running[node.name]
        if (sim_node.address, sim_node.node_class) != (node.address, node.node_class):
            raise FleetError(f"environment {env}: node {node.name} is {node.node_class.value} on {node.address} "
                             f"in Terraform but {sim_node.node_class.value} on {sim_node.address} in the fleet",
                             hint=f"replace it: modelfleet infra plan --env {env} "
                                  f"--replace 'terraform_data.node[\"{node.name}\"]'")
    ssh = SshServer(fleet.sim_dir / "ssh", state.ssh_port, state.user)
    text = sim_inventory.render(state, known_hosts=ssh.known_hosts, client_key=ssh.client_key,
                                agent_port=settings.fleet.agent_port)
    data = yaml.safe_load(text) or {}
    edge = (data.get("all") or {}).get("children", {}).get("edge") or {}
    host_vars: dict[str, dict[str, Any]] = {}
    for group in (edge.get("children") or {}).values():
        for host, hv in ((group or {}).get("hosts") or {}).items():
            host_vars[host] = {k: v for k, v in (hv or {}).items() if k not in _FROM_NODES}
    edge_vars = {k: v for k, v in (edge.get("vars") or {}).items() if k not in _FROM_NODES}
    return InventoryExtras(edge_vars, {n.name: host_vars.get(n.name, {}) for n in nodes},
                           note="connection and folder variables from the simulated fleet (modelfleet sim)")


def write_env_inventory(settings: Any, env_name: str, output: Path | None = None, *,
                        environ: Mapping[str, str] | None = None) -> WrittenInventory:
    """Read ``nodes`` (and ``connection``) and write the inventory; returns where and what."""
    from modelfleet.sim.state import write_atomic

    env = get_env(settings, env_name)
    outputs = read_outputs(settings, env, environ=environ)
    nodes = parse_nodes(outputs, env=env.name)
    simulated = outputs.get("connection") == SIM_CONNECTION
    extras = sim_extras(settings, nodes, env.name) if simulated and nodes else None
    path = Path(output) if output is not None else env.inventory_path
    write_atomic(path, render_inventory(nodes, env=env.name, extras=extras))
    return WrittenInventory(env.name, path, nodes, simulated)
