"""Scoring traffic does not grow the agent's memory: 20,000 requests, measured with tracemalloc.

The million-request soak (RSS over 10^6 requests, the issue 3 goal of a few MB) is a benchmark:
bench/agent_memory.py, figures in docs/benchmarks.md. This test keeps what fails on a real leak at a fiftieth of
the cost: tracemalloc counts the Python heap exactly (numpy reports its buffers to it too), so the growth of a
clean agent over 20,000 requests is a few KB (7-17 KB measured) where RSS moves by hundreds of KB either way.

How it was checked (2026-12-04): a leak of one reference per request, the smallest a Python leak can be
(``_LEAK.append(len(body))`` after ``preds = await fut`` in ``Agent._http``'s scoring path), made this test fail
with 184 KB of growth over the 20,000 requests (9.2 bytes per request); with the batcher's earlier loop, which
held its last batch until the next request came, ``requests_held`` was 1996 and the test failed too. Without
either, it passes. Both injections were removed.
"""

from __future__ import annotations

import pytest

from tests.agent.conftest import Node
from tests.agent.soak import soak

REQUESTS = 20_000
LIMIT = 64 * 1024  # bytes: 4x a clean run's growth, under half of an 8-byte-per-request leak's


@pytest.mark.slow
def test_scoring_traffic_does_not_grow_memory(shared_node: Node) -> None:
    result = soak(shared_node.current, REQUESTS, trace=True)
    assert result.ok == REQUESTS - REQUESTS // 500  # one in 500 is malformed on purpose (a 400)
    assert result.rows_counted >= result.ok  # the drift counters saw every scored row
    assert result.traced_growth is not None
    assert result.traced_growth < LIMIT, (
        f"the Python heap grew by {result.traced_growth} bytes over {REQUESTS} requests "
        f"({result.traced_growth / REQUESTS:.1f} bytes per request)")
    # once answered, a batch is freed: the idle agent holds none of its last requests (or their frames)
    assert result.requests_held == 0
