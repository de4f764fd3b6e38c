"""The console's deploy check (services.check_governance) before anything runs: which environments of a deploy's
nodes are protected, and what is not checked. The refusal itself, on the seeded demo registry and a real ledger,
is in test_governance_real.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.console.governance_services import protected_environments
from modelfleet.console.services import ConsoleServices
from modelfleet.core.approvals import Requirement, Trust
from modelfleet.core.config import Settings
from modelfleet.core.fleet import Node, NodeClass
from modelfleet.runners.requests import DeployRequest, HealthCheckRequest, PreparedRun

TRUST = Trust((), {"prod": Requirement("prod", ("manager", "qa"), 3600), "staging": Requirement("staging", (), 60)})


def _node(name: str, groups: tuple[str, ...], **variables: str) -> Node:
    return Node(name, "127.0.94.1", NodeClass.CPU, groups=("edge", "edge_cpu", *groups), vars=variables)


def test_a_node_is_in_its_named_environment_and_in_any_group_the_policy_protects() -> None:
    named = _node("a", ("production",), modelfleet_environment="prod")  # a group variable names it
    grouped = _node("b", ("prod",))  # in a group the approvals policy lists
    staging = _node("c", ("staging",), modelfleet_environment="staging")  # listed, but requires no role
    production = _node("d", ("production",))  # its environment group, which the policy does not protect
    assert protected_environments([named], TRUST) == ["prod"]
    assert protected_environments([grouped], TRUST) == ["prod"]
    assert protected_environments([staging, production], TRUST) == []
    assert protected_environments([staging, grouped, named], TRUST) == ["prod"]


def _prepared(tmp_path: Path, request: object, kind: str) -> PreparedRun:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  children:\n    edge:\n      children:\n        edge_cpu:\n          hosts:\n"
                         "            edge-cpu-01: {ansible_host: 127.0.94.1}\n    prod:\n      hosts:\n"
                         "        edge-cpu-01: {}\n")
    return PreparedRun(request=request, run_id="r1", kind=kind, summary=kind,  # type: ignore[arg-type]
                       hosts=("edge-cpu-01",), inventory=inventory, playbook=f"{kind}.yml", extra_vars={},
                       model="credit-risk", version="2", digest="ab" * 32)


@pytest.mark.parametrize("request_, kind, policy", [
    (DeployRequest(ref="credit-risk/2"), "deploy", False),  # no approvals policy: nothing is protected
    (DeployRequest(ref="credit-risk/2", check=True), "deploy", True),  # check mode changes nothing
    (HealthCheckRequest(), "healthcheck", True),  # only deploys are governed
])
def test_what_is_not_checked(settings: Settings, tmp_path: Path, request_: object, kind: str, policy: bool) -> None:
    if policy:  # a policy that would refuse: `prod` requires approvals and nothing was approved
        policy_dir = Path(settings.governance.policy_dir)
        policy_dir.mkdir(parents=True)
        (policy_dir / "approvals.yaml").write_text("environments:\n  prod:\n    require: [manager, qa]\n")
        (policy_dir / "roles.yaml").write_text("people: []\n")
    ConsoleServices(settings).check_governance(_prepared(tmp_path, request_, kind))  # no GovernanceError


def test_a_broken_policy_is_reported_not_skipped(settings: Settings, tmp_path: Path) -> None:
    from modelfleet.core.errors import PolicyError

    policy_dir = Path(settings.governance.policy_dir)
    policy_dir.mkdir(parents=True)
    (policy_dir / "approvals.yaml").write_text("environments:\n  prod:\n    require: [manager, qa]\n")
    with pytest.raises(PolicyError, match="roles file not found"):
        ConsoleServices(settings).check_governance(_prepared(tmp_path, DeployRequest(ref="credit-risk/2"), "deploy"))
