"""A release with per-group thresholds: the agent answers exactly as the thresholds applied locally, and the
release's probe (computed on the controller by core/bundle.py with the same thresholds) passes its reload."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

import numpy as np

from modelfleet.core.bundle import expected_response
from modelfleet.core.fairness import GroupThresholds, ThresholdedClassifier
from tests.agent import modelkit
from tests.agent.conftest import Models
from tests.agent.inproc import call, started_agent


def test_agent_applies_the_releases_thresholds(tmp_path: Path, models: Models) -> None:
    frame = modelkit.make_frame(300, seed=31)
    proba = models.model_v1.predict_proba(frame)[:, 1]
    # Thresholds far from 0.5 so that they change many answers: A strict, B lenient, C (and unknown) default.
    thresholds = GroupThresholds("applicant_group", {"A": float(np.quantile(proba, 0.8)),
                                                     "B": float(np.quantile(proba, 0.2))}, default=0.5)
    local = ThresholdedClassifier(models.model_v1, thresholds).predict(frame)
    assert (local != models.model_v1.predict(frame)).sum() > 20

    probe_rows = frame.head(4)
    request = {"dataframe_split": {"columns": list(probe_rows.columns), "data": probe_rows.values.tolist()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = expected_response(models.dir_v1, request, thresholds)
    assert expected["predictions"] == [int(v) for v in local[:4]]
    release = modelkit.write_release(tmp_path / "1-thresholded", models.dir_v1, "1",
                                     probe={"request": request, "expected": expected})
    manifest = json.loads((release / "manifest.json").read_text())
    (release / "manifest.json").write_text(json.dumps({**manifest, "thresholds": thresholds.to_dict()}))

    async def go() -> list[int]:
        agent = await started_agent(release)  # reload checks the probe: it must hold with the thresholds
        try:
            body = json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                                   "data": frame.values.tolist()}}).encode()
            status, _, out = await call(agent, "POST", "/invocations", body)
            assert status == 200, out
            missing = json.dumps({"dataframe_records": [{"income": 1.0, "age": 30, "debt_ratio": 0.1,
                                                         "employment": "salaried"}]}).encode()
            status, _, err = await call(agent, "POST", "/invocations", missing)
            assert status == 400 and b"applicant_group" in err
            return list(json.loads(out)["predictions"])
        finally:
            await agent.shutdown()

    answers = asyncio.run(go())
    assert answers == [int(v) for v in local]
