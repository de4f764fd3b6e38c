"""The MLflow scoring protocol without MLflow: parse a request into typed columns, enforce the signature.

Accepted bodies (JSON object, exactly one of these keys; ``params`` and unknown keys are ignored as MLflow does):

- ``{"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}``
- ``{"dataframe_records": [{"col": value, ...}, ...]}``
- ``{"instances": [...]}`` and ``{"inputs": ...}``: a list of records, a dict of columns, a list of rows
  (positional, in signature order) or, for ``inputs``, a dict of scalars (one row).

With a column signature (MLmodel ``signature.inputs``) the columns are checked and converted the way MLflow's
schema enforcement does (required columns present, extra columns dropped, signature order, ``long`` <- int,
``double`` <- int/float, ``string`` <- str), but strictly: a value of the wrong type is a 400 that names the
column and row instead of a silent cast. Infinite numbers are refused; NaN and null reach the model, which
decides (a model that cannot take them answers 400 with its own message).

Everything here is per request and cheap: no pandas until the batch of requests is assembled
(:func:`build_frame`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class BadRequest(Exception):
    """A client error: ``status`` (400, 413, 415, ...) and a message naming the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str  # MLflow DataType name: double float long integer boolean string binary datetime
    required: bool = True


NUMPY_TYPES: dict[str, Any] = {
    "double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32,
    "boolean": np.bool_, "string": object, "binary": object, "datetime": object,
}


def parse_signature(inputs_json: str | None) -> list[ColumnSpec] | None:
    """Column specs from MLmodel's ``signature.inputs``; None for tensor or unnamed signatures."""
    if not inputs_json:
        return None
    try:
        specs = json.loads(inputs_json)
    except (TypeError, ValueError):
        return None
    out: list[ColumnSpec] = []
    for s in specs:
        if not isinstance(s, dict) or s.get("type") not in NUMPY_TYPES or not s.get("name"):
            return None
        out.append(ColumnSpec(str(s["name"]), str(s["type"]), bool(s.get("required", True))))
    return out or None


@dataclass
class Parsed:
    """One request's input: typed columns (signature or named data) or a 2-D row list (no names)."""

    n_rows: int
    columns: dict[str, np.ndarray] | None = None
    rows: list[list[Any]] | None = None

    def key(self) -> tuple[Any, ...]:
        """Requests with equal keys can be predicted in one batch."""
        if self.columns is not None:
            return ("cols", *((k, v.dtype.str) for k, v in self.columns.items()))
        width = len(self.rows[0]) if self.rows else 0
        return ("rows", width)


def _kind(v: Any) -> str:
    t = type(v)
    if t is bool:
        return "boolean"
    if t is int:
        return "integer"
    if t is float:
        return "number"
    if t is str:
        return "string"
    if v is None:
        return "null"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return t.__name__


def _convert(name: str, values: list[Any], typ: str) -> np.ndarray:
    if typ in ("double", "float"):
        for i, v in enumerate(values):
            t = type(v)
            if t is float:
                if v in (math.inf, -math.inf):
                    raise BadRequest(f"column {name!r} row {i}: infinite values are not accepted")
            elif t is int:
                if not _INT64_MIN <= v <= _INT64_MAX:
                    raise BadRequest(f"column {name!r} row {i}: integer out of range")
            elif v is not None:
                raise BadRequest(f"column {name!r} expects {typ} values; row {i} holds {_kind(v)}")
        arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        if typ == "float":
            with np.errstate(over="ignore"):
                arr32 = arr.astype(np.float32)
            if np.isinf(arr32).any():
                raise BadRequest(f"column {name!r}: value out of float32 range")
            return arr32
        return arr
    if typ in ("long", "integer"):
        lo, hi = (_INT64_MIN, _INT64_MAX) if typ == "long" else (-(2**31), 2**31 - 1)
        out: list[int] = []
        for i, v in enumerate(values):
            t = type(v)
            if t is float and v.is_integer():
                v = int(v)
                t = int
            if t is not int:
                if v is None or (t is float and math.isnan(v)):
                    raise BadRequest(f"column {name!r} ({typ}) row {i}: missing value")
                raise BadRequest(f"column {name!r} expects {typ} (integer) values; row {i} holds {_kind(v)}")
            if not lo <= v <= hi:
                raise BadRequest(f"column {name!r} row {i}: integer out of {typ} range")
            out.append(v)
        return np.array(out, dtype=NUMPY_TYPES[typ])
    if typ == "boolean":
        for i, v in enumerate(values):
            if type(v) is not bool:
                raise BadRequest(f"column {name!r} expects boolean values; row {i} holds {_kind(v)}")
        return np.array(values, dtype=np.bool_)
    if typ == "string":
        for i, v in enumerate(values):
            if type(v) is not str and v is not None:
                raise BadRequest(f"column {name!r} expects string values; row {i} holds {_kind(v)}")
    else:  # binary, datetime: passed through as given, scalars only
        for i, v in enumerate(values):
            if isinstance(v, (list, dict)):
                raise BadRequest(f"column {name!r} row {i}: nested {_kind(v)} is not a {typ}")
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _untyped(name: str, values: list[Any]) -> np.ndarray:
    """A column without a signature: numbers become float64/int64, the rest object."""
    kinds = {type(v) for v in values}
    if kinds <= {int} and all(_INT64_MIN <= v <= _INT64_MAX for v in values):
        return np.array(values, dtype=np.int64)
    if kinds <= {int, float, type(None)} and kinds & {float, int}:
        return _convert(name, values, "double")
    for i, v in enumerate(values):
        if isinstance(v, (list, dict)):
            raise BadRequest(f"column {name!r} row {i}: nested {_kind(v)} values are not supported")
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _check_rows(n: int, max_rows: int) -> None:
    if n == 0:
        raise BadRequest("empty input: the request holds no rows")
    if n > max_rows:
        raise BadRequest(f"too many rows: {n} (this agent accepts at most {max_rows} per request)", 413)


def _records_to_columns(records: list[Any], where: str) -> dict[str, list[Any]]:
    names: dict[str, None] = {}
    for i, r in enumerate(records):
        if type(r) is not dict:
            raise BadRequest(f"{where}: record {i} is {_kind(r)}, expected an object of column: value")
        for k in r:
            names.setdefault(k, None)
    return {k: [r.get(k) for r in records] for k in names}


def _rows_to_columns(rows: list[Any], names: list[str], where: str) -> dict[str, list[Any]]:
    width = len(names)
    for i, r in enumerate(rows):
        if type(r) is not list:
            raise BadRequest(f"{where}: row {i} is {_kind(r)}, expected an array of {width} values")
        if len(r) != width:
            raise BadRequest(f"{where}: row {i} has {len(r)} values, expected {width} ({', '.join(names)})")
    return {n: [r[j] for r in rows] for j, n in enumerate(names)}


def _columns_dict(data: dict[str, Any], where: str) -> dict[str, list[Any]]:
    if all(type(v) is not list for v in data.values()):
        return {k: [v] for k, v in data.items()}  # one row of scalars
    lengths = set()
    for k, v in data.items():
        if type(v) is not list:
            raise BadRequest(f"{where}: column {k!r} is {_kind(v)}, expected an array of values")
        lengths.add(len(v))
    if len(lengths) > 1:
        raise BadRequest(f"{where}: columns have different lengths {sorted(lengths)}")
    return {k: list(v) for k, v in data.items()}


def decode(body: bytes) -> dict[str, Any]:
    """JSON-decode a request body into the scoring envelope."""
    try:
        payload = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not UTF-8 JSON: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    if type(payload) is not dict:
        raise BadRequest(f"request body must be a JSON object with one of the keys {', '.join(FORMATS)}; "
                         f"got {_kind(payload)}")
    return payload


def parse_request(payload: dict[str, Any], schema: list[ColumnSpec] | None, max_rows: int) -> Parsed:
    """Turn a decoded scoring envelope into typed columns, enforcing ``schema`` when there is one."""
    present = [k for k in FORMATS if k in payload]
    if len(present) != 1:
        found = ", ".join(repr(k) for k in list(payload)[:8]) or "none"
        raise BadRequest(f"the request needs exactly one of the keys {', '.join(FORMATS)}; found {found}")
    fmt = present[0]
    data = payload[fmt]
    columns: dict[str, list[Any]] | None = None
    rows: list[Any] | None = None
    if fmt == "dataframe_split":
        if type(data) is not dict:
            raise BadRequest(f"dataframe_split must be an object with 'columns' and 'data'; got {_kind(data)}")
        extra = set(data) - {"columns", "data", "index"}
        if "data" not in data or extra:
            raise BadRequest("dataframe_split needs a 'data' field and optionally 'columns' and 'index'"
                             + (f"; unexpected {sorted(extra)}" if extra else ""))
        body = data["data"]
        if type(body) is not list:
            raise BadRequest(f"dataframe_split.data must be an array of rows; got {_kind(body)}")
        _check_rows(len(body), max_rows)
        cols = data.get("columns")
        if cols is not None:
            if type(cols) is not list or not all(type(c) is str for c in cols):
                raise BadRequest("dataframe_split.columns must be an array of column names (strings)")
            if len(set(cols)) != len(cols):
                raise BadRequest("dataframe_split.columns has duplicate names")
            columns = _rows_to_columns(body, cols, "dataframe_split.data")
        else:
            rows = body
    elif fmt == "dataframe_records":
        if type(data) is not list:
            raise BadRequest(f"dataframe_records must be an array of records; got {_kind(data)}")
        _check_rows(len(data), max_rows)
        columns = _records_to_columns(data, "dataframe_records")
    else:
        if type(data) is dict:
            if not data:
                raise BadRequest(f"empty input: {fmt} holds no columns")
            columns = _columns_dict(data, fmt)
            _check_rows(len(next(iter(columns.values()))), max_rows)
        elif type(data) is list:
            _check_rows(len(data), max_rows)
            if type(data[0]) is dict:
                columns = _records_to_columns(data, fmt)
            else:
                rows = [r if type(r) is list else [r] for r in data]
        else:
            raise BadRequest(f"{fmt} must be an array of rows/records or an object of columns; got {_kind(data)}")

    if rows is not None:
        width = len(rows[0]) if type(rows[0]) is list else 1
        if schema is not None:
            return _enforce(_rows_to_columns(rows, [c.name for c in schema], fmt)
                            if width == len(schema) else _bad_width(width, schema), schema)
        if width == 0:
            raise BadRequest("empty input: rows hold no values")
        for i, r in enumerate(rows):
            if type(r) is not list or len(r) != width:
                raise BadRequest(f"{fmt}: row {i} has a different length than row 0 ({width})")
            for v in r:
                if isinstance(v, (list, dict)):
                    raise BadRequest(f"{fmt}: row {i} holds a nested {_kind(v)}; only scalars are supported")
                if type(v) is float and v in (math.inf, -math.inf):
                    raise BadRequest(f"{fmt}: row {i}: infinite values are not accepted")
        return Parsed(n_rows=len(rows), rows=rows)
    assert columns is not None
    if schema is not None:
        return _enforce(columns, schema)
    if not columns:
        raise BadRequest("empty input: no columns")
    n = len(next(iter(columns.values())))
    return Parsed(n_rows=n, columns={k: _untyped(k, v) for k, v in columns.items()})


def _bad_width(width: int, schema: list[ColumnSpec]) -> dict[str, list[Any]]:
    raise BadRequest(f"rows have {width} values but the model expects {len(schema)} columns: "
                     + ", ".join(c.name for c in schema))


def _enforce(columns: dict[str, list[Any]], schema: list[ColumnSpec]) -> Parsed:
    n = len(next(iter(columns.values()))) if columns else 0
    missing = [c.name for c in schema if c.required and c.name not in columns]
    if missing:
        raise BadRequest(f"missing column(s) {', '.join(repr(m) for m in missing)}; the model expects "
                         + ", ".join(f"{c.name} ({c.type})" for c in schema))
    out: dict[str, np.ndarray] = {}
    for spec in schema:
        values = columns.get(spec.name)
        if values is None:
            values = [None] * n
            if spec.type in ("long", "integer", "boolean"):
                continue  # optional column left out, as MLflow does
        out[spec.name] = _convert(spec.name, values, spec.type)
    return Parsed(n_rows=n, columns=out)


def batch_columns(parts: list[Parsed]) -> dict[str, np.ndarray] | None:
    """The typed columns of a batch of requests with equal keys (None for bare rows)."""
    first = parts[0]
    if first.columns is None:
        return None
    if len(parts) == 1:
        return first.columns
    return {k: np.concatenate([p.columns[k] for p in parts if p.columns is not None]) for k in first.columns}


def build_frame(parts: list[Parsed], columns: dict[str, np.ndarray] | None = None) -> Any:
    """One model input for a batch of requests with equal keys: a DataFrame, or a 2-D array for bare rows.

    ``columns``: the batch's :func:`batch_columns` when the caller has them already."""
    cols = columns if columns is not None else batch_columns(parts)
    if cols is not None:
        import pandas as pd

        return pd.DataFrame(cols, copy=False)
    rows: list[list[Any]] = []
    for p in parts:
        assert p.rows is not None
        rows.extend(p.rows)
    try:
        return np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        import pandas as pd

        return pd.DataFrame(rows)


def to_jsonable(predictions: Any) -> list[Any]:
    """Predictions as JSON-ready per-row values (what MLflow's ``predictions_to_json`` produces)."""
    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return list(predictions.to_dict(orient="records"))
    if hasattr(predictions, "tolist"):
        out = predictions.tolist()
        return out if isinstance(out, list) else [out]
    if isinstance(predictions, (list, tuple)):
        return [v.tolist() if hasattr(v, "tolist") else v for v in predictions]
    return [predictions]


def with_thresholds(model: Any, spec: Any) -> Any:
    """``model`` wrapped to apply a release's per-group thresholds (the manifest's ``thresholds``) on its
    positive-class probability, by the same code as the controller's evaluation and probe
    (:class:`modelfleet.core.fairness.ThresholdedClassifier`). ValueError names what is wrong."""
    from modelfleet.core.fairness import GroupThresholds, ThresholdedClassifier

    return ThresholdedClassifier(model, GroupThresholds.from_dict(spec))
