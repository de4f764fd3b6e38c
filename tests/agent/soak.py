"""Scoring traffic for the agent's memory checks, driven in-process (tests/agent/test_memory.py, bench/agent_memory.py).

Requests go straight to the agent's ASGI app (parse, signature checks, batching, predict, drift counts, latency
sketch, Prometheus counters: everything but uvicorn's socket layer) in waves of ``concurrency`` concurrent
requests; one in 500 is malformed (a 400), and every wave ends with a ``/stats`` and a ``/metrics`` read.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import psutil

from modelfleet.agent.app import Agent, _Item
from tests.agent.inproc import call, started_agent
from tests.agent.modelkit import make_frame

BAD = b'{"dataframe_records": [{"income": "x"}]}'


@dataclass(frozen=True)
class Soak:
    """What a soak measured over its measured requests (after the warm-up, each reading after a full collection):
    the growth of the process's RSS and, with ``trace=True``, of the Python heap as tracemalloc counts it (no
    allocator noise). Tracing starts four waves before the warm-up ends, so that the objects asyncio keeps for a
    wave or two after it ends (gather's bookkeeping) are traced in both readings, not only in the last."""

    sent: int
    ok: int
    rows_counted: int
    rss_growth: int
    traced_growth: int | None
    seconds: float
    requests_held: int  # scoring requests still referenced once every answer was sent


def bodies(rows: int = 50) -> list[bytes]:
    frame = make_frame(rows, seed=3)
    return [json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": [row]}}).encode()
            for row in frame.values.tolist()]


async def _settle(agent_tasks: int) -> None:
    """Let the loop finish what the last wave left: each request's disconnect watcher is cancelled, not yet run."""
    for _ in range(1000):
        if len(asyncio.all_tasks()) <= agent_tasks:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(asyncio.all_tasks()) - agent_tasks} request tasks outlived their requests")


async def _wave(agent: Agent, payloads: list[bytes], start: int, n: int) -> int:
    reqs = [call(agent, "POST", "/invocations", payloads[(start + i) % len(payloads)] if i % 500 else BAD)
            for i in range(n)]
    results = await asyncio.gather(*reqs)
    assert all(status in (200, 400) for status, _, _ in results)
    await call(agent, "GET", "/stats")
    await call(agent, "GET", "/metrics")
    return sum(1 for status, _, _ in results if status == 200)


def soak(release: Path, total: int, *, concurrency: int = 2000, warmup_waves: int = 10, trace: bool = False) -> Soak:
    """Send ``total`` scoring requests after ``warmup_waves`` waves (caches, allocator arenas, label children)."""

    async def main() -> Soak:
        agent = await started_agent(release, max_batch_rows=concurrency)
        payloads = bodies()
        idle = len(asyncio.all_tasks())  # this coroutine and the agent's own (batcher, ...)
        done = 0
        for i in range(warmup_waves):
            if trace and i == max(0, warmup_waves - 4):
                tracemalloc.start()
            done += await _wave(agent, payloads, done, concurrency)
        await _settle(idle)
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        traced_before = tracemalloc.get_traced_memory()[0] if trace else 0
        started = time.perf_counter()
        ok = sent = 0
        while sent < total:
            n = min(concurrency, total - sent)
            ok += await _wave(agent, payloads, sent, n)
            sent += n
        seconds = time.perf_counter() - started
        await _settle(idle)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced_before if trace else None
        if trace:
            tracemalloc.stop()
        rss_growth = psutil.Process().memory_info().rss - rss_before
        held = sum(1 for o in gc.get_objects() if isinstance(o, _Item))
        stats = json.loads((await call(agent, "GET", "/stats"))[2])
        await agent.shutdown()
        return Soak(sent, ok, int(stats["rows"]), rss_growth, traced, seconds, held)

    return asyncio.run(main())
