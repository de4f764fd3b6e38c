"""Every endpoint and scoring format of a real agent process, and bad input that must give a 4xx."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.agent import modelkit
from tests.agent.conftest import ADMIN_TOKEN, TOKEN, AgentProcess, Models

AUTH = {"authorization": f"Bearer {TOKEN}"}
ROWS = modelkit.make_frame(5, seed=42)
COLS = list(ROWS.columns)


def _records() -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in ROWS.to_dict("records")]


def payloads() -> dict[str, dict[str, Any]]:
    recs = _records()
    return {
        "dataframe_split": {"dataframe_split": {"columns": COLS, "data": [list(r.values()) for r in recs]}},
        "dataframe_records": {"dataframe_records": recs},
        "instances": {"instances": recs},
        "inputs_columns": {"inputs": {c: [r[c] for r in recs] for c in COLS}},
        "inputs_records": {"inputs": recs},
        "inputs_rows": {"inputs": [list(r.values()) for r in recs]},
    }


@pytest.mark.parametrize("fmt", list(payloads()))
def test_every_scoring_format_predicts_like_the_model(shared_agent: AgentProcess, models: Models,
                                                      fmt: str) -> None:
    r = shared_agent.post(payloads()[fmt], headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == "1"
    assert r.json() == {"predictions": [int(v) for v in models.model_v1.predict(ROWS)]}


def test_health_version_metrics_stats(shared_agent: AgentProcess) -> None:
    url = shared_agent.url
    h = httpx.get(url + "/health").json()
    assert h["status"] == "ok" and h["model"] == "credit-risk" and h["version"] == "1"
    assert len(h["digest"]) == 64 and h["uptime_s"] >= 0
    v = httpx.get(url + "/version").json()
    assert v["version"] == "1" and v["flavor"] == "sklearn" and "agent" in v
    for _ in range(3):
        assert shared_agent.post(payloads()["dataframe_split"], headers=AUTH).status_code == 200
    m = httpx.get(url + "/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    for name in ("modelfleet_agent_requests_total", "modelfleet_agent_errors_total",
                 "modelfleet_agent_request_duration_seconds_bucket", "modelfleet_agent_predictions_total",
                 "modelfleet_agent_predictions_by_group_total", "modelfleet_agent_process_resident_memory_bytes",
                 "modelfleet_agent_host_memory_bytes", "modelfleet_agent_model_info"):
        assert name in text, name
    assert 'group="A"' in text or 'group="B"' in text or 'group="C"' in text
    s = httpx.get(url + "/stats").json()
    assert s["version"] == "1" and s["requests"] >= 3 and s["window_start"] <= time.time()
    assert s["latency"]["p50"] is not None and s["latency"]["sketch"]["count"] >= 3
    assert s["drift"]["available"] is True
    counts = s["drift"]["counts"]
    assert counts["rows"] >= 15
    assert set(counts["features"]) == set(COLS)
    assert sum(counts["features"]["income"]["counts"]) == counts["rows"]
    assert sum(counts["predictions"]["counts"]) == counts["rows"]
    assert counts["predictions_by_group"]["column"] == "applicant_group"
    assert sum(s["predictions"]["classes"].values()) == s["rows"]


def test_auth_and_admin(shared_agent: AgentProcess) -> None:
    body = payloads()["dataframe_records"]
    assert shared_agent.post(body).status_code == 401
    assert shared_agent.post(body, headers={"authorization": "Bearer wrong-token-xxxx"}).status_code == 401
    assert shared_agent.post(body, headers={"authorization": TOKEN}).status_code == 401
    url = shared_agent.url
    assert httpx.post(url + "/admin/reload").status_code == 401
    assert httpx.post(url + "/admin/reload", headers=AUTH).status_code == 401  # client token is not admin
    r = httpx.post(url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200 and r.json()["status"] == "unchanged"
    assert httpx.get(url + "/admin/reload").status_code == 405
    assert httpx.get(url + "/nope").status_code == 404
    assert httpx.get(url + "/invocations").status_code == 405


def test_drain_and_resume(start_agent: Any) -> None:
    a = start_agent()
    adm = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx.post(a.url + "/admin/drain", headers=adm).json() == {"status": "draining"}
    h = httpx.get(a.url + "/health")
    assert h.status_code == 503 and h.json()["reason"] == "draining"
    assert a.post(payloads()["dataframe_records"]).status_code == 503
    assert httpx.post(a.url + "/admin/resume", headers=adm).status_code == 200
    assert httpx.get(a.url + "/health").status_code == 200
    assert a.post(payloads()["dataframe_records"]).status_code == 200


def test_admin_refused_without_admin_token(start_agent: Any) -> None:
    a = start_agent(admin=False)
    r = httpx.post(a.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 403 and "admin_token_file" in r.json()["message"]


def test_stats_without_profile_says_why(start_agent: Any, node: Any) -> None:
    node.switch("2")
    a = start_agent()
    assert a.post(payloads()["dataframe_split"]).status_code == 200
    s = httpx.get(a.url + "/stats").json()
    assert s["version"] == "2"
    assert s["drift"]["available"] is False and "reference sample" in s["drift"]["reason"]
    assert s["predictions"]["by_group"] == {}  # no group column known without a profile or config


# ---------------------------------------------------------------------------------------------------------
# bad input: always a 4xx naming the problem, never a 5xx, the process stays up
def _row(**over: Any) -> dict[str, Any]:
    r = _records()[0]
    r.update(over)
    return r


BAD: dict[str, tuple[bytes, int, str]] = {
    "malformed json": (b'{"dataframe_split": {', 400, "malformed JSON"),
    "not utf8": (b'{"inputs": "\xff\xfe"}', 400, "UTF-8"),
    "json list": (b"[1, 2, 3]", 400, "JSON object"),
    "no format key": (b'{"data": [[1]]}', 400, "exactly one of the keys"),
    "two format keys": (json.dumps({"inputs": [_row()], "instances": [_row()]}).encode(), 400, "exactly one"),
    "missing column": (json.dumps({"dataframe_records": [{k: v for k, v in _row().items() if k != "age"}]})
                       .encode(), 400, "'age'"),
    "wrong column names": (json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}).encode(),
                           400, "missing column"),
    "wrong type string for double": (json.dumps({"dataframe_records": [_row(income="lots")]}).encode(), 400,
                                     "'income' expects double"),
    "wrong type float for long": (json.dumps({"dataframe_records": [_row(age=30.5)]}).encode(), 400, "'age'"),
    "wrong type number for string": (json.dumps({"dataframe_records": [_row(employment=3)]}).encode(), 400,
                                     "'employment' expects string"),
    "nested value": (json.dumps({"dataframe_records": [_row(income=[1, 2])]}).encode(), 400, "'income'"),
    "nan": (b'{"dataframe_records": [' + json.dumps(_row()).replace('"income": ', '"income": NaN, "x": ')
            .encode() + b"]}", 400, "could not score"),
    "infinity": (b'{"dataframe_records": [' + json.dumps(_row()).replace('"income": ', '"income": Infinity, "x": ')
                 .encode() + b"]}", 400, "infinite"),
    "null long": (json.dumps({"dataframe_records": [_row(age=None)]}).encode(), 400, "missing value"),
    "empty records": (b'{"dataframe_records": []}', 400, "empty input"),
    "empty split": (json.dumps({"dataframe_split": {"columns": COLS, "data": []}}).encode(), 400, "empty input"),
    "empty inputs": (b'{"inputs": {}}', 400, "empty input"),
    "ragged rows": (json.dumps({"dataframe_split": {"columns": COLS, "data": [[1, 2]]}}).encode(), 400,
                    "row 0 has 2 values"),
    "split not object": (b'{"dataframe_split": [1, 2]}', 400, "dataframe_split"),
    "huge integer": (json.dumps({"dataframe_records": [_row(age=10**30)]}).encode(), 400, "out of"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_4xx_naming_the_problem(shared_agent: AgentProcess, case: str) -> None:
    raw, status, needle = BAD[case]
    r = shared_agent.post(None, raw=raw, headers=AUTH)
    assert r.status_code == status, (case, r.status_code, r.text)
    assert needle.lower() in r.json()["message"].lower(), r.json()["message"]
    assert httpx.get(shared_agent.url + "/health").status_code == 200


def test_wrong_content_type_is_415(shared_agent: AgentProcess) -> None:
    r = shared_agent.post(payloads()["inputs_records"], headers={**AUTH, "content-type": "text/csv"})
    assert r.status_code == 415 and "application/json" in r.json()["message"]


def test_ten_megabyte_body_is_413(shared_agent: AgentProcess) -> None:
    big = b'{"inputs": [' + b"1," * (5 * 1024 * 1024) + b"1]}"
    r = shared_agent.post(None, raw=big, headers=AUTH)
    assert r.status_code == 413 and "limit" in r.json()["message"]


def test_chunked_body_over_the_limit_is_413(shared_agent: AgentProcess) -> None:
    def gen() -> Any:
        for _ in range(100):
            yield b"1" * (100 * 1024)

    r = httpx.post(shared_agent.url + "/invocations", content=gen(), headers=AUTH, timeout=30)
    assert r.status_code == 413


def test_a_million_rows_is_413(shared_agent: AgentProcess) -> None:
    body = b'{"inputs": [' + b"[1]," * 999_999 + b"[1]]}"
    r = shared_agent.post(None, raw=body, headers=AUTH)
    assert r.status_code == 413 and "1000000" in r.json()["message"]


def test_body_that_never_finishes_times_out_with_408(shared_agent: AgentProcess) -> None:
    with socket.create_connection((shared_agent.address, shared_agent.port), timeout=10) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")
        data = b""
        while chunk := s.recv(4096):  # the agent closes the connection after its 408
            data += chunk
        assert data.startswith(b"HTTP/1.1 408"), data[:100]
        # the configured limit (tests/agent/conftest.py: request_timeout_s = 1.5) is what ended the wait
        assert b"request body not received within 1.5 s" in data, data
    assert httpx.get(shared_agent.url + "/health").status_code == 200


def test_errors_are_counted_and_logs_hold_no_request_data(shared_agent: AgentProcess,
                                                          shared_node: Any) -> None:
    secret = "very-secret-employment-value-xyz"
    shared_agent.post({"dataframe_records": [_row(employment=secret, income="also-secret-income")]}, headers=AUTH)
    shared_agent.post({"dataframe_records": [_row(employment=secret)]}, headers=AUTH)
    text = httpx.get(shared_agent.url + "/metrics").text
    assert 'modelfleet_agent_errors_total{endpoint="invocations",reason="bad_request"}' in text
    log = (shared_node.root / "log" / "agent.log").read_text()
    assert "serving credit-risk version 1" in log
    assert secret not in log and "also-secret" not in log
