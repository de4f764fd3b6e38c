"""Reference profiles (numeric quantile bins, top-K categories, predictions by group) and bounded counting."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from modelfleet.core.drift import MAX_TOP_K, CategoricalBins, DriftCounter, NumericBins, ReferenceProfile


def _frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "income": rng.lognormal(10, 0.5, n),
        "age": rng.integers(18, 80, n),
        "job": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object),
        "group": rng.choice(["G1", "G2"], n).astype(object),
    })


def test_numeric_bins_cover_below_above_and_nan() -> None:
    b = NumericBins.fit(np.arange(101, dtype=float), 10)
    # 10 equal-mass bins, the outer ones split again at the 1/5/95/99 % quantiles: 14 interior bins
    assert b.edges[0] == 0 and b.edges[-1] == 100 and b.size == 17
    counts = b.count([-1.0, 0.0, 5.0, 100.0, 101.0, float("nan"), float("inf")])
    labels = b.labels()
    assert counts[0] == 1 and labels[0] == "below"
    assert counts[-2] == 2 and labels[-2] == "above"  # 101 and inf
    assert counts[-1] == 1 and labels[-1] == "nan"
    assert counts[1] == 1 and counts[3] == 1 and counts[-3] == 1  # 0 in [0,1), 5 in [5,10), 100 in [99,100]
    assert NumericBins.fit(np.array([3.0, 3.0]), 10).count([3.0, 2.0]).tolist() == [1, 1, 0, 0]
    few = NumericBins.fit(np.array([12.0, 24.0, 36.0, 36.0, 60.0]), 10)  # one bin per distinct value
    assert few.count([12.0, 24.0, 36.0, 60.0, 61.0]).tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_categorical_bins_top_k_other_new_missing() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]
    b = CategoricalBins.fit(values, top_k=2)
    assert b.categories == ["a", "b"] and b.known_other == ["c", "d"]
    assert b.labels() == ["a", "b", "other", "new", "missing"]
    assert b.count(["a", "c", "zzz", None, float("nan"), "b"]).tolist() == [1, 1, 1, 1, 2]
    with pytest.raises(ValueError):
        ReferenceProfile.build(_frame(), top_k=MAX_TOP_K + 1)


def test_profile_round_trip_and_reference_counts() -> None:
    df = _frame()
    preds = (df["income"] > df["income"].median()).astype(int).to_numpy()
    p = ReferenceProfile.build(df, preds, group_column="group", model="m", version="3")
    d = json.loads(p.to_json())
    assert d["format"] == "modelfleet-profile/1" and d["group_column"] == "group"
    q = ReferenceProfile.from_dict(d)
    assert q.to_dict() == p.to_dict()
    assert sum(q.feature("income").reference_counts) == 1000
    assert q.feature("job").kind == "categorical" and q.feature("age").kind == "numeric"
    assert sum(q.prediction_reference or []) == 1000
    assert q.group_reference is not None and sum(map(sum, q.group_reference)) == 1000
    with pytest.raises(ValueError, match="not a reference profile"):
        ReferenceProfile.from_dict({"format": "other"})


def test_counter_counts_live_traffic_on_frozen_bins() -> None:
    df = _frame()
    preds = (df["age"] > 50).astype(int).to_numpy()
    p = ReferenceProfile.build(df, preds, group_column="group")
    c = DriftCounter(p, clock=lambda: 1000.0)
    live = _frame(200, seed=5)
    live.loc[0, "job"] = "brand-new"
    live.loc[1, "income"] = np.nan
    c.update(live, (live["age"] > 50).astype(int).to_numpy())
    snap = c.snapshot()
    assert snap["rows"] == 200 and snap["window_start"] == 1000.0
    assert sum(snap["features"]["income"]["counts"]) == 200 and snap["features"]["income"]["counts"][-1] == 1
    job = snap["features"]["job"]
    assert job["counts"][job["bins"].index("new")] == 1
    assert sum(snap["predictions"]["counts"]) == 200
    by_group = snap["predictions_by_group"]["groups"]
    assert sum(sum(v) for v in by_group.values()) == 200
    c.update({"income": [1.0], "age": [30], "job": ["a"]}, [0])  # dict of columns, group column absent
    assert c.snapshot()["rows"] == 201
    c.reset()
    assert c.snapshot()["rows"] == 0


def test_counter_memory_is_bounded() -> None:
    df = _frame()
    p = ReferenceProfile.build(df, (df["age"] > 40).astype(int).to_numpy(), group_column="group")
    c = DriftCounter(p)
    batch = _frame(100, seed=9)
    batch["job"] = [f"unseen-{i}" for i in range(100)]  # unbounded new categories must not grow anything
    preds = np.arange(100) % 7  # unseen classes too
    size_before = sum(a.nbytes for a in c._counts) + c._pred.nbytes + c._by_group.nbytes
    for i in range(200):
        batch["group"] = [f"g{i}-{j}" for j in range(100)]
        c.update(batch, preds)
    size_after = sum(a.nbytes for a in c._counts) + c._pred.nbytes + c._by_group.nbytes
    assert size_after == size_before
    assert sys.getsizeof(json.dumps(c.snapshot())) < 20_000
    assert c.snapshot()["rows"] == 20_000


def test_continuous_predictions_get_numeric_bins() -> None:
    df = _frame()
    p = ReferenceProfile.build(df, df["income"].to_numpy() / 1000.0)
    assert isinstance(p.prediction, NumericBins)


def test_small_batches_count_exactly_like_large_ones() -> None:
    df = _frame(400, seed=2)
    p = ReferenceProfile.build(df, (df["age"] > 40).astype(int).to_numpy(), group_column="group")
    live = _frame(300, seed=3)
    live.loc[0, "income"] = np.nan
    live.loc[1, "income"] = 1e12  # above the reference's range
    live.loc[2, "job"] = "never-seen"
    live.loc[3, "job"] = None
    preds = (live["age"] > 40).astype(int).to_numpy()
    columns = {k: live[k].to_numpy() for k in live.columns}
    one, many = DriftCounter(p), DriftCounter(p)
    one.update(columns, preds)  # one batch of 300 rows: numpy's path
    for start in range(0, 300, 2):  # 150 batches of 2 rows: the value-by-value path
        many.update({k: v[start:start + 2] for k, v in columns.items()}, preds[start:start + 2])
    a, b = one.snapshot(), many.snapshot()
    assert a["features"] == b["features"] and a["predictions"] == b["predictions"]
    assert a["predictions_by_group"] == b["predictions_by_group"] and a["rows"] == b["rows"] == 300


def test_deferred_batches_count_like_immediate_ones() -> None:
    df = _frame(400, seed=4)
    p = ReferenceProfile.build(df, (df["age"] > 40).astype(int).to_numpy(), group_column="group")
    live = _frame(1300, seed=5)
    preds = (live["age"] > 40).astype(int).to_numpy()
    columns = {k: live[k].to_numpy() for k in live.columns}
    now, later = DriftCounter(p, clock=lambda: 5.0), DriftCounter(p, clock=lambda: 5.0)
    for start in range(0, 1300, 3):
        part = {k: v[start:start + 3] for k, v in columns.items()}
        now.update(part, preds[start:start + 3])
        later.add(part, preds[start:start + 3])  # counted 512 rows at a time, the rest when read
    assert later._pending_rows < 512 and later._pending  # some are still waiting ...
    assert later.snapshot() == now.snapshot()  # ... and reading the counts counts them first
