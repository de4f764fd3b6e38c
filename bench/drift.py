"""Benchmark: drift statistics on counts (modelfleet) vs Evidently's DataDriftPreset vs scipy on raw samples.

Same data in one run: 50 features (40 numeric, 10 categorical), 100,000 reference rows and 100,000 current rows,
five features shifted (three numeric by 0.3 standard deviations, one numeric scaled by 1.25, one categorical with
8 % of a category the reference never had). Printed, side by side:

- Evidently's ``DataDriftPreset`` (legacy Report API, its default tests: Wasserstein / Jensen-Shannon above 1,000
  reference rows) in a separate virtual environment (Evidently wants pandas < 3; the venv is made under
  ``/tmp/modelfleet-bench-evidently`` on first use, never in the project's venv): wall time of ``Report.run``;
- scipy's per-feature tests on the raw samples with Evidently's choice (``wasserstein_distance`` normed /
  ``jensenshannon`` at 0.1): wall time;
- modelfleet: the profile (built once per release at deploy time, reported apart), counting the current rows on
  its bins (what the agents do, reported apart), and the statistics on the counts (``drift_verdict.evaluate``):
  wall time; the drifted features each found;
- merging 1,000 node snapshots of those 50 features (``/stats`` counts parsed into vectors and summed);
- the agent's counting cost: a real agent process with and without the release's profile, 2-row requests driven by
  wrk (2 threads, 16 connections, ``BENCH_DURATION_S`` s), alternated ``BENCH_DRIFT_ROUNDS`` (5) times each;
  throughput and, less sensitive to the other load of a shared machine, the agent's CPU time per request.

Goals (issue 16): statistics <= 0.5 s and >= 60x faster than Evidently with the same drifted features; merging
1,000 snapshots <= 50 ms; counting costs <= 5 % of the 2-row throughput.
Run: ``.venv/bin/python -m bench.drift`` (or ``make bench``); ``BENCH_DRIFT_SKIP=evidently,agent`` skips parts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
EVIDENTLY_VENV = Path(os.environ.get("BENCH_EVIDENTLY_VENV", "/tmp/modelfleet-bench-evidently"))
EVIDENTLY_REQUIREMENTS = ("evidently==0.7.*", "pandas<3")
ROWS = 100_000
NUMERIC, CATEGORICAL = 40, 10
SHIFTED = ("n00", "n01", "n02", "n03", "c00")
SKIP = set(filter(None, os.environ.get("BENCH_DRIFT_SKIP", "").split(",")))
ROUNDS = int(os.environ.get("BENCH_DRIFT_ROUNDS", "5"))

EVIDENTLY_SCRIPT = r"""
import json, sys, time, warnings
import pandas as pd
warnings.simplefilter("ignore")
from evidently.legacy.report import Report
from evidently.legacy.metric_preset import DataDriftPreset
from evidently.legacy.pipeline.column_mapping import ColumnMapping
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
mapping = ColumnMapping(numerical_features=[c for c in ref.columns if c.startswith("n")],
                        categorical_features=[c for c in ref.columns if c.startswith("c")])
t0 = time.perf_counter()
report = Report(metrics=[DataDriftPreset()])
report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
result = report.as_dict()
seconds = time.perf_counter() - t0
table = next(m["result"] for m in result["metrics"] if "drift_by_columns" in m["result"])
drifted = sorted(c for c, r in table["drift_by_columns"].items() if r["drift_detected"])
tests = sorted({r["stattest_name"] for r in table["drift_by_columns"].values()})
import evidently
print(json.dumps({"seconds": seconds, "drifted": drifted, "tests": tests, "version": evidently.__version__}))
"""


def make_data(seed: int = 16) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(shift: bool) -> pd.DataFrame:
        cols: dict[str, Any] = {}
        for i in range(NUMERIC):
            name = f"n{i:02d}"
            lognormal = i % 2 == 1
            values = (rng.lognormal(3.0 + i * 0.01, 0.5, ROWS) if lognormal
                      else rng.normal(10.0 * i, 1.0 + i * 0.1, ROWS))
            if shift and name in ("n00", "n01", "n02"):
                values = values + 0.3 * np.std(values)
            if shift and name == "n03":
                values = values * 1.25
            cols[name] = values
        for i in range(CATEGORICAL):
            cats = np.array([f"k{j}" for j in range(3 + i)], dtype=object)
            p = np.linspace(2.0, 1.0, cats.size)
            values = rng.choice(cats, ROWS, p=p / p.sum())
            if shift and i == 0:
                values[rng.random(ROWS) < 0.08] = "never-seen"
            cols[f"c{i:02d}"] = values
        return pd.DataFrame(cols)

    return frame(False), frame(True)


def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, tmp: Path) -> dict[str, Any]:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"drift: creating {EVIDENTLY_VENV} with {' '.join(EVIDENTLY_REQUIREMENTS)} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_REQUIREMENTS], check=True)
    ref.to_parquet(tmp / "ref.parquet")
    cur.to_parquet(tmp / "cur.parquet")
    script = tmp / "evidently_run.py"
    script.write_text(EVIDENTLY_SCRIPT)
    out = subprocess.run([str(python), str(script), str(tmp / "ref.parquet"), str(tmp / "cur.parquet")],
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_scipy(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[float, list[str]]:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    t0 = time.perf_counter()
    drifted = []
    for col in ref.columns:
        if col.startswith("n"):
            r, c = ref[col].to_numpy(), cur[col].to_numpy()
            value = wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)
        else:
            keys = sorted(set(ref[col].unique()) | set(cur[col].unique()))
            rc, cc = ref[col].value_counts(), cur[col].value_counts()
            value = float(jensenshannon([rc.get(k, 0) for k in keys], [cc.get(k, 0) for k in keys]))
        if value >= 0.1:
            drifted.append(col)
    return time.perf_counter() - t0, sorted(drifted)


def run_modelfleet(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    from modelfleet.core.drift import DriftCounter, ReferenceProfile
    from modelfleet.core.drift_counts import CountsLayout
    from modelfleet.core.drift_verdict import evaluate
    from modelfleet.core.monitor_policy import DriftPolicy

    t0 = time.perf_counter()
    profile = ReferenceProfile.build(ref)
    t1 = time.perf_counter()
    counter = DriftCounter(profile)
    for start in range(0, len(cur), 10_000):  # the agents count batch by batch
        counter.update(cur.iloc[start:start + 10_000])
    t2 = time.perf_counter()
    layout = CountsLayout.from_profile(profile)
    counts = layout.vector(counter.snapshot())
    t_first = time.perf_counter()
    evaluate(profile, counts, DriftPolicy())  # the first call also imports scipy.stats' distributions
    first = time.perf_counter() - t_first
    times = []
    report = None
    for _ in range(5):
        t3 = time.perf_counter()
        report = evaluate(profile, counts, DriftPolicy())
        times.append(time.perf_counter() - t3)
    assert report is not None
    return {"profile_s": t1 - t0, "count_s": t2 - t1, "stats_s": statistics.median(times), "first_s": first,
            "stats_max_s": max(times), "drifted": sorted(report.drifted),
            "tests": sorted({f.test for f in report.features}), "snapshot": counter.snapshot(), "layout": layout}


def run_merge(snapshot: dict[str, Any], layout: Any, nodes: int = 1000) -> tuple[float, float]:
    """(seconds to parse ``nodes`` /stats count snapshots into vectors and sum them, seconds of the sum alone),
    the median of three runs."""
    rng = np.random.default_rng(3)
    snaps = []
    for _ in range(nodes):  # each node's counts differ: a JSON round trip like a /stats answer
        s = json.loads(json.dumps(snapshot))
        for f in s["features"].values():
            f["counts"] = [int(c * rng.uniform(0.5, 1.5)) for c in f["counts"]]
        snaps.append(s)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        vectors = [layout.vector(s) for s in snaps]
        t1 = time.perf_counter()
        total = np.sum(np.stack(vectors), axis=0)
        t2 = time.perf_counter()
        assert total.shape == (layout.size,)
        runs.append((t2 - t0, t2 - t1))
    return sorted(runs)[1]


def run_agent_cost(tmp: Path) -> dict[str, Any]:
    import shutil

    import httpx
    import psutil

    from bench.agent_vs_mlflow import _free_port, _stop, _wait, _wrk, build_model
    from modelfleet.core.drift import ReferenceProfile

    if shutil.which("wrk") is None:
        return {"error": "wrk is not installed (apt-get install wrk)"}
    model_dir, frame, name = build_model(tmp)
    import mlflow.pyfunc

    preds = mlflow.pyfunc.load_model(str(model_dir)).predict(frame.head(2000))
    group = "applicant_group" if "applicant_group" in frame.columns else None
    profile = ReferenceProfile.build(frame.head(2000), preds, group_column=group)
    with_profile = tmp / "with-profile"
    shutil.copytree(model_dir, with_profile)
    (with_profile / "profile.json").write_text(profile.to_json())
    body = json.dumps({"dataframe_split": json.loads(frame.head(2).to_json(orient="split", index=False))}).encode()
    env = {**os.environ, "PYTHONPATH": str(REPO / "tui")}
    runs: dict[str, list[float]] = {"without": [], "with": []}
    cpu: dict[str, list[float]] = {"without": [], "with": []}  # agent CPU microseconds per request
    procs: dict[str, Any] = {}
    urls: dict[str, str] = {}
    try:
        for label, release, addr in (("without", model_dir, "127.0.50.210"), ("with", with_profile, "127.0.50.211")):
            port = _free_port(addr)
            procs[label] = subprocess.Popen(
                [str(Path(sys.executable).parent / "modelfleet-agent"), "--release", str(release), "--address", addr,
                 "--port", str(port), "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            urls[label] = f"http://{addr}:{port}"
            _wait(urls[label] + "/health", procs[label])
        stats = httpx.get(urls["with"] + "/stats", timeout=10).json()
        assert stats["drift"]["available"], "the agent with a profile does not count"
        for _ in range(ROUNDS):
            for label in ("without", "with"):
                proc = psutil.Process(procs[label].pid)
                before_cpu = sum(proc.cpu_times()[:2])
                before = httpx.get(urls[label] + "/stats", timeout=10).json()["requests"]
                runs[label].append(_wrk(urls[label], body, tmp)["rps"])
                served = httpx.get(urls[label] + "/stats", timeout=10).json()["requests"] - before
                cpu[label].append((sum(proc.cpu_times()[:2]) - before_cpu) / max(served, 1) * 1e6)
        counted = httpx.get(urls["with"] + "/stats", timeout=10).json()["drift"]["counts"]["rows"]
    finally:
        for proc in procs.values():
            _stop(proc)
    without, with_ = statistics.median(runs["without"]), statistics.median(runs["with"])
    cpu_without, cpu_with = statistics.median(cpu["without"]), statistics.median(cpu["with"])
    return {"model": name, "without": runs["without"], "with": runs["with"], "cost": 1.0 - with_ / without,
            "cpu_without": cpu["without"], "cpu_with": cpu["with"], "cpu_cost": cpu_with / cpu_without - 1.0,
            "counted_rows": counted}


def main() -> int:
    sys.path.insert(0, str(REPO / "tui"))
    print(f"drift: {NUMERIC} numeric + {CATEGORICAL} categorical features, {ROWS:,} reference and {ROWS:,} current "
          f"rows, shifted: {', '.join(SHIFTED)}; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')} UTC")
    ref, cur = make_data()
    mf = run_modelfleet(ref, cur)
    scipy_s, scipy_drifted = run_scipy(ref, cur)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmpname:
        tmp = Path(tmpname)
        ev = run_evidently(ref, cur, tmp) if "evidently" not in SKIP else None
        merge_s, sum_s = run_merge(mf["snapshot"], mf["layout"])
        agent = run_agent_cost(tmp) if "agent" not in SKIP else None
    print("| what | seconds | drifted features | tests |")
    print("|---|---|---|---|")
    if ev is not None:
        print(f"| Evidently {ev['version']} DataDriftPreset (Report.run + as_dict) | {ev['seconds']:.2f} | "
              f"{', '.join(ev['drifted'])} | {', '.join(ev['tests'])} |")
    print(f"| scipy on raw samples (Evidently's choice per feature) | {scipy_s:.3f} | {', '.join(scipy_drifted)} | "
          "wasserstein (normed), jensenshannon |")
    print(f"| modelfleet statistics on counts (median of 5; max {mf['stats_max_s']:.3f}; first call with scipy "
          f"imports {mf['first_s']:.2f}) | {mf['stats_s']:.3f} | "
          f"{', '.join(mf['drifted'])} | {', '.join(mf['tests'])} + ks/chisquare p-values |")
    print(f"| modelfleet: counting the {ROWS:,} current rows on the profile's bins (agents) | "
          f"{mf['count_s']:.3f} | | |")
    print(f"| modelfleet: building the profile from the reference (once, at deploy) | {mf['profile_s']:.3f} | | |")
    print(f"merging 1,000 node snapshots of 50 features: {merge_s * 1000:.1f} ms (of which the sum "
          f"{sum_s * 1000:.1f} ms; target <= 50 ms)")
    ok = mf["stats_s"] <= 0.5 and merge_s <= 0.05
    if ev is not None:
        speedup = ev["seconds"] / mf["stats_s"]
        same = ev["drifted"] == mf["drifted"]
        print(f"modelfleet vs Evidently: {speedup:.0f}x faster (target >= 60x); same drifted features: {same}")
        ok = ok and speedup >= 60 and same
    if agent is not None:
        if "error" in agent:
            print(f"agent counting cost: not measured: {agent['error']}")
        else:
            print(f"agent counting cost on 2-row requests ({agent['model']}), {ROUNDS} alternations: without profile "
                  f"{', '.join(f'{r:.0f}' for r in agent['without'])} req/s, with "
                  f"{', '.join(f'{r:.0f}' for r in agent['with'])} req/s (medians: cost {agent['cost'] * 100:.1f} %); "
                  f"agent CPU per request without {', '.join(f'{c:.0f}' for c in agent['cpu_without'])} us, with "
                  f"{', '.join(f'{c:.0f}' for c in agent['cpu_with'])} us (medians: cost "
                  f"{agent['cpu_cost'] * 100:.1f} %, target <= 5 %); {agent['counted_rows']} rows counted")
            ok = ok and agent["cpu_cost"] <= 0.05
    print(f"goals: {'met' if ok else 'NOT all met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
