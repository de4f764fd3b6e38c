"""The credit-risk demo: data, threshold rule, fairness metrics, the served model, and idempotent seeding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet.cli import main
from modelfleet.core.registry import Registry
from modelfleet.demo import GROUP_COLUMN, MODEL_NAME, TARGET_COLUMN
from modelfleet.demo.data import INPUT_COLUMNS, make_loans, split
from modelfleet.demo.train import VERSIONS, predict_latency_ms, train_version
from tests.unit.registry_support import make_settings, seeded_project

METRICS = ("auc", "accuracy", "ece", "fpr_gap", "demographic_parity_difference")


# (the metrics themselves are tested on hand-made examples in test_fairness.py)


# -- data and models -------------------------------------------------------------------------------------


def test_loans_are_deterministic_and_biased() -> None:
    a, b = make_loans(3000), make_loans(3000)
    assert a.equals(b)
    assert list(a.columns) == [*INPUT_COLUMNS, TARGET_COLUMN]
    assert set(a[GROUP_COLUMN]) == {"A", "B", "C", "D"}
    rates = a.groupby(GROUP_COLUMN)[TARGET_COLUMN].mean()
    assert rates["D"] > rates["A"] + 0.1


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    train, valid, test = split(make_loans(6000))
    return {spec.key: train_version(spec, train, valid, test) for spec in VERSIONS} | {"test": test}


def test_models_flag_with_their_threshold_and_ignore_the_group(trained: dict[str, Any]) -> None:
    rows = trained["test"][list(INPUT_COLUMNS)].head(200).copy()
    for key in ("v1", "v2", "v3"):
        tv = trained[key]
        proba = tv.model.predict_proba(rows)[:, 1]
        flags = tv.model.predict(rows)
        assert set(np.unique(flags)) <= {0, 1}
        assert np.array_equal(flags, (proba >= tv.threshold).astype(int))
        swapped = rows.assign(**{GROUP_COLUMN: rows[GROUP_COLUMN].map({"A": "D", "B": "C", "C": "B", "D": "A"})})
        assert np.array_equal(tv.model.predict_proba(swapped), tv.model.predict_proba(rows))
        assert 0.0 < tv.threshold < 0.5  # 5:1 costs flag well below even odds
        assert float(tv.params["threshold"]) == pytest.approx(tv.threshold, abs=1e-6)


def test_challenger_has_the_visibly_larger_fpr_gap(trained: dict[str, Any]) -> None:
    gaps = {k: trained[k].metrics["fpr_gap"] for k in ("v1", "v2", "v3")}
    assert all(g > 0 for g in gaps.values())
    assert gaps["v3"] > max(gaps["v1"], gaps["v2"]) + 0.08


def test_predict_latency_is_the_median_of_single_threaded_predicts(trained: dict[str, Any]) -> None:
    """What ``predict_latency_ms`` measures (one warm-up, then ``repeat`` predicts on one BLAS/OpenMP thread, the
    median in ms), not how fast this machine is: the champion's figure is a benchmark (bench/demo_predict.py)."""
    from threadpoolctl import threadpool_info

    rows = trained["test"][list(INPUT_COLUMNS)].head(2)
    model = trained["v2"].model
    threads: list[int] = []

    class Spy:
        def predict(self, frame: Any) -> Any:
            threads.append(max((p["num_threads"] for p in threadpool_info()), default=1))
            return model.predict(frame)

    ms = predict_latency_ms(Spy(), rows, repeat=30)
    assert len(threads) == 31 and set(threads) == {1}
    assert 0.0 < ms < float("inf")
    assert predict_latency_ms(model, rows, repeat=1) > 0.0


# -- seeding -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded() -> tuple[Path, Any]:
    return seeded_project()


def test_first_seed_registers_three_versions_with_metrics(seeded: tuple[Path, Any]) -> None:
    project, first = seeded
    assert first.created == {"v1": 1, "v2": 2, "v3": 3}
    assert first.aliases_set == {"champion": 2, "challenger": 3}
    registry = Registry(make_settings(project))
    for version in (1, 2, 3):
        info = registry.get_version(MODEL_NAME, version)
        assert set(METRICS) <= set(info.metrics)
        assert info.params["cost_ratio_fn_fp"] == "5" and "threshold" in info.params
        assert "applicant_group" not in info.params["features"].split(",")
        for metric in METRICS:
            assert info.metrics[metric] == pytest.approx(first.metrics[f"v{version}"][metric], abs=1e-4)
    assert first.metrics["v3"]["fpr_gap"] > first.metrics["v2"]["fpr_gap"]
    # governance: an evaluation set with the label and the group; the champion released with thresholds
    from modelfleet.core.evaluation import attached_thresholds, load_evaluation_set

    data = load_evaluation_set(registry, registry.get_version(MODEL_NAME, 3))
    assert {GROUP_COLUMN, TARGET_COLUMN} <= set(data.frame.columns) and len(data.frame) == 10_000
    champion = attached_thresholds(registry.get_version(MODEL_NAME, 2))
    assert champion is not None and set(champion.thresholds) == {"A", "B", "C", "D"}
    assert attached_thresholds(registry.get_version(MODEL_NAME, 3)) is None
    assert sorted(first.identities_created) == ["dana", "mona", "omar", "quinn", "sam"]


def test_second_seed_changes_nothing(seeded: tuple[Path, Any]) -> None:
    project, _ = seeded
    settings = make_settings(project)
    registry = Registry(settings)
    before = [(v.version, v.aliases, v.run_id) for v in registry.list_versions(MODEL_NAME)]
    from modelfleet.demo.seed import seed

    again = seed(settings)
    assert not again.changed and again.created == {} and again.aliases_set == {}
    assert again.existing == {"v1": 1, "v2": 2, "v3": 3}
    assert [(v.version, v.aliases, v.run_id) for v in registry.list_versions(MODEL_NAME)] == before


def test_reseed_restores_only_a_missing_alias(seeded: tuple[Path, Any]) -> None:
    project, _ = seeded
    settings = make_settings(project)
    registry = Registry(settings)
    from modelfleet.demo.seed import seed

    registry.client.delete_registered_model_alias(MODEL_NAME, "challenger")
    try:
        result = seed(settings)
        assert result.created == {} and result.aliases_set == {"challenger": 3}
    finally:
        registry.set_alias(MODEL_NAME, "challenger", 3)


def test_cli_seed_on_a_seeded_registry(
    seeded: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project, _ = seeded
    monkeypatch.chdir(project)
    for key in [k for k in __import__("os").environ if k.startswith("MODELFLEET_")]:
        monkeypatch.delenv(key)
    assert main(["demo", "seed"]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert main(["demo", "seed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False


@pytest.mark.slow
def test_registered_model_loads_without_modelfleet(seeded: tuple[Path, Any]) -> None:
    """The compact estimator is pickled by value: a node without modelfleet can serve the model."""
    project, _ = seeded
    pinned = Registry(make_settings(project)).pin("credit-risk@champion")
    code = (
        "import sys, json; sys.modules['modelfleet'] = None\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"path = {str(pinned.path)!r}\n"
        "ex = json.load(open(path + '/input_example.json'))\n"
        "model = mlflow.pyfunc.load_model(path)\n"
        "print(json.dumps([int(v) for v in model.predict(pd.DataFrame(ex['data'], columns=ex['columns']))]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=project)
    assert out.returncode == 0, out.stderr[-2000:]
    flags = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(flags) == 5 and set(flags) <= {0, 1}
