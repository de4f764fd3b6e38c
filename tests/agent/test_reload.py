"""Zero-downtime reload: under continuous load, on SIGHUP and admin calls; broken releases are refused."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from typing import Any

import httpx

from tests.agent import modelkit
from tests.agent.conftest import ADMIN_TOKEN, Models, Node

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
ROWS = modelkit.make_frame(2, seed=5)
BODY = json.dumps({"dataframe_split": {"columns": list(ROWS.columns), "data": ROWS.values.tolist()}}).encode()


def _reload(url: str, **params: str) -> httpx.Response:
    return httpx.post(url + "/admin/reload", headers=ADMIN, params=params, timeout=60)


def test_reload_under_load_loses_no_request(start_agent: Any, node: Node, models: Models) -> None:
    a = start_agent()
    expected = {"1": [int(v) for v in models.model_v1.predict(ROWS)],
                "2": [int(v) for v in models.model_v2.predict(ROWS)]}
    stop = threading.Event()
    failures: list[str] = []
    seen: dict[str, int] = {"1": 0, "2": 0}

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post(a.url + "/invocations", content=BODY, headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                v = r.headers.get("x-model-version", "?")
                if r.status_code != 200 or v not in expected or r.json()["predictions"] != expected[v]:
                    failures.append(f"{r.status_code} {v} {r.text[:100]}")
                else:
                    seen[v] += 1

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        versions = []
        for i in range(5):
            time.sleep(0.3)
            target = "2" if i % 2 == 0 else "1"
            node.switch(target)
            r = _reload(a.url)
            assert r.status_code == 200 and r.json()["status"] == "switched", r.text
            versions.append(r.json()["version"])
            assert httpx.get(a.url + "/health").json()["version"] == target
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert versions == ["2", "1", "2", "1", "2"]
    assert failures == []
    assert seen["1"] > 0 and seen["2"] > 0


def test_sighup_reloads_and_stats_window_restarts(start_agent: Any, node: Node) -> None:
    a = start_agent()
    assert a.post(None, raw=BODY).status_code == 200
    before = httpx.get(a.url + "/stats").json()
    node.switch("2")
    a.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while httpx.get(a.url + "/health").json()["version"] != "2":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    after = httpx.get(a.url + "/stats").json()
    assert after["window_start"] > before["window_start"] and after["requests"] == 0
    assert httpx.get(a.url + "/version").json()["last_reload"]["source"] == "SIGHUP"


def _broken(node: Node, models: Models, name: str, kind: str) -> None:
    rel = node.release(name)
    if kind == "wrong probe":
        probe = json.loads(json.dumps(models.probe_v2))
        probe["expected"]["predictions"] = [1 - p for p in probe["expected"]["predictions"]]
        modelkit.write_release(rel, models.dir_v2, name, probe=probe)
    elif kind == "corrupt file":
        modelkit.write_release(rel, models.dir_v2, name, probe=models.probe_v2)
        (rel / "model" / "model.skops").write_bytes(b"\x00garbage" * 100)
    elif kind == "load error":
        modelkit.write_release(rel, models.dir_v2, name, probe=models.probe_v2)
        mlmodel = (rel / "model" / "MLmodel").read_text().replace("model.skops", "missing.skops")
        (rel / "model" / "MLmodel").write_text(mlmodel)
    elif kind == "bad manifest":
        modelkit.write_release(rel, models.dir_v2, name, probe=models.probe_v2)
        (rel / "manifest.json").write_text("{not json")
    elif kind == "probe refused":
        probe = {"request": {"dataframe_records": [{"nope": 1}]}, "expected": {"predictions": [0]}}
        modelkit.write_release(rel, models.dir_v2, name, probe=probe)
    elif kind == "no model":
        modelkit.write_release(rel, None, name, probe=None)
    else:
        raise AssertionError(kind)


def test_broken_releases_are_refused_and_the_old_one_keeps_serving(start_agent: Any, node: Node,
                                                                   models: Models) -> None:
    a = start_agent()
    kinds = ["wrong probe", "corrupt file", "load error", "bad manifest", "probe refused", "no model"]
    for i, kind in enumerate(kinds):
        name = f"broken{i}"
        _broken(node, models, name, kind)
        node.switch(name)
        r = _reload(a.url)
        assert r.status_code == 409, (kind, r.text)
        report = r.json()
        assert report["status"] == "refused" and report["serving"] == "1", report
        h = httpx.get(a.url + "/health").json()
        assert h["status"] == "ok" and h["version"] == "1"
        ok = a.post(None, raw=BODY)
        assert ok.status_code == 200 and ok.headers["x-model-version"] == "1"
    assert 'modelfleet_agent_reloads_total{outcome="refused"} 6.0' in httpx.get(a.url + "/metrics").text
    node.switch("2")
    assert _reload(a.url).json()["version"] == "2"


def test_agent_without_a_loadable_release_stays_up_and_says_why(start_agent: Any, node: Node,
                                                                models: Models) -> None:
    _broken(node, models, "bad", "corrupt file")
    node.switch("bad")
    from tests.agent.conftest import AgentProcess, free_port, next_address, write_config

    address = next_address()
    port = free_port(address)
    p = AgentProcess(write_config(node, address, port), address, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                h = httpx.get(p.url + "/health")
                if "no release loaded" in h.json()["reason"]:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert h.status_code == 503 and "failed to load" in h.json()["reason"]
        assert p.post(None, raw=BODY).status_code == 503
        node.switch("1")
        assert _reload(p.url).status_code == 200
        assert p.post(None, raw=BODY).status_code == 200
    finally:
        p.stop()


def test_check_release_cli(node: Node, models: Models, tmp_path: Any) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {"PYTHONPATH": str(REPO_ROOT / "tui"), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "modelfleet.agent.main", "check-release", str(node.release("1")),
                         "--json"], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert ok.returncode == 0, ok.stderr
    verdict = json.loads(ok.stdout)
    assert verdict["ok"] and verdict["version"] == "1" and "probe ok" in verdict["verdict"]
    _broken(node, models, "bad", "wrong probe")
    bad = subprocess.run([sys.executable, "-m", "modelfleet.agent.main", "check-release", str(node.release("bad"))],
                         capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert bad.returncode == 1 and bad.stdout.startswith("REFUSED") and "expected" in bad.stdout
    shutil.rmtree(node.release("bad"))
