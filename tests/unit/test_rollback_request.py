"""``rollback [--to VERSION]`` refused before any run when nothing can hold what it asks for.

A real ledger and inventory (tests.unit.cli_support.placed_fleet: credit-risk v2 on edge-cpu-01 and edge-arm-01,
then v3 on edge-arm-01; edge-cpu-02 never had it; plus ``retired`` v4 on edge-cpu-01, a model the registry no
longer knows) and the seeded demo registry (credit-risk 1-3). What a rollback may start, and what it refuses with
exit 2 and nothing written, is decided by ``RollbackRequest`` (runners/requests.py) from those two sources; the
same refusal through the real executable is checked on the shared provisioned fleet too
(tests/integration/test_cli_outcomes.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.core.config import Settings
from modelfleet.core.errors import EXIT_USAGE, UsageError
from modelfleet.core.ledger import Ledger
from modelfleet.runners.pipeline import prepare
from modelfleet.runners.requests import RollbackRequest
from tests.unit.cli_support import closed_port, placed_fleet, run
from tests.unit.registry_support import make_settings, seeded_project


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """placed_fleet's ledger and inventory, ``retired`` v4 on edge-cpu-01, the seeded registry, a state dir here."""
    folder, env = placed_fleet(tmp_path)
    make_settings(folder)  # its modelfleet.toml: the CLI's project is this folder
    with Ledger(env["MODELFLEET_LEDGER_URL"]) as ledger:
        ledger.append("run_start", actor="ops", model="retired", version="4", run_id="r3", outcome="started",
                      details={"kind": "deploy"})
        ledger.append("node_deploy", actor="ops", model="retired", version="4", node="edge-cpu-01", run_id="r3",
                      outcome="changed")
        ledger.append("run_end", actor="ops", model="retired", version="4", run_id="r3", outcome="ok")
    registry = make_settings(seeded_project()[0]).registry
    env.update(MODELFLEET_REGISTRY_TRACKING_URI=registry.tracking_uri,
               MODELFLEET_REGISTRY_ARTIFACT_ROOT=str(registry.artifact_root),
               MODELFLEET_PATHS_STATE_DIR=str(folder / "state"))
    return folder, env


def settings_of(fleet: tuple[Path, dict[str, str]], **env: str) -> Settings:
    folder, base = fleet
    return make_settings(folder, **{**base, **env})


def refused(settings: Settings, request: RollbackRequest) -> str:
    with pytest.raises(UsageError) as info:
        prepare(settings, request)
    assert info.value.exit_code == EXIT_USAGE
    return info.value.message


def test_a_version_neither_the_registry_nor_the_ledger_knows_is_refused(fleet: tuple[Path, dict[str, str]]) -> None:
    """The regression: the ledger places credit-risk 2 and 3 on these nodes, the registry has 1-3; --to 99 was
    let through (a run started and failed on every node) because the ledger knew *some* version there."""
    settings = settings_of(fleet)
    assert refused(settings, RollbackRequest(model="credit-risk", to="99")) == (
        "credit-risk has no version 99: the registry has 1, 2, 3; the ledger records 2, 3 on these nodes")
    assert refused(settings, RollbackRequest(model="credit-risk", to="99", limit="edge-cpu-01")) == (
        "credit-risk has no version 99: the registry has 1, 2, 3; the ledger records 2 on these nodes")
    # nothing of it on the node: refused as before, without a ledger part
    assert refused(settings, RollbackRequest(model="credit-risk", to="99", limit="edge-cpu-02")) == (
        "credit-risk has no version 99: the registry has 1, 2, 3")


def test_a_model_gone_from_the_registry_is_refused_by_what_the_ledger_knows(
        fleet: tuple[Path, dict[str, str]]) -> None:
    """``retired`` ran on edge-cpu-01 (v4) and is no longer in the registry: a version the ledger does not place
    there is refused saying so (it used to claim the ledger recorded no deploy of it), the placed one runs."""
    settings = settings_of(fleet)
    assert refused(settings, RollbackRequest(model="retired", to="5", limit="edge-cpu-01")) == (
        "retired has no version 5: the registry has none; the ledger records 4 on these nodes")
    for to in (None, "4"):
        prepared = prepare(settings, RollbackRequest(model="retired", to=to, limit="edge-cpu-01"))
        assert (prepared.hosts, prepared.version) == (("edge-cpu-01",), to)
    assert refused(settings, RollbackRequest(model="retired", limit="edge-cpu-02")).startswith(
        "no model 'retired': the ledger records no deploy of it on these nodes")
    assert refused(settings, RollbackRequest(model="nosuch")).startswith("no model 'nosuch'")


def test_what_a_node_can_hold_still_runs(fleet: tuple[Path, dict[str, str]]) -> None:
    """A version the registry has (the node may hold it) or the ledger placed there is let through; so is any
    version when the registry cannot be asked and the ledger placed the model there (the nodes decide)."""
    settings = settings_of(fleet)
    for to, limit in ((None, None), ("1", None), ("2", "edge-cpu-01"), ("3", "edge-arm-01"), ("3", "edge-cpu-02")):
        prepared = prepare(settings, RollbackRequest(model="credit-risk", to=to, limit=limit))
        assert prepared.version == to and prepared.kind == "rollback", (to, limit)
    offline = settings_of(fleet, MODELFLEET_REGISTRY_TRACKING_URI=f"http://127.0.0.1:{closed_port()}")
    assert prepare(offline, RollbackRequest(model="credit-risk", to="99", limit="edge-cpu-01")).version == "99"
    assert refused(offline, RollbackRequest(model="credit-risk", to="2", limit="edge-cpu-02")).startswith(
        "the ledger records no deploy of credit-risk on these nodes and the registry cannot be asked")


def test_the_cli_refuses_before_any_run_and_writes_nothing(fleet: tuple[Path, dict[str, str]]) -> None:
    folder, env = fleet
    with Ledger(env["MODELFLEET_LEDGER_URL"]) as ledger:
        before = len(ledger.events())
    for extra in ((), ("--json",)):
        proc = run(folder, "rollback", "credit-risk", "--to", "99", "--yes", *extra, **env)
        assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
        assert proc.stderr.splitlines() == [
            "modelfleet: credit-risk has no version 99: the registry has 1, 2, 3; the ledger records 2, 3 on these "
            "nodes", "  fix: pick a version that ran on these nodes: modelfleet describe model credit-risk"], \
            proc.stderr
        assert proc.stdout == ""
    with Ledger(env["MODELFLEET_LEDGER_URL"]) as ledger:
        assert len(ledger.events()) == before
    assert not (folder / "state" / "runs").exists()
