"""Per-group thresholds through a real deploy (issue 17): `modelfleet fairness --attach` -> `deploy` to one node of
the shared provisioned fleet (tests/provisioned.py) -> the node's agent answers with the thresholds applied, the
same answers as the thresholds applied locally to the model's probabilities, and the release's probe (checked by
the node at reload, before the switch) was computed with them.

The thresholds go on ``credit-risk/3`` (the challenger: the seed attaches none to it); the tag is taken off again
and the fleet reset afterwards, so the registry and the fleet are handed back as the contract says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from modelfleet.core import evaluation as ev
from modelfleet.core.fairness import GroupThresholds
from modelfleet.core.fleet import Inventory
from modelfleet.core.ledger import Ledger
from modelfleet.core.registry import Registry
from modelfleet.demo import GROUP_COLUMN
from tests.provisioned import MODEL, ProvisionedFleet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

VERSION = 3
REF = f"{MODEL}/{VERSION}"
NODE = "edge-cpu-01"
ROWS = 400  # evaluation rows sent to the agent


@pytest.fixture
def fleet(provisioned_fleet: ProvisionedFleet) -> Iterator[ProvisionedFleet]:
    provisioned_fleet.reset()
    registry = Registry(provisioned_fleet.settings)
    before = registry.get_version(MODEL, VERSION).tags.get(ev.THRESHOLDS_TAG)
    try:
        yield provisioned_fleet
    finally:
        if before is None:
            registry.client.delete_model_version_tag(MODEL, str(VERSION), ev.THRESHOLDS_TAG)
        else:
            registry.set_version_tag(MODEL, VERSION, ev.THRESHOLDS_TAG, before)
        provisioned_fleet.reset()


def _ok(proc: Any) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return str(proc.stdout)


def test_attached_thresholds_are_applied_by_the_deployed_agent(fleet: ProvisionedFleet) -> None:
    attached = json.loads(_ok(fleet.cli("fairness", REF, "--group", GROUP_COLUMN, "--cost-ratio", "5", "--attach",
                                        "--json")))
    assert attached["attached"] and attached["after"]["feasible"]
    assert attached["after"]["fpr_gap"]["value"] <= 0.02 < attached["before"]["fpr_gap"]["value"]
    thresholds = GroupThresholds.from_dict(attached["after"]["thresholds"])
    with Ledger(fleet.settings.ledger.url) as ledger:
        event = ledger.events(action="thresholds_attach")[-1]
    assert (event.version, event.details["sha256"]) == (str(VERSION), thresholds.sha256)

    deployed = json.loads(_ok(fleet.cli("deploy", REF, "--limit", NODE, "--waves", "100%", "--yes", "--json")))
    release = deployed["release"]
    assert release["thresholds_sha256"] == thresholds.sha256 and set(deployed["hosts"]) == {NODE}
    assert fleet.current(NODE) == release["release"] and release["release"].endswith(f"-t{thresholds.sha256[:8]}")
    assert {n: v for n, v in fleet.versions().items() if v != "1"} == {NODE: str(VERSION)}

    # what the node holds: the thresholds in its release manifest, and a probe whose expected answer applies them
    manifest = json.loads((fleet.model_dir(NODE) / "releases" / release["release"] / "manifest.json").read_text())
    assert GroupThresholds.from_dict(manifest["thresholds"]) == thresholds
    registry = Registry(fleet.settings)
    pinned = registry.pin(REF)
    model = ev.load_classifier(pinned.path)
    probe = manifest["probe"]
    probe_rows = _frame(probe["request"])
    local_probe = thresholds.apply(model.predict_proba(probe_rows)[:, 1], probe_rows[GROUP_COLUMN])
    assert probe["expected"]["predictions"] == [int(v) for v in model.classes_[local_probe.astype(int)]]

    # the agent's answers on evaluation rows = the thresholds applied locally, not the model's own threshold
    data = ev.load_evaluation_set(registry, registry.get_version(MODEL, VERSION))
    inputs = data.frame.drop(columns=[data.label]).head(ROWS)
    proba = model.predict_proba(inputs)[:, 1]
    local = model.classes_[thresholds.apply(proba, inputs[GROUP_COLUMN]).astype(int)]
    unadjusted = model.predict(inputs)
    assert int(np.sum(local != unadjusted)) >= 10, "the thresholds change too few answers to tell them apart"
    url = Inventory.load(fleet.settings.fleet.inventory).node(NODE).agent_url
    assert str(httpx.get(url + "/health", timeout=10, trust_env=False).json()["version"]) == str(VERSION)
    body = {"dataframe_split": json.loads(inputs.to_json(orient="split", index=False))}
    answer = httpx.post(url + "/invocations", json=body, timeout=60, trust_env=False)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [int(v) for v in local]
    # the group column is what the thresholds need: a request without it is refused, not answered unadjusted
    without = httpx.post(url + "/invocations", json={"dataframe_split": json.loads(
        inputs.drop(columns=[GROUP_COLUMN]).head(3).to_json(orient="split", index=False))}, timeout=30,
        trust_env=False)
    assert without.status_code == 400 and GROUP_COLUMN in without.text


def _frame(request: dict[str, Any]) -> Any:
    """The DataFrame of an MLflow scoring request (``dataframe_split`` or ``dataframe_records``)."""
    import pandas as pd

    if "dataframe_split" in request:
        split = request["dataframe_split"]
        return pd.DataFrame(split["data"], columns=split["columns"])
    return pd.DataFrame(request["dataframe_records"])
