"""The agent and ``mlflow models serve`` answer the same payloads with the same predictions (both run here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import AgentProcess, Models, free_port, next_address
from tests.agent.modelkit import make_frame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    address = next_address()
    port = free_port(address)
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    assert mlflow_bin.exists(), f"{mlflow_bin} missing: mlflow is a dependency; run `make test` to install it"
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(tmp_path_factory.mktemp("mlruns").as_uri()),
           "PATH": f"{mlflow_bin.parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(mlflow_bin), "models", "serve", "-m", str(models.dir_v1), "--env-manager",
                             "local", "-h", address, "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://{address}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.2)
        yield url
    finally:
        # mlflow serve runs uvicorn workers in its own session: stop that whole group (ours alone)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def _payloads() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for seed, n in ((1, 1), (2, 2), (3, 17), (4, 100)):
        df = make_frame(n, seed=seed)
        recs = json.loads(df.to_json(orient="records"))
        cols = list(df.columns)
        out += [
            {"dataframe_split": json.loads(df.to_json(orient="split", index=False))},
            {"dataframe_records": recs},
            {"instances": recs},
            {"inputs": {c: [r[c] for r in recs] for c in cols}},
        ]
    # unseen category, reordered and extra columns, integral floats for a long column
    odd = make_frame(3, seed=9)
    recs = json.loads(odd.to_json(orient="records"))
    recs[0]["employment"] = "astronaut"
    recs[1]["extra"] = 1.5
    out.append({"dataframe_records": [dict(reversed(list(r.items()))) for r in recs]})
    out.append({"dataframe_split": {"columns": ["applicant_group", *odd.columns[:-1]],
                                    "data": [[r["applicant_group"], *[r[c] for c in odd.columns[:-1]]]
                                             for r in recs]}})
    return out


def test_predictions_equal_mlflow_models_serve(mlflow_server: str, shared_agent: AgentProcess) -> None:
    from tests.agent.conftest import TOKEN

    for payload in _payloads():
        ours = shared_agent.post(payload, headers={"authorization": f"Bearer {TOKEN}"})
        theirs = httpx.post(mlflow_server + "/invocations", json=payload, timeout=60)
        assert theirs.status_code == 200, theirs.text[:500]
        assert ours.status_code == 200, ours.text
        assert ours.json() == theirs.json(), next(iter(payload))


def test_mlflow_cli_present() -> None:
    assert shutil.which("mlflow", path=str(Path(sys.executable).parent)) is not None
