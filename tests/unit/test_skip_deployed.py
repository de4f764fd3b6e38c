"""``deploy --skip-deployed`` (what `make run` deploys the champion with): only nodes that never had the model.

A real ledger and inventory (tests.unit.cli_support.placed_fleet: credit-risk on edge-cpu-01 v2 and edge-arm-01
v3, never on edge-cpu-02; agents refuse connections). On a live fleet the same rule keeps an operator's version
through a second `make run` (tests/integration/test_make_run.py).
"""

from __future__ import annotations

from pathlib import Path

from modelfleet.commands._placement import limit_to_undeployed
from modelfleet.core.config import load_settings
from tests.unit.cli_support import placed_fleet, run


def test_only_the_node_that_never_had_the_model(tmp_path: Path) -> None:
    folder, env = placed_fleet(tmp_path)
    settings = load_settings(env=env, cwd=folder)
    inventory = Path(env["MODELFLEET_FLEET_INVENTORY"])
    assert limit_to_undeployed(settings, "credit-risk@champion", None, inventory) == "edge-cpu-02"
    assert limit_to_undeployed(settings, "credit-risk@champion", "edge_cpu", inventory) == "edge-cpu-02"
    assert limit_to_undeployed(settings, "other-model@champion", None, inventory) == \
        "edge-cpu-01,edge-cpu-02,edge-arm-01"


def test_nothing_to_do_leaves_every_node_as_it_is(tmp_path: Path) -> None:
    folder, env = placed_fleet(tmp_path)
    proc = run(folder, "deploy", "credit-risk@champion", "--skip-deployed", "--limit", "edge-cpu-01,edge-arm-01",
               "--yes", **env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ("credit-risk is already deployed on all 2 selected node(s) (edge-cpu-01 v2, "
                                   "edge-arm-01 v3): nothing to do; --skip-deployed leaves them as they are")
    assert proc.stdout == ""
