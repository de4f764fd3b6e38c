"""The Infrastructure view with real Terraform: a tiny environment of built-in ``terraform_data`` resources whose
``nodes`` output describes one node. Planned, applied and destroyed from the console through the run pipeline
(real ConsoleServices, the engine on PATH or the embedded one); the runs are in the ledger and the Runs list, a
past run replays from its events, and after the apply the written inventory puts the new node in the Fleet view.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from modelfleet.console.app import ModelfleetApp
from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.infra import InfraRunScreen, InfraScreen
from modelfleet.console.screens.runs import RunsScreen
from modelfleet.console.services import ConsoleServices
from modelfleet.console.widgets.filterable_table import FilterableTable
from modelfleet.core.config import Settings
from modelfleet.core.ledger import Ledger
from modelfleet.runners.infra_state import InfraState
from tests.console.conftest import SIZE, screen_text, settle, until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

NODE = 'terraform_data.node["edge-cpu-71"]'
ENV = """\
terraform {
  backend "local" {}
}

resource "terraform_data" "node" {
  for_each = toset(["edge-cpu-71"])
  input    = { name = each.key, address = "127.0.93.71" }
}

output "nodes" {
  value = [for n in terraform_data.node : {
    name = n.output.name, address = n.output.address, class = "cpu", arch = "x86_64", environment = "staging",
    ssh_user = "ops", ssh_port = 22
  }]
}
"""


@pytest.fixture
def tf(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose Terraform root holds the environment `demo`, and whose fleet inventory is the one the
    console writes from `demo`'s nodes output after an apply."""
    (tmp_path / "tf" / "envs" / "demo").mkdir(parents=True)
    (tmp_path / "tf" / "envs" / "demo" / "main.tf").write_text(ENV)
    settings = dataclasses.replace(settings, infra=dataclasses.replace(settings.infra, terraform_dir=tmp_path / "tf"))
    inventory = Path(settings.state_dir) / "infra" / "demo" / "inventory.yml"
    return dataclasses.replace(settings, fleet=dataclasses.replace(settings.fleet, inventory=inventory,
                                                                   probe_timeout_s=1.0))


def _app(settings: Settings) -> ModelfleetApp:
    return ModelfleetApp(services=ConsoleServices(settings, probe_process=False), refresh_s=0, start_view="infra")


def _run(app: ModelfleetApp, kind: str) -> InfraState:
    found = [s for s in app.state.live.values() if isinstance(s, InfraState) and s.kind == kind]
    assert found, f"no {kind} run"
    return found[-1]


async def _confirm(pilot: object, app: ModelfleetApp, typed: str | None) -> None:
    def shown() -> bool:
        return isinstance(app.screen, ConfirmScreen) and app.screen.typed == typed and app.screen.is_mounted

    await until(pilot, shown, f"the confirmation (typed: {typed})", 300)  # type: ignore[arg-type]
    confirm = app.screen
    assert isinstance(confirm, ConfirmScreen)
    if typed:
        await pilot.press(*typed, "enter")  # type: ignore[attr-defined]
    else:
        confirm.query_one("#confirm").press()  # type: ignore[attr-defined]


async def test_plan_apply_destroy_from_the_console(tf: Settings) -> None:
    app = _app(tf)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.infra is not None, "the environments")
        await settle(pilot)
        assert app.screen.query_one("#infra", FilterableTable).shown == ["demo"]
        assert "no plan · p" in screen_text(app)

        await pilot.press("p")
        await _confirm(pilot, app, None)
        await until(pilot, lambda: isinstance(app.screen, InfraRunScreen), "the live view")
        await until(pilot, lambda: _run(app, "infra_plan").finished, "the plan", 300)
        plan = _run(app, "infra_plan")
        assert plan.outcome() == "ok", plan.problem()
        assert plan.planned == {NODE: "create"} and plan.counts() == {"to create": 1}
        await pilot.press("escape")
        await until(pilot, lambda: "+1 ~0 -0" in screen_text(app), "the saved plan in the view")
        assert isinstance(app.screen, InfraScreen) and "ready · a" in screen_text(app)

        await pilot.press("a")
        await _confirm(pilot, app, "apply")
        await until(pilot, lambda: _run(app, "infra_apply").finished, "the apply", 300)
        applied = _run(app, "infra_apply")
        assert applied.outcome() == "ok", applied.problem()
        assert applied.applied == {NODE: "created"}
        await until(pilot, lambda: "demo" in app.state.infra_inventory, "the inventory after the apply")
        written = app.state.infra_inventory["demo"]
        assert written.problem is None and written.nodes == ("edge-cpu-71",) and written.not_in_fleet == ()
        # the Fleet view reads that inventory again: the new node is there (no agent answers on it)
        await until(pilot, lambda: "edge-cpu-71" in {s.name for s in app.state.fleet or []}, "the fleet refresh")
        await pilot.press("escape")
        await until(pilot, lambda: "resources in state (1)" in screen_text(app), "the state's resources")
        assert NODE in screen_text(app) and "edge-cpu-71    127.0.93.71" in screen_text(app)

        await pilot.press("x")
        await _confirm(pilot, app, None)  # the destroy plan ...
        await _confirm(pilot, app, "demo")  # ... and its apply, typing the environment's name
        await until(pilot, lambda: len([s for s in app.state.live.values() if s.finished]) == 4, "the destroy", 300)
        assert _run(app, "infra_apply").outcome() == "ok" and _run(app, "infra_apply").applied == {NODE: "destroyed"}
        await pilot.press("escape", "escape")  # the apply's live view, the destroy plan's
        assert isinstance(app.screen, InfraScreen)
        await until(pilot, lambda: "resources in state (0)" in screen_text(app), "an empty state")

    with Ledger.from_settings(tf) as ledger:
        runs = ledger.runs()
    assert [(r.action, r.target, r.outcome) for r in runs] == [
        ("infra_plan", "demo", "ok"), ("infra_apply", "demo", "ok"), ("infra_plan", "demo", "ok"),
        ("infra_apply", "demo", "ok")]
    assert all(str(r.actor).startswith("console:") for r in runs)

    app = _app(tf)  # a console started later: the runs are listed, and replay from their events
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: app.state.runs is not None, "the runs")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        assert screen_text(app).count("terraform apply") == 2
        first_apply = runs[1].run_id
        app.screen.query_one("#runs", FilterableTable).select_key(first_apply)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, InfraRunScreen), "the replayed run")
        replayed = app.state.live[first_apply]
        assert isinstance(replayed, InfraState) and replayed.outcome() == "ok"
        assert replayed.applied == {NODE: "created"}
        await until(pilot, lambda: "(replayed from its events)" in screen_text(app), "the replay's summary")
        assert "terraform apply demo" in screen_text(app)
