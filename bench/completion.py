"""Benchmark: the latency of one shell TAB (``modelfleet __complete``), the way a shell runs it.

A project with the demo registry (the embedded SQLite one, seeded once) and a 200-node inventory; each case runs
the installed ``modelfleet __complete bash ...`` as a fresh process RUNS times and keeps the wall time. Cases:
a command name (argparse tree only), a model reference (registry read), a node name and a ``--limit`` term
(inventory read). Anchors, in the same run: the bare interpreter (``python -c pass``) and ``modelfleet
--version`` (the CLI's own start), which no TAB can go under.

Goal (issue 19): a TAB answers in well under 300 ms on this machine (a pause a typist notices), i.e. within about
100 ms of ``modelfleet --version``. Run: ``.venv/bin/python -m bench.completion``.
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

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
NODES = 200
WORDBREAKS = " \t\n\"'@><=;|&(:"
CASES = {
    "command": "modelfleet de",
    "model ref": "modelfleet deploy credit-risk@ch",
    "node": "modelfleet describe node edge-cpu-1",
    "--limit term": "modelfleet deploy credit-risk@champion --limit edge_cpu,edge-arm-0",
}


def _time(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _inventory(path: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.unit.cli_support import write_inventory

    nodes = {f"edge-{c}-{i:02d}": (c, f"127.0.{k}.{i}") for k, c in enumerate(("cpu", "gpu", "arm"), start=40)
             for i in range(1, NODES // 3 + 2)}
    return write_inventory(path, dict(list(nodes.items())[:NODES]), agent_port=8080)


def main() -> int:
    sys.path.insert(0, str(REPO))
    from tests.unit.registry_support import seeded_project

    project = seeded_project()[0]
    with tempfile.TemporaryDirectory(prefix="bench-complete-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
        env["MODELFLEET_FLEET_INVENTORY"] = str(_inventory(Path(tmp) / "inventory.yml"))
        modelfleet = str(BIN / "modelfleet")
        runs: dict[str, list[float]] = {"anchor: python -c pass": [], "anchor: modelfleet --version": []}
        runs.update({name: [] for name in CASES})
        for _ in range(RUNS):  # interleaved, so a busy moment hits every case alike
            runs["anchor: python -c pass"].append(_time([sys.executable, "-c", "pass"], project, env))
            runs["anchor: modelfleet --version"].append(_time([modelfleet, "--version"], project, env))
            for name, line in CASES.items():
                runs[name].append(_time([modelfleet, "__complete", "bash", WORDBREAKS, line], project, env))
    load = os.getloadavg()[0]
    print(f"shell completion: {RUNS} runs per case on {platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}; "
          f"{NODES}-node inventory, demo registry (embedded SQLite)")
    for name, times in runs.items():
        ms = sorted(t * 1000 for t in times)
        print(f"  {name:<30} min {ms[0]:6.1f} ms  median {statistics.median(ms):6.1f} ms  max {ms[-1]:6.1f} ms")
    worst = max(statistics.median(runs[name]) for name in CASES) * 1000
    print(f"  slowest case median {worst:.1f} ms (goal < 300 ms)")
    return 0 if worst < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
