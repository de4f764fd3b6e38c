"""Benchmark: the agent's cold start (process start to ``/health`` 200) on the demo champion, started alone.

The demo ``credit-risk`` champion (v2) is saved the way ``modelfleet demo seed`` does (bench.agent_vs_mlflow's
``build_model``); ``modelfleet-agent --release`` is then started RUNS times, one after the other, on loopback
(127.0.50.202), each time a fresh process, and stopped once ``/health`` answers 200. The anchor, in the same run,
is a bare interpreter importing what every scikit-learn model needs (numpy, pandas, scikit-learn): the floor
that no Python model server on this machine goes under.

Goal (issue 3): cold start to ready under 1.5 s. Run: ``.venv/bin/python -m bench.agent_cold_start``.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.agent_vs_mlflow import BIN, REPO, _free_port, _stop, _wait, build_model

RUNS = int(os.environ.get("BENCH_RUNS", "7"))
ADDRESS = "127.0.50.202"


def _import_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, pandas, sklearn.linear_model, sklearn.pipeline"],
                   check=True)
    return time.perf_counter() - started


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmpname:
        model_dir, _frame, name = build_model(Path(tmpname))
        env = {**os.environ, "PYTHONPATH": str(REPO / "tui")}
        agent_s: list[float] = []
        floor_s: list[float] = []
        for _ in range(RUNS):
            floor_s.append(_import_floor())
            port = _free_port(ADDRESS)
            proc = subprocess.Popen([str(BIN / "modelfleet-agent"), "--release", str(model_dir), "--address", ADDRESS,
                                     "--port", str(port), "--log-level", "WARNING"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                agent_s.append(_wait(f"http://{ADDRESS}:{port}/health", proc))
            finally:
                _stop(proc)
    load = os.getloadavg()[0]
    print(f"agent cold start, {name}: {RUNS} runs on {platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"  agent to /health 200: min {min(agent_s):.2f} s, median {statistics.median(agent_s):.2f} s, "
          f"max {max(agent_s):.2f} s (target < 1.5 s)")
    print(f"  anchor, import numpy+pandas+sklearn: min {min(floor_s):.2f} s, median {statistics.median(floor_s):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
