"""The Ansible inventory of an environment, written from its Terraform ``nodes`` output.

Groups, as every modelfleet inventory has them: ``edge`` with children ``edge_cpu``, ``edge_gpu``, ``edge_arm``
(each node in its class's group), and one group per environment (``staging``, ``production``, ...). Each host
gets ``ansible_host``, ``ansible_port``, ``ansible_user``, ``modelfleet_node_class``, ``modelfleet_node_arch`` and
``modelfleet_agent_address``; ``extra`` adds what a kind of environment needs on top (the simulated fleet's keys
and folders, see :mod:`modelfleet.runners.terraform`). Pure: nodes in, YAML text out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelfleet.core.fleet import EDGE_GROUP, NodeClass
from modelfleet.core.infra import InfraNode

HEADER = """\
# Written by `modelfleet infra inventory --env {env}` from Terraform's `nodes` output; rewritten every time.
# Groups: edge (children edge_cpu, edge_gpu, edge_arm) and one group per environment.
"""


@dataclass(frozen=True)
class InventoryExtras:
    """Variables a kind of environment adds: on ``edge`` for every node, and per host."""

    edge_vars: Mapping[str, Any] = field(default_factory=dict)
    host_vars: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    note: str = ""  # one comment line on where the extras come from


def inventory_data(nodes: Sequence[InfraNode], extras: InventoryExtras | None = None) -> dict[str, Any]:
    """The inventory as Ansible's YAML structure."""
    extras = extras or InventoryExtras()
    classes: dict[str, Any] = {}
    for node_class in NodeClass:
        members = [n for n in nodes if n.node_class is node_class]
        classes[node_class.group] = {"hosts": {n.name: _host_vars(n, extras) for n in members}}
    edge: dict[str, Any] = {}
    if extras.edge_vars:
        edge["vars"] = dict(extras.edge_vars)
    edge["children"] = classes
    children: dict[str, Any] = {EDGE_GROUP: edge}
    for environment in sorted({n.environment for n in nodes}):
        children[environment] = {"hosts": {n.name: None for n in nodes if n.environment == environment}}
    return {"all": {"children": children}}


def _host_vars(node: InfraNode, extras: InventoryExtras) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ansible_host": node.address,
        "ansible_port": node.ssh_port,
        "ansible_user": node.ssh_user,
        "modelfleet_node_class": node.node_class.value,
        "modelfleet_node_arch": node.arch,
        "modelfleet_agent_address": node.address,
    }
    out.update(extras.host_vars.get(node.name, {}))
    return out


def render_inventory(nodes: Sequence[InfraNode], *, env: str, extras: InventoryExtras | None = None) -> str:
    import yaml

    text = HEADER.format(env=env)
    if extras is not None and extras.note:
        text += f"# {extras.note}\n"
    return text + yaml.safe_dump(inventory_data(nodes, extras), sort_keys=False, default_flow_style=False)
