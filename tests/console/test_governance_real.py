"""Governance in the console on the seeded demo registry, the repository's policy and a real ledger (real
ConsoleServices): mona approves dana's request from the Approvals view (signed with her demo key), the Models view
shows the gate verdict recorded for the champion and omar's open break-glass on the challenger, and a deploy to a
`prod` node is refused before anything runs, listing what is still missing (a QA approval)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Button, Input

from modelfleet.console.app import ModelfleetApp
from modelfleet.console.screens.approvals import ApprovalsScreen
from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.models import VersionsScreen
from modelfleet.console.screens.runs import RunFormScreen
from modelfleet.console.services import ConsoleServices
from modelfleet.console.widgets.filterable_table import FilterableTable
from modelfleet.core.config import Settings
from modelfleet.core.ledger import Ledger
from modelfleet.core.registry import Registry
from tests.conftest import REPO_ROOT
from tests.console.conftest import SIZE, screen_text, settle, until
from tests.unit.registry_support import make_settings, seeded_project

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INVENTORY = """\
all:
  children:
    edge:
      children:
        edge_cpu:
          hosts:
            edge-cpu-01: {ansible_host: 127.0.94.1}
            edge-cpu-02: {ansible_host: 127.0.94.2}
    prod:
      vars:
        modelfleet_environment: prod
      hosts:
        edge-cpu-01: {}
    staging:
      hosts:
        edge-cpu-02: {}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the session's seeded demo project with a fresh ledger, the repository's policy and an inventory
    with one `prod` and one `staging` node (no fleet runs: nothing here goes past the deploy check)."""
    seeded, _ = seeded_project()
    project = tmp_path_factory.mktemp("console-governance") / "project"
    shutil.copytree(seeded, project, ignore=shutil.ignore_patterns("ledger.db*", "policy"))
    shutil.copytree(REPO_ROOT / "policy", project / "policy")
    (project / "inventory.yml").write_text(INVENTORY)
    yield project


def _as(project: Path, person: str) -> Settings:
    return make_settings(project, MODELFLEET_GOVERNANCE_IDENTITY=str(
        project / ".modelfleet/demo/identities" / f"{person}.key"), MODELFLEET_FLEET_INVENTORY="inventory.yml")


@pytest.fixture(scope="module")
def requested(project: Path) -> str:
    """The champion's prod gate run and recorded, dana's request for it, omar's break-glass on the challenger."""
    from modelfleet.core.deploy import ensure_signing_key
    from modelfleet.core.governance import break_glass, request_approval, run_gate, subject_for, trust_for
    from modelfleet.core.identity import current_identity

    settings = _as(project, "dana")
    assert run_gate(settings, "credit-risk@champion", environment="prod").report.passed
    registry, trust = Registry(settings), trust_for(settings)
    with Ledger.from_settings(settings) as ledger:
        view, created = request_approval(settings, current_identity(settings, trust),
                                         subject_for(registry, "credit-risk@champion", "prod"), "retrained on Q3",
                                         ledger=ledger, registry=registry, trust=trust)
        omar = _as(project, "omar")
        break_glass(omar, current_identity(omar, trust), subject_for(registry, "credit-risk@challenger", "prod"),
                    "fraud spike: roll now", ledger=ledger, registry=registry)
    ensure_signing_key(settings)  # what provisioning would have made: a deploy bundles and signs
    assert created
    return view.id


def _app(project: Path, person: str, view: str) -> ModelfleetApp:
    return ModelfleetApp(services=ConsoleServices(_as(project, person), probe_process=False), refresh_s=0,
                         start_view=view)


async def test_approve_from_the_console_with_a_real_key(project: Path, requested: str) -> None:
    app = _app(project, "mona", "approvals")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.approvals is not None, "the approval requests", 60)
        await settle(pilot)
        assert isinstance(app.screen, ApprovalsScreen)
        assert app.screen.query_one("#approvals", FilterableTable).shown == [requested]
        text = screen_text(app)
        assert "you are mona (manager)" in text and "passed under the current policy" in text
        assert f"{requested} pending credit-risk/2 prod manager, qa as manager dana" in text
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        app.screen.query_one("#confirm-typed", Input).focus()
        await pilot.press(*requested, "enter")
        await until(pilot, lambda: "still needs qa" in screen_text(app) or any(
            "still needs qa" in str(n.message) for n in app._notifications), "the recorded decision", 60)
        await until(pilot, lambda: "mona (manager)" in screen_text(app), "the reloaded list", 60)

    settings = _as(project, "mona")
    with Ledger.from_settings(settings) as ledger:
        decisions = ledger.events(action="approval_decision")
        assert [(e.actor, e.outcome, e.version, e.target) for e in decisions] == [("mona", "approved", "2", "prod")]
        assert ledger.verify().ok
    tags = Registry(settings).get_version("credit-risk", 2).tags
    assert tags["modelfleet.approval.prod"] == "pending" and "needs qa" in tags["modelfleet.approval.prod.detail"]

    app = _app(project, "dana", "approvals")  # the requester: may not decide on her own request
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.approvals is not None, "the approval requests", 60)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ApprovalsScreen)
        assert any("your own request" in str(n.message) for n in app._notifications)


async def test_models_show_the_gate_verdict_and_the_open_break_glass(project: Path, requested: str) -> None:
    app = _app(project, "mona", "models")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.models is not None, "the models", 60)
        await settle(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: "credit-risk" in app.state.versions, "the versions", 60)
        await settle(pilot)
        assert isinstance(app.screen, VersionsScreen)
        table = app.screen.query_one("#versions", FilterableTable)
        champion, challenger = (str(table.table.get_row(k)[2]) for k in ("2", "3"))
        assert "prod✔" in champion and "‼prod" not in champion
        assert challenger.startswith("‼prod")
        table.select_key("2")
        await settle(pilot)
        assert "gate prod      passed  (ledger #1," in screen_text(app)
        table.select_key("3")
        await settle(pilot)
        assert "‼ BREAK-GLASS OPEN on prod: omar" in screen_text(app) and "fraud spike: roll now" in screen_text(app)


async def test_a_deploy_to_prod_shows_what_is_missing_and_starts_nothing(project: Path, requested: str) -> None:
    app = _app(project, "omar", "fleet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.push_screen(RunFormScreen({"kind": "deploy", "model": "credit-risk", "ref": "champion",
                                       "target": "edge"}))
        await pilot.pause()
        app.screen.query_one("#launch", Button).press()
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the refusal", 300)
        refused = app.screen
        assert isinstance(refused, ConfirmScreen)
        assert not refused.query("#confirm"), refused.body
        missing = refused.body.split("Missing:")[1].split("fix:")[0]
        assert f"prod: request {requested} still needs approval by" in missing  # (manager too, run on its own)
        assert f"qa (modelfleet approve {requested})" in missing
        assert "staging" not in refused.body  # unprotected: nothing missing there
    with Ledger.from_settings(_as(project, "omar")) as ledger:
        assert not ledger.events(action="run_start")
