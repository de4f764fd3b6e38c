"""A million scoring requests do not grow the agent's memory by more than a few MB.

Driven in-process against the agent's ASGI app (parse, signature checks, batching, predict, drift counts,
latency sketch, Prometheus counters: everything but the socket layer, which is uvicorn's), because a million
HTTP round trips would take too long on a 2-core CI box. RSS is measured with psutil.
"""

from __future__ import annotations

import asyncio
import gc
import json

import psutil
import pytest

from tests.agent.conftest import Node
from tests.agent.inproc import call, started_agent
from tests.agent.modelkit import make_frame

TOTAL = 1_000_000
CONCURRENCY = 2000


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_million_requests_do_not_grow_memory(shared_node: Node) -> None:
    frame = make_frame(50, seed=3)
    bodies = [json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": [row]}}).encode()
              for row in frame.values.tolist()]
    bad = b'{"dataframe_records": [{"income": "x"}]}'

    async def main() -> tuple[int, int, int]:
        agent = await started_agent(shared_node.current, max_batch_rows=CONCURRENCY)

        async def wave(start: int, n: int) -> int:
            reqs = [call(agent, "POST", "/invocations", bodies[(start + i) % len(bodies)] if i % 500 else bad)
                    for i in range(n)]
            results = await asyncio.gather(*reqs)
            assert all(s in (200, 400) for s, _, _ in results)
            await call(agent, "GET", "/stats")
            await call(agent, "GET", "/metrics")
            return sum(1 for s, _, _ in results if s == 200)

        proc = psutil.Process()
        done = 0
        for _ in range(10):  # warm up: caches, allocator arenas, label children
            done += await wave(done, CONCURRENCY)
        gc.collect()
        before = proc.memory_info().rss
        ok = 0
        sent = 0
        while sent < TOTAL:
            n = min(CONCURRENCY, TOTAL - sent)
            ok += await wave(sent, n)
            sent += n
        gc.collect()
        after = proc.memory_info().rss
        stats = json.loads((await call(agent, "GET", "/stats"))[2])
        assert stats["rows"] >= ok
        await agent.shutdown()
        return before, after, ok

    before, after, ok = asyncio.run(main())
    assert ok > TOTAL * 0.99
    growth_mb = (after - before) / 2**20
    assert growth_mb < 8, f"RSS grew by {growth_mb:.1f} MB over {TOTAL} requests"
