"""Benchmark: ``predict`` of the demo champion on a 2-row request, on one thread (as an edge agent runs it).

The demo ``credit-risk`` versions are trained as ``modelfleet demo seed`` does (6,000 loans here); each one's
median ``predict`` time on 2 rows is measured with ``demo.train.predict_latency_ms`` (one BLAS/OpenMP thread, 300
repeats). Anchor, in the same run: the same call with the machine's default thread pools, where OpenMP's thread
start-up dominates small batches. Goal: the champion under 20 ms (the bound tests/unit/test_demo.py used to assert;
about 0.5 ms measured when it was written).

Run: ``.venv/bin/python -m bench.demo_predict``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

GOAL_MS = 20.0


def _default_threads_ms(model: object, rows: object, repeat: int = 300) -> float:
    predict = model.predict  # type: ignore[attr-defined]
    predict(rows)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        predict(rows)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000.0


def main() -> int:
    from modelfleet.demo.data import INPUT_COLUMNS, make_loans, split
    from modelfleet.demo.train import VERSIONS, predict_latency_ms, train_version

    train, valid, test = split(make_loans(6_000))
    rows = test[list(INPUT_COLUMNS)].head(2)
    print(f"demo predict, 2 rows: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    worst = 0
    for spec in VERSIONS:
        model = train_version(spec, train, valid, test).model
        one = predict_latency_ms(model, rows)
        anchor = _default_threads_ms(model, rows)
        champion = " (champion)" if spec.key == "v2" else ""
        print(f"  {spec.key}{champion}: {one:.3f} ms on one thread; anchor, default threads: {anchor:.3f} ms")
        if spec.key == "v2" and one >= GOAL_MS:
            worst = 1
    print(f"  goal: champion under {GOAL_MS:g} ms: {'met' if worst == 0 else 'missed'}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
