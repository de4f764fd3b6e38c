"""Benchmark: the agent's memory under a million scoring requests (the soak that used to run in the test suite).

The agent's ASGI app is driven in-process (tests/agent/soak.py: waves of 2,000 concurrent requests, one in 500
malformed, ``/stats`` and ``/metrics`` after each wave) after 10 warm-up waves. Figures: RSS growth over
BENCH_REQUESTS requests (default 1,000,000; goal from issue 3: under 8 MB), and side by side in the same run, the
anchor: the same soak over 20,000 requests with tracemalloc on, as tests/agent/test_memory.py measures it (Python
heap growth, bytes per request). A leak grows with the request count; a clean agent's growth does not.

Run: ``.venv/bin/python -m bench.agent_memory`` (about 5-10 minutes on 2 cores).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000000"))
ANCHOR_REQUESTS = 20_000
GOAL_MB = 8.0


def _node(root: Path) -> Path:
    """A node root with release 1 of the agent tests' model current; returns its ``current`` link."""
    from tests.agent import modelkit
    from tests.agent.conftest import Models, make_node

    from modelfleet.core.drift import ReferenceProfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m1 = modelkit.save_mlflow_model(root / "v1", c=1.0, seed=0)
        m2 = modelkit.save_mlflow_model(root / "v2", c=0.05, seed=3)
    ref = modelkit.make_frame(800, seed=11)
    profile = ReferenceProfile.build(ref, m1.predict(ref), group_column="applicant_group", model="credit-risk",
                                     version="1").to_dict()
    rows = modelkit.make_frame(4, seed=21)
    models = Models(root / "v1", root / "v2", m1, m2, profile, modelkit.probe_for(m1, rows),
                    modelkit.probe_for(m2, rows))
    return make_node(root / "node", models).current


def main() -> int:
    from tests.agent.soak import soak

    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        current = _node(Path(tmp))
        anchor = soak(current, ANCHOR_REQUESTS, trace=True)
        run = soak(current, REQUESTS)
    growth_mb = run.rss_growth / 2**20
    print(f"agent memory: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"  {run.sent} requests ({run.ok} answered 200) in {run.seconds:.0f} s ({run.sent / run.seconds:.0f}/s): "
          f"RSS grew {growth_mb:.1f} MB (goal < {GOAL_MB:g} MB); requests held afterwards: {run.requests_held}")
    assert anchor.traced_growth is not None
    print(f"  anchor, {anchor.sent} requests traced (the test's measure): Python heap grew "
          f"{anchor.traced_growth / 1024:.1f} KB ({anchor.traced_growth / anchor.sent:.2f} bytes per request), "
          f"RSS {anchor.rss_growth / 2**20:+.1f} MB")
    return 0 if growth_mb < GOAL_MB and run.requests_held == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
