"""The registry against a live ``mlflow server`` on loopback (127.0.60.1), and unreachable servers failing fast.

Starts one server per module (SQLite backend, proxied artifact store in a temp folder), seeds the demo over
HTTP and runs the same checks as the embedded-registry tests; the server is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.cli import main
from modelfleet.core.artifact_cache import tree_digest
from modelfleet.core.errors import RegistryUnavailable, VersionNotFound
from modelfleet.core.registry import Registry, read_input_example
from modelfleet.demo import GROUP_COLUMN
from tests.unit.registry_support import SEED_ROWS, make_settings, record_connects

pytestmark = pytest.mark.integration

HOST = "127.0.60.1"
DOWN_HOST = "127.0.60.2"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, deadline_s: float = 180.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {url} not healthy after {deadline_s}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port(HOST)
    url = f"http://{HOST}:{port}"
    log = root / "server.log"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--host", HOST, "--port", str(port), "--workers", "1", "--allowed-hosts", f"{HOST},{HOST}:{port}",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def seeded_server(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from modelfleet.demo.seed import seed

    project = tmp_path_factory.mktemp("server-project")
    settings = make_settings(project, MODELFLEET_REGISTRY_TRACKING_URI=server)
    first = seed(settings, rows=SEED_ROWS)
    second = seed(settings, rows=SEED_ROWS)
    return {"url": server, "project": project, "first": first, "second": second,
            "artifacts": list(Path(str(tmp_path_factory.getbasetemp())).glob("mlflow-server*/artifacts"))}


@pytest.fixture
def registry(seeded_server: dict[str, Any], tmp_path: Path) -> Registry:
    return Registry(
        make_settings(
            seeded_server["project"],
            MODELFLEET_REGISTRY_TRACKING_URI=seeded_server["url"],
            MODELFLEET_REGISTRY_CACHE_DIR=str(tmp_path / "cache"),
            MODELFLEET_REGISTRY_PAGE_SIZE="2",
        )
    )


def test_seed_over_http_is_idempotent(seeded_server: dict[str, Any]) -> None:
    assert seeded_server["first"].created == {"v1": 1, "v2": 2, "v3": 3}
    assert not seeded_server["second"].changed


def test_aliases_resolve_and_versions_paginate(registry: Registry) -> None:
    assert registry.resolve("credit-risk@champion").version == 2
    assert registry.resolve("credit-risk@challenger").version == 3
    assert registry.resolve("credit-risk@latest").version == 3
    versions = registry.list_versions("credit-risk")  # page size 2: two pages
    assert [v.version for v in versions] == [3, 2, 1]
    assert {"auc", "fpr_gap", "ece"} <= set(versions[0].metrics)
    with pytest.raises(VersionNotFound, match="no alias 'gold'"):
        registry.resolve("credit-risk@gold")


def test_pin_over_http_digest_matches_server_store_and_survives_alias_move(
    registry: Registry, seeded_server: dict[str, Any]
) -> None:
    pinned = registry.pin("credit-risk@champion")
    assert pinned.version == 2 and not pinned.cached
    assert tree_digest(pinned.path) == pinned.digest
    stored = {tree_digest(p.parent) for root in seeded_server["artifacts"] for p in root.rglob("MLmodel")}
    assert pinned.digest in stored
    assert registry.pin("credit-risk/2").cached
    try:
        registry.set_alias("credit-risk", "champion", 1)
        assert registry.resolve("credit-risk@champion").version == 1
        assert pinned.version == 2 and tree_digest(registry.fetch(pinned)) == pinned.digest
    finally:
        registry.set_alias("credit-risk", "champion", 2)
    assert read_input_example(pinned.path)["columns"][-1] == GROUP_COLUMN
    sample = registry.load_reference_sample("credit-risk", 2)
    assert GROUP_COLUMN in sample.columns and len(sample) > 100


def _env(monkeypatch: pytest.MonkeyPatch, project: Path, uri: str, timeout: str = "2") -> None:
    for key in [k for k in os.environ if k.startswith("MODELFLEET_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(project)
    monkeypatch.setenv("MODELFLEET_REGISTRY_TRACKING_URI", uri)
    monkeypatch.setenv("MODELFLEET_REGISTRY_TIMEOUT_S", timeout)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("modelfleet: ") and len(err) <= 2 and "Traceback" not in "".join(err)
    return err[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["registry", "show", "nope@champion"], "no registered model named 'nope'"),
        (["registry", "show", "credit-risk@gold"], "no alias 'gold'"),
        (["registry", "show", "credit-risk@@x"], "more than one '@'"),
        (["registry", "versions", "nope"], "no registered model named 'nope'"),
    ],
)
def test_cli_bad_input_over_http(
    seeded_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], fragment: str,
) -> None:
    _env(monkeypatch, seeded_server["project"], seeded_server["url"])
    assert main(argv) == 2
    assert fragment in _error_line(capsys)


def test_cli_show_over_http(
    seeded_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, seeded_server["project"], seeded_server["url"])
    assert main(["registry", "show", "credit-risk@champion", "--pin"]) == 0
    out = capsys.readouterr().out
    assert "version" in out and "sha256:" in out


def test_closed_port_fails_fast_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port(DOWN_HOST)
    make_settings(tmp_path)
    _env(monkeypatch, tmp_path, f"http://{DOWN_HOST}:{port}")
    connects = record_connects(monkeypatch)
    assert main(["registry", "show", "credit-risk@champion"]) == 2
    # one attempt bounded by registry.timeout_s, no retries: see test_registry.py's twin
    assert [address for address, _ in connects] == [(DOWN_HOST, port)]
    line = _error_line(capsys)
    assert "unreachable" in line and f"{DOWN_HOST}:{port}" in line


def test_silent_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    """A server that reads requests and never answers: RegistryUnavailable after one request, not a retry loop.

    The server counts the HTTP requests it receives. MLflow's client retries a timed-out request with backoff
    by default (minutes of waiting); the registry turns that off, so exactly one request arrives, and the client
    gives up on it (closes its connection) after its read timeout, ``registry.timeout_s``. Checked against a
    mutation: with MLFLOW_HTTP_REQUEST_MAX_RETRIES=2 in core/registry.py this test fails (3 requests).
    """
    requests: list[bytes] = []

    def serve(listener: socket.socket) -> None:
        # connections are handled in the order they came, so the test's own "stop" comes after every request
        # the client made, retries included
        while True:
            conn, _ = listener.accept()
            with conn:
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := conn.recv(65536):
                        data += chunk
                        if data == b"stop":
                            return
                requests.extend(line for line in data.split(b"\r\n") if b" HTTP/1." in line)

    with socket.socket() as listener:
        listener.bind((DOWN_HOST, 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        server = threading.Thread(target=serve, args=(listener,), daemon=True)
        server.start()
        settings = make_settings(
            tmp_path, MODELFLEET_REGISTRY_TRACKING_URI=f"http://{DOWN_HOST}:{port}", MODELFLEET_REGISTRY_TIMEOUT_S="1"
        )
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            Registry(settings).list_models()
        with socket.create_connection((DOWN_HOST, port)) as stop:
            stop.sendall(b"stop")
            server.join(60)
        assert not server.is_alive(), "the client still held a connection to the silent server"
    assert len(requests) == 1, requests


def test_shell_completion_reads_the_server_over_rest(seeded_server: dict[str, Any], tmp_path: Path) -> None:
    """`modelfleet __complete` asks the tracking server's REST API (no MLflow import) and keeps the answer."""
    import json

    from tests.unit.cli_support import run

    env = {"MODELFLEET_REGISTRY_TRACKING_URI": seeded_server["url"], "MODELFLEET_PATHS_STATE_DIR": str(tmp_path)}
    proc = run(tmp_path, "__complete", "bash", " =:", "modelfleet deploy cr", **env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == ["credit-risk@challenger", "credit-risk@champion", "credit-risk@latest",
                                        "credit-risk/3", "credit-risk/2", "credit-risk/1"]
    kept = json.loads((tmp_path / "completion-cache.json").read_text(encoding="utf-8"))
    assert kept["uri"] == seeded_server["url"]
    assert kept["entries"] == [{"name": "credit-risk", "aliases": {"challenger": 3, "champion": 2},
                                "versions": [3, 2, 1]}]
