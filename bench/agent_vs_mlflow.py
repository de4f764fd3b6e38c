"""Benchmark: the modelfleet agent vs ``mlflow models serve --env-manager local`` on the same model and load.

Both servers serve the demo ``credit-risk`` model (champion spec v2, trained and saved the way ``modelfleet demo
seed`` does; falls back to the agent tests' small pipeline when the demo package is absent), one process each,
on loopback (127.0.50.200/201). wrk (Debian) drives each with the same load: 2 threads, 16 connections, 10 s,
2-row and 100-row ``dataframe_split`` payloads. Printed: requests/s, p50, p99 and the agent/MLflow ratios, plus
the cold start (process start to ``/health`` 200) of both.

Goal (issue 3): on 2-row requests at least 3x MLflow's throughput and at most a third of its p99.
Run: ``.venv/bin/python -m bench.agent_vs_mlflow`` (or ``make bench``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "10"))
CONNECTIONS = 16


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def build_model(root: Path) -> tuple[Path, Any, str]:
    """Save the demo champion (or the test pipeline) as an MLflow model dir; return it, a frame, its name."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import cloudpickle

            import modelfleet.demo.compact as compact
            from modelfleet.demo.data import INPUT_COLUMNS, make_loans, split
            from modelfleet.demo.train import VERSIONS, train_version

            train, valid, test = split(make_loans(20_000))
            trained = train_version(VERSIONS[1], train, valid, test)
            frame = test[list(INPUT_COLUMNS)].reset_index(drop=True)
            model, name = trained.model, "demo credit-risk v2 (champion)"
            cloudpickle.register_pickle_by_value(compact)
            try:
                mlflow.sklearn.save_model(model, str(root / "model"), serialization_format="cloudpickle",
                                          signature=infer_signature(frame.head(50), model.predict(frame.head(50))),
                                          input_example=frame.head(3))
            finally:
                cloudpickle.unregister_pickle_by_value(compact)
        except ImportError:
            sys.path.insert(0, str(REPO))
            from tests.agent import modelkit

            modelkit.save_mlflow_model(root / "model")
            frame, name = modelkit.make_frame(1000, seed=4), "test pipeline (demo package absent)"
    return root / "model", frame, name


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _wrk(url: str, body: bytes, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(body.decode())}\n")
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency", "-s", str(script),
                          url + "/invocations"], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no {label}% in wrk output:\n{out}")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99"), "non_2xx": float(errors.group(1)) if errors else 0}


def main() -> int:
    if shutil.which("wrk") is None:
        print("agent_vs_mlflow: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    import httpx

    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmpname:
        tmp = Path(tmpname)
        model_dir, frame, model_name = build_model(tmp)
        payloads = {n: json.dumps({"dataframe_split": json.loads(frame.head(n).to_json(orient="split",
                                                                                       index=False))}).encode()
                    for n in (2, 100)}
        env = {**os.environ, "PYTHONPATH": str(REPO / "tui"), "MLFLOW_TRACKING_URI": (tmp / "mlruns").as_uri(),
               "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        a_addr, m_addr = "127.0.50.200", "127.0.50.201"
        a_port, m_port = _free_port(a_addr), _free_port(m_addr)
        agent = subprocess.Popen([str(BIN / "modelfleet-agent"), "--release", str(model_dir), "--address", a_addr,
                                  "--port", str(a_port), "--log-level", "WARNING"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        mlf = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
                                "-h", m_addr, "-p", str(m_port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        results: dict[str, dict[int, dict[str, float]]] = {}
        try:
            a_url, m_url = f"http://{a_addr}:{a_port}", f"http://{m_addr}:{m_port}"
            cold = {"agent": _wait(a_url + "/health", agent), "mlflow": _wait(m_url + "/ping", mlf)}
            for n, body in payloads.items():  # same answers before measuring
                a = httpx.post(a_url + "/invocations", content=body, headers={"content-type": "application/json"})
                m = httpx.post(m_url + "/invocations", content=body, headers={"content-type": "application/json"})
                assert a.json() == m.json(), f"{n}-row predictions differ"
            for label, url in (("agent", a_url), ("mlflow", m_url)):
                results[label] = {n: _wrk(url, body, tmp) for n, body in payloads.items()}
        finally:
            _stop(agent)
            _stop(mlf)

    print(f"agent_vs_mlflow: {model_name}; wrk -t2 -c{CONNECTIONS} -d{DURATION_S}s; "
          f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
    print(f"cold start to ready: agent {cold['agent']:.2f} s, mlflow {cold['mlflow']:.2f} s (target agent < 1.5 s)")
    print("| rows | server | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for n in payloads:
        for label in ("agent", "mlflow"):
            r = results[label][n]
            print(f"| {n} | {label} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
        a, m = results["agent"][n], results["mlflow"][n]
        print(f"| {n} | agent/mlflow | {a['rps'] / m['rps']:.2f}x | {a['p50_ms'] / m['p50_ms']:.2f} | "
              f"{a['p99_ms'] / m['p99_ms']:.2f} |")
    a2, m2 = results["agent"][2], results["mlflow"][2]
    ok = a2["rps"] >= 3 * m2["rps"] and a2["p99_ms"] <= m2["p99_ms"] / 3
    print(f"goal on 2-row requests (>= 3x throughput, <= 1/3 p99): {'met' if ok else 'NOT met'}")
    bad = {k: v[n]["non_2xx"] for k, v in results.items() for n in v if v[n]["non_2xx"]}
    if bad:
        print(f"non-2xx responses: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
