"""Verdicts of a window: dataset drift, per-group positive shares, fleet merges equal pooled counts, windows
across counter resets and nodes gone dark, and the monitoring policy's configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelfleet.core.config import load_settings
from modelfleet.core.drift import DriftCounter, ReferenceProfile
from modelfleet.core.drift_counts import CountsLayout, NodeSnapshot, merge, window_of
from modelfleet.core.drift_verdict import DRIFT, INSUFFICIENT_DATA, NO_DRIFT, OK, SHIFT, evaluate
from modelfleet.core.errors import ConfigError
from modelfleet.core.monitor_policy import DriftPolicy, load_policy


def _frame(n: int, seed: int, *, income_factor: float = 1.0, group_p: tuple[float, ...] = (0.5, 0.3, 0.2),
           new_share: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    purpose = rng.choice(["car", "home", "study"], n, p=[0.5, 0.3, 0.2]).astype(object)
    purpose[rng.random(n) < new_share] = "boat"
    return pd.DataFrame({
        "income": rng.lognormal(10.5, 0.4, n) * income_factor,
        "age": rng.integers(18, 80, n).astype("int64"),
        "purpose": purpose,
        "group": rng.choice(["A", "B", "C"], n, p=list(group_p)).astype(object),
    })


def _predict(frame: pd.DataFrame, *, flip_c: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = (frame["income"] < 30_000).to_numpy().astype(int)
    flip = (frame["group"] == "C").to_numpy() & (rng.random(len(frame)) < flip_c)
    return np.where(flip, 1, base)


REFERENCE = _frame(5_000, 1)
PROFILE = ReferenceProfile.build(REFERENCE, _predict(REFERENCE), group_column="group", model="m", version="1")
LAYOUT = CountsLayout.from_profile(PROFILE)


def _counts(frame: pd.DataFrame, preds: np.ndarray) -> np.ndarray:
    counter = DriftCounter(PROFILE)
    counter.update(frame, preds)
    return LAYOUT.vector(counter.snapshot())


def test_no_drift_on_fresh_traffic_from_the_same_population() -> None:
    live = _frame(3_000, 12)
    report = evaluate(PROFILE, _counts(live, _predict(live)), DriftPolicy())
    assert report.verdict == NO_DRIFT and report.drifted == ()
    assert report.positive_class == "1" and {g.group for g in report.groups} >= {"A", "B", "C"}
    assert all(g.verdict == OK for g in report.groups if g.group in ("A", "B", "C"))


def test_the_shifted_feature_and_no_other_then_dataset_drift_past_the_share() -> None:
    live = _frame(3_000, 3, income_factor=1.25)
    report = evaluate(PROFILE, _counts(live, _predict(live)), DriftPolicy())
    assert report.drifted == ("income",) and report.verdict == NO_DRIFT  # 1 of 4 features: under 0.5
    income = next(f for f in report.features if f.feature == "income")
    assert income.verdict == DRIFT and income.test == "wasserstein" and income.p_value is not None
    assert len(income.bins) == len(income.reference_shares) == len(income.current_shares)
    both = _frame(3_000, 4, income_factor=1.25, new_share=0.3)
    report = evaluate(PROFILE, _counts(both, _predict(both)), DriftPolicy(dataset_drift_share=0.5))
    assert set(report.drifted) == {"income", "purpose"} and report.verdict == DRIFT
    purpose = next(f for f in report.features if f.feature == "purpose")
    assert purpose.unseen_share == pytest.approx(0.3, abs=0.03)


def test_a_group_whose_positive_share_moves_is_flagged_with_its_interval() -> None:
    live = _frame(6_000, 5)
    report = evaluate(PROFILE, _counts(live, _predict(live, flip_c=0.3, seed=1)), DriftPolicy())
    by_name = {g.group: g for g in report.groups}
    c = by_name["C"]
    assert c.verdict == SHIFT and c.difference is not None and c.difference[0] > 0
    assert c.interval is not None and c.interval[0] <= c.share <= c.interval[1]
    assert c.confidence == pytest.approx(1 - 0.005 / 3)  # Bonferroni over the 3 groups compared
    assert by_name["A"].verdict == OK and by_name["B"].verdict == OK
    few = _frame(40, 6)
    small = evaluate(PROFILE, _counts(few, _predict(few)), DriftPolicy())
    assert {g.verdict for g in small.groups} == {INSUFFICIENT_DATA}


def test_insufficient_data_below_min_rows() -> None:
    live = _frame(20, 7)
    report = evaluate(PROFILE, _counts(live, _predict(live)), DriftPolicy(min_rows=30))
    assert report.verdict == INSUFFICIENT_DATA and {f.verdict for f in report.features} == {INSUFFICIENT_DATA}


def test_merged_node_counts_give_the_pooled_statistics() -> None:
    parts = [_frame(700, 10 + i, income_factor=1.1) for i in range(3)]
    pooled = pd.concat(parts, ignore_index=True)
    pooled_counts = _counts(pooled, _predict(pooled))
    windows = []
    for i, part in enumerate(parts):
        counts = _counts(part, _predict(part))
        snap = NodeSnapshot(f"n{i}", "m", "1", None, f"e{i}", 0.0, 100.0, 10, 0, len(part), counts=counts)
        w = window_of([snap], 0.0)
        assert w is not None
        windows.append(w)
    merged = merge(windows)
    assert merged is not None and merged.counts is not None
    assert np.array_equal(merged.counts, pooled_counts)
    a = evaluate(PROFILE, merged.counts, DriftPolicy())
    b = evaluate(PROFILE, pooled_counts, DriftPolicy())
    for fa, fb in zip(a.features, b.features, strict=True):
        for name, value in fa.statistics.items():
            other = fb.statistics[name]
            assert (value is None and other is None) or abs(value - other) <= 1e-12  # type: ignore[operator]


def _snap(t: float, rows: int, *, epoch: str = "e1", start: float = 0.0, node: str = "n1") -> NodeSnapshot:
    counts = np.zeros(LAYOUT.size, dtype=np.int64)
    counts[0] = rows
    return NodeSnapshot(node, "m", "1", None, epoch, start, t, rows, 0, rows, counts=counts)


def test_window_is_a_difference_and_a_reset_is_partial_never_negative() -> None:
    w = window_of([_snap(100, 40), _snap(200, 90)], 100)
    assert w is not None and w.rows == 50 and w.partial == ()
    # the agent restarted at t=150: what it counted since (30 rows) is added, the rest is lost and said so
    w = window_of([_snap(100, 40), _snap(140, 60), _snap(200, 30, epoch="e2", start=150)], 100)
    assert w is not None and w.rows == 20 + 30 and w.resets == 1
    assert w.partial and "reset" in w.partial[0]
    # a decrease without an epoch change is a reset too (counters from an agent that does not say its epoch)
    w = window_of([_snap(100, 40, epoch=None), _snap(200, 10, epoch=None)], 100)  # type: ignore[arg-type]
    assert w is not None and w.rows == 10 and w.resets == 1
    # counters that started inside the window: everything since their start, partial
    w = window_of([_snap(200, 25, start=150)], 100)
    assert w is not None and w.rows == 25 and "counters start" in w.partial[0]


def test_a_node_gone_dark_mid_window_keeps_what_it_counted_and_says_so() -> None:
    # the fleet window merges what each node reported; the dark node's last answer is at t=150
    live = window_of([_snap(100, 10, node="n1"), _snap(200, 70, node="n1")], 100)
    dark = window_of([_snap(100, 10, node="n2"), _snap(150, 30, node="n2")], 100)
    assert live is not None and dark is not None
    merged = merge([live, dark])
    assert merged is not None and merged.rows == 60 + 20 and merged.end == 200


def test_policy_from_toml_and_file(tmp_path: Path) -> None:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "monitoring.yaml").write_text(
        "models:\n  credit-risk:\n    alpha: 0.001\n    action: command\n    command: [hook.sh]\n"
        "    features: {income: {test: psi, threshold: 0.2}, region: {ignore: true}}\n")
    (tmp_path / "modelfleet.toml").write_text(
        '[monitor]\nmin_rows = 50\n[monitor.models.credit-risk]\nslo_p95_ms = 80\nmin_rate_shift = 0.1\n')
    policy = load_policy(load_settings(config_file=tmp_path / "modelfleet.toml", env={}))
    cr = policy.for_model("credit-risk")
    assert cr.drift.alpha == 0.001 and cr.drift.min_rows == 50 and cr.drift.min_rate_shift == 0.1
    assert cr.slo_ms["p95"] == 80 and cr.action.kind == "command" and cr.action.command == ("hook.sh",)
    assert cr.drift.feature("income").test == "psi" and cr.drift.feature("region").ignore
    assert policy.for_model("other").drift.alpha == 0.005


@pytest.mark.parametrize(("text", "fragment"), [
    ("models:\n  m:\n    alpha: 2\n", "must be below 1"),
    ("models:\n  m:\n    numeric_test: unseen\n", "does not apply to numeric"),
    ("models:\n  m:\n    features: {x: {test: nope}}\n", "is not a drift test"),
    ("models:\n  m:\n    action: command\n", "needs a command"),
    ("models:\n  m:\n    colour: red\n", "unknown key 'colour'"),
    ("models:\n  m:\n    cooldown: soon\n", "is not a duration"),
    ("models: [1, 2]\n", "must map model names"),
])
def test_bad_policy_is_refused_naming_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "modelfleet.toml").write_text("")
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "monitoring.yaml").write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_policy(load_settings(config_file=tmp_path / "modelfleet.toml", env={}))


@pytest.mark.parametrize(("toml", "fragment"), [
    ('[monitor]\nsource = "graphite"\n', "agents or prometheus"),
    ('[monitor]\nwindow = "forever"\n', "not a duration"),
    ('[monitor]\nalpha = 1.5\n', "between 0 and 1"),
    ('[monitor.models.m]\nmin_rows = 0\n', "greater than 0"),
])
def test_bad_monitor_settings_are_refused(tmp_path: Path, toml: str, fragment: str) -> None:
    (tmp_path / "modelfleet.toml").write_text(toml)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(config_file=tmp_path / "modelfleet.toml", env={})
