"""Reference profiles of a model version and bounded-memory drift counting on their frozen bins.

A :class:`ReferenceProfile` is built once, when a version is bundled, from the reference sample registered with
it (a DataFrame of model inputs, optionally with the model's predictions on it):

- numeric feature: bin edges at the reference quantiles (``numeric_bins`` equal-mass bins, the outer ones split
  again at the 1, 5, 95 and 99 % quantiles, duplicates merged; one bin per value when the reference holds at
  most ``numeric_bins`` distinct values), plus a
  ``below`` bin (< first edge), an ``above`` bin (> last edge) and a ``nan`` bin. Bin order:
  ``below, [e0,e1), ..., [e(k-1),ek], above, nan``;
- categorical feature: the ``top_k`` (<= 128) most frequent reference categories, then ``other`` (seen in the
  reference but not in the top K), ``new`` (never seen in the reference) and ``missing`` (None/NaN). When the
  reference holds more than ``MAX_KNOWN_OTHER`` rarer categories the list is truncated and unseen values count
  as ``other`` (the profile says ``known_other_truncated``);
- predictions: classes (top K + ``other``) or, for continuous outputs, numeric bins as above; counted overall
  and per group when the profile names a ``group_column`` (the group column is binned like a categorical
  feature, so its bins are ``top groups, other, new, missing``).

Each bin keeps its reference count, so later drift tests (PSI, chi-square) compare live counts with the
reference. The JSON form (``to_dict``/``from_dict``, format ``modelfleet-profile/1``) is what ``profile.json``
in a release holds.

A :class:`DriftCounter` counts live traffic on a profile's bins. Its memory is fixed by the profile (one int64
array per feature, one for predictions, one ``groups x classes`` matrix), whatever the traffic.

This module is headless: numpy and pandas only.
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "modelfleet-profile/1"
MAX_TOP_K = 128
MAX_KNOWN_OTHER = 4096
MAX_DISTINCT = 1_000_000
MEMO_SIZE = 1024  # non-string values whose bin a CategoricalBins remembers
FLUSH_ROWS = 512  # rows DriftCounter.add keeps before counting them in one pass
SMALL_BATCH = 16  # up to this many rows, a batch is counted value by value (numpy's per-call cost dominates)
TAIL_LEVELS = (0.01, 0.05, 0.95, 0.99)
NUMERIC_TAIL = ("below", "above", "nan")
CATEGORICAL_TAIL = ("other", "new", "missing")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ in (
        "NAType", "NaTType")


def _pd() -> Any:
    import pandas as pd

    return pd


def _category_key(value: Any) -> str:
    """The string a category is stored and looked up by (JSON keys are strings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------------------------
# bins
@dataclass
class NumericBins:
    """Quantile edges of a numeric variable plus below/above/nan bins."""

    edges: list[float]

    @property
    def n_interior(self) -> int:
        return max(len(self.edges) - 1, 1)

    @property
    def size(self) -> int:
        return self.n_interior + 3

    def labels(self) -> list[str]:
        e = self.edges
        if len(e) == 1:
            inner = [f"[{e[0]:.6g}]"]
        else:
            inner = [f"[{e[i]:.6g},{e[i + 1]:.6g}{']' if i == len(e) - 2 else ')'}" for i in range(len(e) - 1)]
        return ["below", *inner, "above", "nan"]

    @classmethod
    def fit(cls, values: np.ndarray, n_bins: int) -> NumericBins:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return cls(edges=[0.0])
        distinct = np.unique(finite)
        if 1 < distinct.size <= n_bins:
            # few distinct values (a term in months, a count): one bin per value, the last one closed just above it
            top = float(np.nextafter(distinct[-1], np.inf))
            return cls(edges=[*(float(v) for v in distinct), top])
        levels = np.linspace(0.0, 1.0, max(n_bins, 1) + 1)
        if n_bins >= 4:  # finer tails: the outer bins would otherwise span the reference's extremes
            levels = np.union1d(levels, TAIL_LEVELS)
        qs = np.quantile(finite, levels)
        return cls(edges=[float(v) for v in np.unique(qs)])

    def index_of(self, value: Any) -> int:
        """Bin index of one value (the same as :meth:`indices`; cheaper for a handful of values)."""
        n_int = self.n_interior
        try:
            x = float(value)
        except (TypeError, ValueError):
            return n_int + 2
        if x != x:
            return n_int + 2
        edges = self.edges
        if x < edges[0]:
            return 0
        if x > edges[-1]:
            return n_int + 1
        i = bisect_right(edges, x) - 1
        return (n_int - 1 if i > n_int - 1 else (0 if i < 0 else i)) + 1

    def indices(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value (float array)."""
        edges = np.asarray(self.edges, dtype=float)
        n_int = self.n_interior
        idx = np.searchsorted(edges, values, side="right") - 1
        idx = np.clip(idx, 0, n_int - 1) + 1
        idx[values < edges[0]] = 0
        idx[values > edges[-1]] = n_int + 1
        idx[np.isnan(values)] = n_int + 2
        return idx

    def count(self, values: Any) -> np.ndarray:
        arr = _as_float(values)
        return np.bincount(self.indices(arr), minlength=self.size)[: self.size]


@dataclass
class CategoricalBins:
    """Top-K categories plus other/new/missing bins."""

    categories: list[str]
    known_other: list[str] = field(default_factory=list)
    known_other_truncated: bool = False
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _other: frozenset[str] = field(default_factory=frozenset, init=False, repr=False, compare=False)
    _memo: dict[tuple[type, Any], int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.categories)}
        self._other = frozenset(self.known_other)

    @property
    def size(self) -> int:
        return len(self.categories) + 3

    def labels(self) -> list[str]:
        return [*self.categories, *CATEGORICAL_TAIL]

    @classmethod
    def fit(cls, values: Sequence[Any], top_k: int) -> CategoricalBins:
        top_k = max(1, min(int(top_k), MAX_TOP_K))
        counts: dict[str, int] = {}
        for v in values:
            if _is_missing(v):
                continue
            key = _category_key(v)
            counts[key] = counts.get(key, 0) + 1
        ranked = sorted(counts, key=lambda k: (-counts[k], k))
        rest = ranked[top_k:]
        return cls(categories=ranked[:top_k], known_other=rest[:MAX_KNOWN_OTHER],
                   known_other_truncated=len(rest) > MAX_KNOWN_OTHER)

    def index_of(self, value: Any) -> int:
        if value.__class__ is str:
            key = value
        else:
            if _is_missing(value):
                return len(self.categories) + 2
            key = _category_key(value)
        i = self._index.get(key)
        if i is not None:
            return i
        n = len(self.categories)
        if key in self._other or self.known_other_truncated:
            return n
        return n + 1

    def lookup(self, value: Any) -> int:
        """:meth:`index_of`, remembered for non-string values (predicted classes are ints: 0, 1, ...)."""
        key = (value.__class__, value)
        try:
            return self._memo[key]
        except KeyError:
            found = self.index_of(value)
        except TypeError:  # unhashable
            return self.index_of(value)
        if len(self._memo) < MEMO_SIZE:
            self._memo[key] = found
        return found

    def indices(self, values: Sequence[Any]) -> np.ndarray:
        get = self._index.get
        found = [get(v, -1) if v.__class__ is str else -1 for v in values]
        if -1 in found:  # not a top category as a string: other, new, missing, or a non-string value
            lookup = self.lookup
            found = [i if i >= 0 else lookup(v) for i, v in zip(found, values, strict=True)]
        return np.asarray(found, dtype=np.int64)

    def count(self, values: Sequence[Any]) -> np.ndarray:
        return np.bincount(self.indices(values), minlength=self.size)[: self.size]


Bins = NumericBins | CategoricalBins


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _as_float(values: Any) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        pd = _pd()
        return np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), dtype=float)


def _bins_to_dict(bins: Bins) -> dict[str, Any]:
    if isinstance(bins, NumericBins):
        return {"kind": "numeric", "edges": bins.edges}
    return {"kind": "categorical", "categories": bins.categories, "known_other": bins.known_other,
            "known_other_truncated": bins.known_other_truncated}


def _bins_from_dict(data: dict[str, Any]) -> Bins:
    if data["kind"] == "numeric":
        return NumericBins(edges=[float(e) for e in data["edges"]])
    if data["kind"] == "categorical":
        cats = [str(c) for c in data["categories"]]
        if len(cats) > MAX_TOP_K:
            raise ValueError(f"profile has {len(cats)} categories; at most {MAX_TOP_K} allowed")
        return CategoricalBins(categories=cats, known_other=[str(c) for c in data.get("known_other", [])],
                               known_other_truncated=bool(data.get("known_other_truncated", False)))
    raise ValueError(f"unknown bin kind {data['kind']!r}")


def _is_numeric_values(values: np.ndarray) -> bool:
    return values.dtype.kind in "fiu"


# --------------------------------------------------------------------------------------------------------
# profile
@dataclass
class FeatureProfile:
    name: str
    bins: Bins
    reference_counts: list[int]
    std: float | None = None  # numeric: standard deviation of the reference values (normalises Wasserstein)
    distinct: int | None = None  # distinct non-missing reference values, capped at MAX_DISTINCT

    @property
    def kind(self) -> str:
        return "numeric" if isinstance(self.bins, NumericBins) else "categorical"


@dataclass
class ReferenceProfile:
    """The frozen bins of a model version, with the reference sample's counts in them."""

    features: list[FeatureProfile]
    rows: int
    prediction: Bins | None = None
    prediction_reference: list[int] | None = None
    group_column: str | None = None
    group_bins: CategoricalBins | None = None
    group_reference: list[list[int]] | None = None  # [group bin][prediction bin]
    model: str | None = None
    version: str | None = None
    created: float = field(default_factory=time.time)

    @classmethod
    def build(cls, frame: pd.DataFrame, predictions: Any = None, *, group_column: str | None = None,
              numeric_bins: int = 10, top_k: int = 32, model: str | None = None,
              version: str | None = None) -> ReferenceProfile:
        """Profile ``frame`` (the reference sample) and, when given, the model's ``predictions`` on it."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}")
        if group_column is not None and group_column not in frame.columns:
            raise ValueError(f"group column {group_column!r} is not in the reference sample")
        features: list[FeatureProfile] = []
        for name in frame.columns:
            col = frame[name]
            bins: Bins
            std: float | None = None
            if col.dtype.kind in "fiu":
                values = col.to_numpy(dtype=float, na_value=np.nan)
                bins = NumericBins.fit(values, numeric_bins)
                finite = values[np.isfinite(values)]
                std = float(np.std(finite)) if finite.size else None
            else:
                bins = CategoricalBins.fit(col.tolist(), top_k)
            distinct = min(int(col.nunique(dropna=True)), MAX_DISTINCT)
            features.append(FeatureProfile(str(name), bins, [int(c) for c in bins.count(col.tolist())], std,
                                           distinct))
        profile = cls(features=features, rows=len(frame), group_column=group_column, model=model,
                      version=version)
        if group_column is not None:
            profile.group_bins = CategoricalBins.fit(frame[group_column].tolist(), top_k)
        if predictions is not None:
            preds = np.asarray(predictions).reshape(len(frame), -1)[:, 0]
            profile.prediction = _prediction_bins(preds, numeric_bins, top_k)
            counter = DriftCounter(profile)
            counter.update(frame, preds)
            profile.prediction_reference = [int(c) for c in counter._pred]
            if profile.group_bins is not None:
                profile.group_reference = counter._by_group.tolist()
        return profile

    def feature(self, name: str) -> FeatureProfile:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "model": self.model, "version": self.version, "created": self.created,
            "rows": self.rows,
            "features": [{"name": f.name, **_bins_to_dict(f.bins), "reference_counts": f.reference_counts,
                          "std": f.std, "distinct": f.distinct} for f in self.features],
            "prediction": None if self.prediction is None else {
                **_bins_to_dict(self.prediction), "reference_counts": self.prediction_reference},
            "group_column": self.group_column,
            "groups": None if self.group_bins is None else {
                **_bins_to_dict(self.group_bins), "reference_counts": self.group_reference},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a reference profile (format {data.get('format')!r}, expected {FORMAT!r})")
        features = [FeatureProfile(str(f["name"]), _bins_from_dict(f), [int(c) for c in f["reference_counts"]],
                                   None if f.get("std") is None else float(f["std"]),
                                   None if f.get("distinct") is None else int(f["distinct"]))
                    for f in data["features"]]
        for f in features:
            if len(f.reference_counts) != f.bins.size:
                raise ValueError(f"feature {f.name!r}: {len(f.reference_counts)} counts for {f.bins.size} bins")
        pred = data.get("prediction")
        groups = data.get("groups")
        group_bins = _bins_from_dict(groups) if groups else None
        if group_bins is not None and not isinstance(group_bins, CategoricalBins):
            raise ValueError("group bins must be categorical")
        return cls(
            features=features, rows=int(data.get("rows", 0)),
            prediction=_bins_from_dict(pred) if pred else None,
            prediction_reference=pred.get("reference_counts") if pred else None,
            group_column=data.get("group_column"), group_bins=group_bins,
            group_reference=groups.get("reference_counts") if groups else None,
            model=data.get("model"), version=data.get("version"), created=float(data.get("created", 0.0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        return cls.from_dict(json.loads(text))


def _prediction_bins(preds: np.ndarray, numeric_bins: int, top_k: int) -> Bins:
    if preds.dtype.kind == "f":
        finite = preds[np.isfinite(preds)]
        distinct = np.unique(finite)
        if distinct.size > min(top_k, 32) or not np.all(np.equal(np.mod(distinct, 1), 0)):
            return NumericBins.fit(preds.astype(float), numeric_bins)
    return CategoricalBins.fit(preds.tolist(), top_k)


# --------------------------------------------------------------------------------------------------------
# live counting
class DriftCounter:
    """Counts live rows and predictions on a profile's frozen bins; memory is fixed by the profile."""

    def __init__(self, profile: ReferenceProfile, *, clock: Any = time.time) -> None:
        self.profile = profile
        self._clock = clock
        self._features = [(f.name, f.bins) for f in profile.features]
        self._pred_bins = profile.prediction
        n_pred = self._pred_bins.size if self._pred_bins is not None else 0
        n_group = profile.group_bins.size if profile.group_bins is not None else 0
        sizes = [b.size for _, b in self._features]
        self._offsets = [int(x) for x in np.concatenate(([0], np.cumsum(sizes)))[:-1]] if sizes else []
        # one vector for every feature's bins (one bincount per batch); _counts[i] are views into it
        self._flat = np.zeros(sum(sizes), dtype=np.int64)
        self._counts = [self._flat[o: o + n] for o, n in zip(self._offsets, sizes, strict=True)]
        # numeric: searchsorted(side="right") on these edges gives the bin directly (the last edge moved just
        # above the reference's maximum so that it falls in the closed last bin); NaN is fixed after
        self._edges = [np.asarray([*b.edges[:-1], np.nextafter(b.edges[-1], np.inf)] if len(b.edges) > 1
                                  else [np.nextafter(b.edges[0], np.inf)], dtype=float)
                       if isinstance(b, NumericBins) else None for _, b in self._features]
        self._few = [0] * self._flat.size
        self._pending: list[tuple[dict[str, Any], Any]] = []
        self._pending_rows = 0
        self._numeric = [(list(b.edges), b.edges[0], b.edges[-1], b.n_interior) if isinstance(b, NumericBins)
                         else None for _, b in self._features]
        self._missing_columns = np.zeros(len(self._features), dtype=np.int64)
        self._pred = np.zeros(n_pred, dtype=np.int64)
        self._by_group = np.zeros((n_group, n_pred), dtype=np.int64)
        self._group_rows = np.zeros(n_group, dtype=np.int64)
        self.rows = 0
        self.window_start = float(clock())

    def reset(self) -> None:
        """Start a new window."""
        self._few = [0] * self._flat.size
        self._pending, self._pending_rows = [], 0
        for c in self._counts:
            c[:] = 0
        self._missing_columns[:] = 0
        self._pred[:] = 0
        self._by_group[:] = 0
        self._group_rows[:] = 0
        self.rows = 0
        self.window_start = float(self._clock())

    def update(self, frame: pd.DataFrame | dict[str, Sequence[Any]], predictions: Any = None) -> None:
        """Count one batch: ``frame`` (a DataFrame or a dict of columns) and the model's predictions on it."""
        columns = frame
        n = len(frame) if hasattr(frame, "columns") else (len(next(iter(frame.values()))) if frame else 0)
        if n == 0:
            return
        self.rows += n
        small = n <= SMALL_BATCH
        parts: list[np.ndarray] = []
        few: list[int] = []
        for i, (name, bins) in enumerate(self._features):
            if name not in columns:
                self._missing_columns[i] += n
                self._counts[i][-1] += n  # counted as nan / missing
                continue
            col = columns[name]
            if small:
                self._count_few(i, bins, col.tolist() if hasattr(col, "tolist") else list(col), few)
                continue
            values = col.to_numpy() if hasattr(col, "to_numpy") else col
            edges = self._edges[i]
            if edges is not None:
                x = _as_float(values)
                idx = np.searchsorted(edges, x, side="right")
                idx[np.isnan(x)] = bins.size - 1
            else:
                assert isinstance(bins, CategoricalBins)
                idx = bins.indices(values.tolist() if hasattr(values, "tolist") else list(values))
            parts.append(idx + self._offsets[i])
        if few:  # a Python list takes single increments far cheaper than numpy; folded in at snapshot time
            acc = self._few
            for j in few:
                acc[j] += 1
        if parts:
            self._flat += np.bincount(np.concatenate(parts), minlength=self._flat.size)
        if predictions is None or self._pred_bins is None:
            return
        preds = np.asarray(predictions)
        if preds.ndim > 1:
            preds = preds.reshape(preds.shape[0], -1)[:, 0]
        if preds.shape[0] != n:
            return
        gb = self.profile.group_bins
        gcol = self.profile.group_column
        if small:
            pbins = self._pred_bins
            plist = [pbins.lookup(v) if isinstance(pbins, CategoricalBins) else pbins.index_of(v)
                     for v in preds.tolist()]
            for p in plist:
                self._pred[p] += 1
            if gb is not None and gcol is not None and gcol in columns:
                g = columns[gcol]
                for gi, p in zip((gb.lookup(v) for v in (g.tolist() if hasattr(g, "tolist") else g)), plist,
                                 strict=False):
                    self._by_group[gi, p] += 1
                    self._group_rows[gi] += 1
            return
        pred_vals: Any = preds if isinstance(self._pred_bins, NumericBins) else preds.tolist()
        pidx = self._pred_bins.indices(pred_vals)
        self._pred += np.bincount(pidx, minlength=self._pred_bins.size)[: self._pred_bins.size]
        if gb is not None and gcol is not None and gcol in columns:
            g = columns[gcol]
            gvals = g.tolist() if hasattr(g, "tolist") else list(g)
            gidx = gb.indices(gvals)
            shape = self._by_group.shape
            self._by_group += np.bincount(gidx * shape[1] + pidx, minlength=shape[0] * shape[1]).reshape(shape)
            self._group_rows += np.bincount(gidx, minlength=gb.size)[: gb.size]

    def _count_few(self, i: int, bins: Bins, values: list[Any], out: list[int]) -> None:
        """Append the flat bin index of each of a few values (inlined lookups: this runs on every request)."""
        off = self._offsets[i]
        fast = self._numeric[i]
        if fast is not None:
            edges, first, last, n_int = fast
            for v in values:
                x = v if v.__class__ is float else _float_or_nan(v)
                if x != x:
                    out.append(off + n_int + 2)
                elif x < first:
                    out.append(off)
                elif x > last:
                    out.append(off + n_int + 1)
                else:
                    j = bisect_right(edges, x)
                    out.append(off + (j if j <= n_int else n_int))
            return
        assert isinstance(bins, CategoricalBins)
        get = bins._index.get
        for v in values:
            found = get(v) if v.__class__ is str else None
            out.append(off + (found if found is not None else bins.lookup(v)))

    def add(self, columns: dict[str, Any], predictions: Any = None) -> None:
        """Count a batch of typed columns (numpy arrays) later, together with others: the agent's request path.

        Batches wait (references only, at most ``FLUSH_ROWS`` rows) and are counted as one when enough rows have
        arrived, or when the counts are read (:meth:`snapshot`): one numpy pass over many requests instead of one
        per request. The caller holds the lock that also guards :meth:`snapshot`."""
        first = next(iter(columns.values()), None)
        n = len(first) if first is not None else 0
        if n == 0:
            return
        self._pending.append((columns, predictions))
        self._pending_rows += n
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Count every batch :meth:`add` kept."""
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        if len(pending) == 1:
            self.update(*pending[0])
            return
        names = [k for k in pending[0][0] if all(k in cols for cols, _ in pending)]
        columns = {k: np.concatenate([np.asarray(cols[k]) for cols, _ in pending]) for k in names}
        preds: Any = None
        if all(p is not None for _, p in pending):
            try:
                preds = np.concatenate([np.asarray(p).reshape(len(next(iter(c.values()))), -1)[:, 0]
                                        for c, p in pending])
            except ValueError:  # predictions of another shape than their rows: not counted, as update() does
                preds = None
        if len(names) == len(pending[0][0]):
            self.update(columns, preds)
        else:  # batches with different columns: count them one by one
            for cols, p in pending:
                self.update(cols, p)

    def _fold(self) -> None:
        """Move what small batches counted into the numpy counts (the caller holds the counter's lock)."""
        self.flush()
        if any(self._few):
            self._flat += np.asarray(self._few, dtype=np.int64)
            self._few = [0] * self._flat.size

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready counts of the current window."""
        self._fold()
        out: dict[str, Any] = {
            "window_start": self.window_start,
            "window_start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.window_start)),
            "rows": self.rows,
            "features": {
                name: {"kind": "numeric" if isinstance(b, NumericBins) else "categorical",
                       "bins": b.labels(), "counts": self._counts[i].tolist(),
                       "missing_column_rows": int(self._missing_columns[i])}
                for i, (name, b) in enumerate(self._features)
            },
        }
        if self._pred_bins is not None:
            out["predictions"] = {"bins": self._pred_bins.labels(), "counts": self._pred.tolist()}
            gb = self.profile.group_bins
            if gb is not None:
                labels = gb.labels()
                out["predictions_by_group"] = {
                    "column": self.profile.group_column,
                    "groups": {labels[i]: self._by_group[i].tolist() for i in range(gb.size)},
                }
        return out
