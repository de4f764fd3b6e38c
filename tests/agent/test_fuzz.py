"""Fuzz /invocations with hypothesis (in-process against the ASGI app): no input yields a 5xx.

Three strategies, 2,400 generated cases in all: arbitrary bytes, arbitrary JSON, and scoring envelopes whose
columns, row shapes and value types are drawn around the model's real signature.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.agent.app import Agent
from tests.agent.conftest import Node
from tests.agent.inproc import call, started_agent
from tests.agent.modelkit import FEATURES


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def fuzz_env(shared_node: Node) -> Iterator[tuple[asyncio.AbstractEventLoop, Agent]]:
    loop = asyncio.new_event_loop()
    agent = loop.run_until_complete(started_agent(shared_node.current, max_rows=500))
    yield loop, agent
    loop.run_until_complete(agent.shutdown())
    loop.close()


def _check(env: tuple[asyncio.AbstractEventLoop, Agent], body: bytes) -> None:
    loop, agent = env
    status, _headers, out = loop.run_until_complete(call(agent, "POST", "/invocations", body))
    assert status < 500, (status, body[:300], out[:300])
    doc = json.loads(out)
    if status == 200:
        assert isinstance(doc["predictions"], list)
    else:
        assert status in (400, 413, 415) and doc["message"], doc


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=4),
                           max_leaves=20)
column_names = st.one_of(st.sampled_from(FEATURES), st.text(max_size=10))
good_values = {"income": st.floats(0, 1e6), "age": st.integers(18, 90), "debt_ratio": st.floats(0, 2),
               "employment": st.sampled_from(["salaried", "retired", "unemployed", "astronaut"]),
               "applicant_group": st.sampled_from(["A", "B", "C", "Z"])}
cell = st.one_of(scalars, st.lists(scalars, max_size=2))


@st.composite
def records(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 6))
    out = []
    for _ in range(n):
        rec: dict[str, Any] = {}
        for f in FEATURES:
            choice = draw(st.integers(0, 9))
            if choice < 7:
                rec[f] = draw(good_values[f])
            elif choice < 9:
                rec[f] = draw(cell)
        if draw(st.booleans()):
            rec[draw(column_names)] = draw(cell)
        out.append(rec)
    return out


@st.composite
def envelopes(draw: Any) -> Any:
    recs = draw(records())
    cols = draw(st.one_of(st.just(FEATURES), st.lists(column_names, max_size=6)))
    fmt = draw(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs_cols",
                                "inputs_rows", "split_no_cols", "wrong_container"]))
    if fmt == "dataframe_split":
        return {"dataframe_split": {"columns": cols, "data": [[r.get(c) for c in cols] for r in recs]}}
    if fmt == "split_no_cols":
        return {"dataframe_split": {"data": [list(r.values()) for r in recs]}}
    if fmt == "dataframe_records":
        return {"dataframe_records": recs}
    if fmt == "instances":
        return {"instances": recs}
    if fmt == "inputs_cols":
        return {"inputs": {c: [r.get(c) for r in recs] for c in cols}}
    if fmt == "inputs_rows":
        return {"inputs": [list(r.values()) for r in recs]}
    return {draw(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs"])): draw(json_values)}


@fuzz(1000)
@given(envelopes())
def test_fuzz_scoring_envelopes(fuzz_env: Any, payload: Any) -> None:
    _check(fuzz_env, json.dumps(payload).encode())


@fuzz(500)
@given(st.dictionaries(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs",
                                        "params", "x"]), json_values, max_size=3))
def test_fuzz_arbitrary_json(fuzz_env: Any, payload: Any) -> None:
    _check(fuzz_env, json.dumps(payload).encode())


@fuzz(500)
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_fuzz_arbitrary_bytes(fuzz_env: Any, body: bytes) -> None:
    _check(fuzz_env, body)
