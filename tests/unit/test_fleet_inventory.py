"""The headless inventory model: groups, children, variable precedence, selection and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelfleet.core.errors import ConfigError, NodeNotFound
from modelfleet.core.fleet import Inventory, Node, NodeClass

INVENTORY = """\
all:
  vars:
    modelfleet_agent_port: 9000
  children:
    edge:
      vars:
        modelfleet_root: /srv/modelfleet
      children:
        edge_cpu:
          hosts:
            cpu-a: {ansible_host: 10.0.0.1}
            cpu-b: {ansible_host: 10.0.0.2, modelfleet_agent_address: 10.1.0.2}
        edge_gpu:
          vars:
            modelfleet_agent_port: 9100
          hosts:
            gpu-a: {ansible_host: 10.0.0.3}
        edge_arm:
          hosts:
            arm-a:
              ansible_host: 10.0.0.4
              modelfleet_agent_port: 9200
    staging:
      hosts:
        cpu-a:
        gpu-a:
    production:
      hosts:
        cpu-b:
        arm-a:
    controllers:
      hosts:
        ctl: {ansible_connection: local}
"""


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    return Inventory.load(path)


def test_nodes_classes_and_addresses(inv: Inventory) -> None:
    assert [n.name for n in inv] == ["cpu-a", "cpu-b", "gpu-a", "arm-a"]
    assert inv.node("gpu-a").node_class is NodeClass.GPU
    assert inv.node("cpu-a").address == "10.0.0.1"
    assert inv.node("cpu-b").address == "10.1.0.2", "modelfleet_agent_address wins over ansible_host"
    assert inv.node("cpu-b").agent_url == "http://10.1.0.2:9000"
    assert inv.other_hosts == ("ctl",), "a host without class outside `edge` is not a node"


def test_variable_precedence_all_group_child_host(inv: Inventory) -> None:
    assert inv.node("cpu-a").agent_port == 9000  # from all
    assert inv.node("gpu-a").agent_port == 9100  # child group beats all
    assert inv.node("arm-a").agent_port == 9200  # host beats groups
    assert inv.node("cpu-a").root == "/srv/modelfleet"  # parent group `edge`


def test_groups_and_environment(inv: Inventory) -> None:
    assert inv.node("cpu-a").groups == ("edge", "edge_cpu", "staging")
    assert inv.node("cpu-a").environment == "staging"
    assert inv.node("arm-a").environment == "production"
    assert set(inv.groups["edge"]) == {"cpu-a", "cpu-b", "gpu-a", "arm-a"}
    assert [n.name for n in inv.by_class("arm")] == ["arm-a"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, ["cpu-a", "cpu-b", "gpu-a", "arm-a"]),
        ("", ["cpu-a", "cpu-b", "gpu-a", "arm-a"]),
        ("all", ["cpu-a", "cpu-b", "gpu-a", "arm-a"]),
        ("edge_cpu", ["cpu-a", "cpu-b"]),
        ("arm-a,edge_cpu", ["cpu-a", "cpu-b", "arm-a"]),
        ("edge_cpu, gpu-a", ["cpu-a", "cpu-b", "gpu-a"]),
        ("staging", ["cpu-a", "gpu-a"]),
        ("edge,!production", ["cpu-a", "gpu-a"]),
        ("edge,&edge_cpu", ["cpu-a", "cpu-b"]),
        ("!edge_cpu", ["gpu-a", "arm-a"]),
        ("edge_cpu:edge_gpu", ["cpu-a", "cpu-b", "gpu-a"]),
    ],
)
def test_select(inv: Inventory, limit: str | None, expected: list[str]) -> None:
    assert [n.name for n in inv.select(limit)] == expected


def test_select_unknown_names_known_groups_and_nodes(inv: Inventory) -> None:
    with pytest.raises(NodeNotFound) as err:
        inv.select("edge_cpu,edge_tpu")
    assert "edge_tpu" in err.value.message
    assert "edge_gpu" in err.value.message and "cpu-a" in err.value.message


def test_node_unknown(inv: Inventory) -> None:
    with pytest.raises(NodeNotFound, match="known nodes: cpu-a, cpu-b"):
        inv.node("nope")


def test_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as err:
        Inventory.load(missing)
    assert str(missing) in err.value.message
    assert err.value.hint and "sim up" in err.value.hint


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("all: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("all:\n  hosts: [a, b]\n", "hosts of group all must be a mapping"),
        ("all:\n  childs: {}\n", "unknown key 'childs'"),
        (
            "all:\n  children:\n    edge:\n      hosts:\n        x: {}\n",
            "host x is in group edge but has no node class",
        ),
        ("all:\n  hosts:\n    x: {modelfleet_node_class: tpu}\n", "node class 'tpu'"),
        ("all:\n  hosts:\n    x: {modelfleet_node_class: cpu, modelfleet_agent_port: http}\n", "not a TCP port"),
        (
            "all:\n  children:\n    edge_cpu:\n      hosts: {x: }\n    edge_gpu:\n      hosts: {x: }\n",
            "several class groups",
        ),
    ],
)
def test_malformed_inventory_names_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        Inventory.load(path)
    assert fragment in err.value.message
    assert str(path) in err.value.message


def test_group_cycle_is_refused() -> None:
    data: dict[str, object] = {"all": {"children": {"a": {"children": {"b": {"children": {"a": {}}}}}}}}
    with pytest.raises(ConfigError, match="group cycle"):
        Inventory.from_data(data)


def test_empty_inventory_has_no_nodes(tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert len(Inventory.load(path)) == 0


def test_simulated_inventory_renders_to_the_model(tmp_path: Path) -> None:
    """The sim's generated inventory (rendered without starting anything) reads back as the fleet it describes."""
    from modelfleet.sim import inventory as sim_inventory
    from modelfleet.sim.spec import plan_nodes
    from modelfleet.sim.state import FleetState, NodeState

    plan = plan_nodes("cpu=3,gpu=1,arm=2", "127.0.77")
    state = FleetState(
        spec="cpu=3,gpu=1,arm=2", address_prefix="127.0.77", ssh_port=2277, user="someone",
        inventory=tmp_path / "inventory.yml", started_at="2025-01-01T00:00:00+00:00",
        nodes=[NodeState(p.name, p.address, p.node_class, tmp_path / "nodes" / p.name) for p in plan],
    )
    text = sim_inventory.render(
        state, known_hosts=tmp_path / "known_hosts", client_key=tmp_path / "id_ed25519", agent_port=8080
    )
    assert "modelfleet_hardware_check: false" in text
    comment_block = text.split("modelfleet_hardware_check: false")[0].splitlines()[-3:]
    assert any("no GPU" in line and line.strip().startswith("#") for line in comment_block)
    inv = Inventory.from_data(yaml.safe_load(text), source="rendered")
    assert [n.name for n in inv] == [
        "edge-cpu-01", "edge-cpu-02", "edge-cpu-03", "edge-gpu-01", "edge-arm-01", "edge-arm-02",
    ]
    gpu: Node = inv.node("edge-gpu-01")
    assert gpu.address == "127.0.77.4" and gpu.agent_port == 8080 and gpu.environment == "staging"
    assert gpu.root == str(tmp_path / "nodes" / "edge-gpu-01" / "opt" / "modelfleet")
    v = gpu.vars
    assert v["ansible_connection"] == "ssh" and v["ansible_port"] == 2277 and v["ansible_user"] == "someone"
    assert v["modelfleet_service_manager"] == "supervisord" and v["modelfleet_hardware_check"] is False
    assert v["modelfleet_supervisorctl"].endswith("/supervisorctl")
    assert v["modelfleet_supervisor_conf"].endswith("edge-gpu-01/etc/supervisor/supervisord.conf")
    assert "StrictHostKeyChecking=yes" in v["ansible_ssh_common_args"]
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in v["ansible_ssh_common_args"]
    assert set(inv.groups["edge_gpu"]) == {"edge-gpu-01"} and len(inv.groups["staging"]) == 6
    raw = yaml.safe_load(text)
    assert "vars" not in raw["all"], "connection vars must not leak to the implicit localhost via `all`"


def test_group_vars_and_host_vars_files_beside_the_inventory_count_as_ansible_reads_them(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "edge": {"children": {"edge_cpu": {"hosts": {"n1": {"ansible_host": "127.0.0.1"},
                                                      "n2": {"ansible_host": "127.0.0.2"}}}}},
        "prod": {"hosts": {"n2": {}}}}}}), encoding="utf-8")
    assert [n.environment for n in Inventory.load(inv)] == [None, None]
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "prod.yml").write_text("modelfleet_environment: prod\n", encoding="utf-8")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "n1.yaml").write_text("modelfleet_environment: lab\n", encoding="utf-8")
    assert {n.name: n.environment for n in Inventory.load(inv)} == {"n1": "lab", "n2": "prod"}
    (tmp_path / "host_vars" / "n1.yaml").write_text("- not a mapping\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"host_vars/n1.yaml: must be a mapping of variables, not list"):
        Inventory.load(inv)
