"""Fleet specs (``cpu=3,gpu=1,arm=2``), the state file, and process identity - no processes started."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from modelfleet.core.config import Settings
from modelfleet.core.errors import ConfigError, FleetError, UsageError
from modelfleet.core.fleet import NodeClass
from modelfleet.sim import procs
from modelfleet.sim.spec import MAX_NODES, format_spec, parse_spec, plan_nodes
from modelfleet.sim.state import FleetState, NodeState, load_state, save_state


def test_default_spec_plans_six_named_nodes() -> None:
    plan = plan_nodes("cpu=3,gpu=1,arm=2", "127.0.10")
    assert [(p.name, p.address, p.node_class.value) for p in plan] == [
        ("edge-cpu-01", "127.0.10.1", "cpu"),
        ("edge-cpu-02", "127.0.10.2", "cpu"),
        ("edge-cpu-03", "127.0.10.3", "cpu"),
        ("edge-gpu-01", "127.0.10.4", "gpu"),
        ("edge-arm-01", "127.0.10.5", "arm"),
        ("edge-arm-02", "127.0.10.6", "arm"),
    ]


def test_spec_is_lenient_about_spacing_case_and_zero_counts() -> None:
    assert parse_spec(" CPU = 2 , gpu=0 ,arm=1,") == [(NodeClass.CPU, 2), (NodeClass.GPU, 0), (NodeClass.ARM, 1)]
    assert format_spec(parse_spec("arm=1,cpu=2")) == "arm=1,cpu=2"


def test_largest_fleet_stays_below_broadcast() -> None:
    plan = plan_nodes(f"cpu={MAX_NODES}", "127.0.10")
    assert len(plan) == MAX_NODES and plan[-1].address == "127.0.10.250" and plan[-1].name == "edge-cpu-250"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("cpu=x", "count 'x'"),
        ("cpu=-1", "count '-1'"),
        ("cpu=1.5", "count '1.5'"),
        ("tpu=1", "unknown node class 'tpu'"),
        ("cpu", "not class=count"),
        ("cpu=1,cpu=2", "given twice"),
        ("", "no nodes"),
        ("cpu=0", "no nodes"),
        ("cpu=0,gpu=0,arm=0", "no nodes"),
        ("cpu=200,arm=51", "at most 250"),
    ],
)
def test_bad_specs_are_usage_errors(spec: str, fragment: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_spec(spec)
    assert fragment in err.value.message
    assert err.value.exit_code == 2 and err.value.hint


def test_bad_spec_from_settings_is_a_config_error(settings: Settings) -> None:
    from dataclasses import replace

    from modelfleet.sim.fleet import SimFleet

    bad = replace(settings, sim=replace(settings.sim, nodes="cpu=lots"))
    with pytest.raises(ConfigError, match=r"sim\.nodes"):
        SimFleet(bad).up()
    assert not (settings.state_dir / "sim").exists(), "nothing may change on a bad spec"


def test_state_round_trip_and_atomic_write(tmp_path: Path) -> None:
    state = FleetState(
        spec="cpu=1", address_prefix="127.0.77", ssh_port=2277, user="me", inventory=tmp_path / "inv.yml",
        started_at="2025-01-01T00:00:00+00:00", sshd=procs.ProcessRef(12, 3.5),
        nodes=[NodeState("edge-cpu-01", "127.0.77.1", NodeClass.CPU, tmp_path / "n", procs.ProcessRef(13, 4.0))],
    )
    path = tmp_path / "sim" / "state.json"
    save_state(path, state)
    assert [p.name for p in path.parent.iterdir()] == ["state.json"], "no temp file left behind"
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["nodes"][0]["supervisord"] == {"pid": 13, "create_time": 4.0}
    assert load_state(path) == state
    assert load_state(tmp_path / "absent.json") is None


@pytest.mark.parametrize("text", ["{not json", '{"version": 99}', '{"version": 1}'])
def test_corrupt_state_is_a_fleet_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(FleetError) as err:
        load_state(path)
    assert str(path) in err.value.message


def test_process_identity_needs_pid_and_start_time() -> None:
    me = psutil.Process(os.getpid())
    assert procs.is_alive(procs.ProcessRef(me.pid, me.create_time()))
    assert not procs.is_alive(procs.ProcessRef(me.pid, me.create_time() - 1000)), "a reused pid is not ours"
    assert not procs.is_alive(None)
    assert not procs.stop_tree(procs.ProcessRef(me.pid, me.create_time() - 1000)), "never signal a stranger"


def test_process_identity_survives_a_step_of_the_system_clock() -> None:
    """A fleet started before NTP (or a VM's clock) stepped the wall clock must still be recognised and stopped:
    psutil's create_time moves with the clock, the kernel's start tick since boot does not."""
    me = psutil.Process(os.getpid())
    ref = procs.ProcessRef.of(me)
    assert ref.since_boot is not None and ref.boot
    assert procs.ProcessRef.from_json(ref.to_json()) == ref
    stepped = procs.ProcessRef(me.pid, me.create_time() + 3.0, ref.since_boot, ref.boot)  # the clock moved 3 s
    assert procs.is_alive(stepped)
    other = procs.ProcessRef(me.pid, me.create_time(), ref.since_boot - 1.0, ref.boot)  # same pid, earlier start
    assert not procs.is_alive(other)
    other_boot = procs.ProcessRef(me.pid, me.create_time() - 1000, ref.since_boot, "another-boot")
    assert not procs.is_alive(other_boot), "a start time since another boot is not compared"
    legacy = procs.ProcessRef.from_json({"pid": me.pid, "create_time": me.create_time()})  # an older state file
    assert legacy is not None and legacy.since_boot is None and procs.is_alive(legacy)


def test_too_deep_state_dir_is_refused_before_anything_starts(settings: Settings) -> None:
    from dataclasses import replace

    from modelfleet.sim.fleet import SimFleet

    deep = settings.state_dir / ("d" * 100)
    bad = replace(settings, paths=replace(settings.paths, state_dir=deep))
    with pytest.raises(FleetError, match="unix sockets allow 107") as err:
        SimFleet(bad).up("cpu=1")
    assert err.value.hint and "state_dir" in err.value.hint
    assert not (deep / "sim" / "state.json").exists() and not (deep / "sim" / "nodes").exists()
