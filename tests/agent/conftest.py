"""Fixtures for the agent tests: two model versions, release directories, agent processes on 127.0.50.x."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.core.drift import ReferenceProfile
from tests.agent import modelkit
from tests.conftest import REPO_ROOT

_ADDRESSES = itertools.count(2)
ADMIN_TOKEN = "admin-token-0123456789"
TOKEN = "client-token-0123456789"


def next_address() -> str:
    """A fresh loopback address in this suite's range (others use other prefixes): 127.0.50.x, 127.0.51.x in
    pytest-xdist's worker gw1 and so on, so two workers never bind the same address and port."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return f"127.0.{50 + worker % 10}.{next(_ADDRESSES) % 250 + 2}"


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@dataclass
class Models:
    dir_v1: Path
    dir_v2: Path
    model_v1: Any
    model_v2: Any
    profile_v1: dict[str, Any]
    probe_v1: dict[str, Any]
    probe_v2: dict[str, Any]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    import warnings

    root = tmp_path_factory.mktemp("models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m1 = modelkit.save_mlflow_model(root / "v1", c=1.0, seed=0)
        m2 = modelkit.save_mlflow_model(root / "v2", c=0.05, seed=3)
    ref = modelkit.make_frame(800, seed=11)
    profile = ReferenceProfile.build(ref, m1.predict(ref), group_column="applicant_group",
                                     model="credit-risk", version="1").to_dict()
    probe_rows = modelkit.make_frame(4, seed=21)
    return Models(root / "v1", root / "v2", m1, m2, profile, modelkit.probe_for(m1, probe_rows),
                  modelkit.probe_for(m2, probe_rows))


@dataclass
class Node:
    """A node root with models/credit-risk/{releases/, current} and etc/ token files."""

    root: Path

    @property
    def model_root(self) -> Path:
        return self.root / "models" / "credit-risk"

    @property
    def current(self) -> Path:
        return self.model_root / "current"

    def release(self, name: str) -> Path:
        return self.model_root / "releases" / name

    def switch(self, name: str) -> None:
        tmp = self.model_root / ".current.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(Path("releases") / name)
        os.replace(tmp, self.current)


def make_node(root: Path, models: Models) -> Node:
    n = Node(root)
    modelkit.write_release(n.release("1"), models.dir_v1, "1", probe=models.probe_v1, profile=models.profile_v1)
    modelkit.write_release(n.release("2"), models.dir_v2, "2", probe=models.probe_v2)
    (n.root / "etc").mkdir(parents=True)
    (n.root / "etc" / "admin.token").write_text(ADMIN_TOKEN + "\n")
    (n.root / "etc" / "client.token").write_text(TOKEN + "\n")
    n.switch("1")
    return n


@pytest.fixture
def node(tmp_path: Path, models: Models) -> Node:
    return make_node(tmp_path / "node", models)


def write_config(node: Node, address: str, port: int, *, token: bool = False, admin: bool = True,
                 extra: str = "") -> Path:
    lines = [
        "[server]", f'address = "{address}"', f"port = {port}",
        "[model]", 'name = "credit-risk"', f'current = "{node.current}"',
        "[auth]",
    ]
    if admin:
        lines.append(f'admin_token_file = "{node.root / "etc" / "admin.token"}"')
    if token:
        lines.append(f'token_file = "{node.root / "etc" / "client.token"}"')
    lines += ["[limits]", "max_body_bytes = 8388608", "max_rows = 10000", "request_timeout_s = 1.5",
              "[log]", f'path = "{node.root / "log" / "agent.log"}"']
    cfg = node.root / "etc" / "agent.toml"
    cfg.write_text("\n".join(lines) + "\n" + extra)
    return cfg


class AgentProcess:
    """A real modelfleet-agent process; stopped (and reaped) by the fixture."""

    def __init__(self, config: Path, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self.url = f"http://{address}:{port}"
        self.started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tui")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelfleet.agent.main", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
        )
        self.ready_seconds: float | None = None

    def wait_ready(self, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"agent exited with {self.proc.returncode}: {out}")
            try:
                r = httpx.get(self.url + "/health", timeout=1.0)
                if r.status_code == 200:
                    self.ready_seconds = time.perf_counter() - self.started
                    return self.ready_seconds
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise AssertionError("agent did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def post(self, body: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None,
             timeout: float = 30.0) -> httpx.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        h = {"content-type": "application/json", **(headers or {})}
        return httpx.post(self.url + "/invocations", content=data, headers=h, timeout=timeout)


def launch(node: Node, **kw: Any) -> AgentProcess:
    address = next_address()
    port = free_port(address)
    cfg = write_config(node, address, port, **kw)
    p = AgentProcess(cfg, address, port)
    try:
        p.wait_ready()
    except BaseException:
        p.stop()
        raise
    return p


@pytest.fixture
def start_agent(node: Node) -> Iterator[Any]:
    procs: list[AgentProcess] = []

    def start(**kw: Any) -> AgentProcess:
        p = launch(node, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Node:
    return make_node(tmp_path_factory.mktemp("shared") / "node", models)


@pytest.fixture(scope="module")
def shared_agent(shared_node: Node) -> Iterator[AgentProcess]:
    """One agent (with a client token) for the read-only endpoint tests of a module."""
    p = launch(shared_node, token=True)
    yield p
    p.stop()


@pytest.fixture
def agent(start_agent: Any) -> AgentProcess:
    return start_agent()
