"""Many simulated agents in one process: an asyncio HTTP server on each of N loopback addresses.

``python bench/console_agents.py 127.0.96 200 18080`` serves ``/health``, ``/stats`` and ``/metrics`` on
127.0.96.1..200:18080 (then 127.0.97.x after 250 addresses) until killed; prints READY. ``/stats`` is shaped as
the agent's (format ``modelfleet-stats/2``): a latency sketch and histogram, drift counts on a reference profile
(the demo's loan applications; every tenth agent's traffic has its income shifted +25 %), and with ``?window=S``
the epoch's first snapshot (zeros) as ``base``; ``/profile`` answers the profile. The counters stand still.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0] + "/tui")

from modelfleet.core.latency import LATENCY_BOUNDS, LatencySketch

ROWS = 1000  # requests (one row each) every agent has answered and counted


def drift_counts() -> tuple[bytes, list[dict[str, Any]]]:
    """The profile's JSON, and drift counts on it: none yet (the epoch's first snapshot), live traffic like the
    reference, and live traffic with its income shifted +25 %."""
    from modelfleet.core.drift import DriftCounter, ReferenceProfile
    from modelfleet.demo.data import INPUT_COLUMNS, make_loans

    def predict(frame: Any) -> Any:
        return ((frame["credit_score"] < 640) | (frame["debt_to_income"] > 0.45)).to_numpy().astype(int)

    reference = make_loans(4000, seed=1)[list(INPUT_COLUMNS)]
    profile = ReferenceProfile.build(reference, predict(reference), group_column="applicant_group",
                                     model="bench-model", version="7")
    out = [DriftCounter(profile).snapshot()]
    for shift in (1.0, 1.25):
        live = make_loans(ROWS, seed=2)[list(INPUT_COLUMNS)]
        preds = predict(live)
        live["income"] = live["income"] * shift
        counter = DriftCounter(profile)
        counter.update(live, preds)
        out.append(counter.snapshot())
    return profile.to_json().encode(), out


def latency(values: list[float]) -> dict[str, Any]:
    """``/stats`` ``latency`` of these answer times: the sketch and the histogram on the agent's bounds."""
    sketch = LatencySketch()
    sketch.add_many(values)
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    for v in values:
        counts[bisect.bisect_left(LATENCY_BOUNDS, v)] += 1
    return {"unit": "seconds", "sketch": sketch.to_dict(),
            "histogram": {"le": list(LATENCY_BOUNDS), "counts": counts}}


def addresses(prefix: str, n: int) -> list[str]:
    a, b = prefix.split(".")[0], prefix.split(".")[1]
    base3 = int(prefix.split(".")[2])
    out = []
    for i in range(n):
        third, last = base3 + i // 250, i % 250 + 1
        out.append(f"{a}.{b}.{third}.{last}")
    return out


async def main(prefix: str, n: int, port: int) -> None:
    started = time.time()
    rng = random.Random(7)
    profile_json, (zeros, like_reference, shifted) = drift_counts()
    sha = hashlib.sha256(profile_json).hexdigest()
    bodies: dict[tuple[str, bool], bytes] = {}  # (address, with a window's base) -> /stats body
    for i, addr in enumerate(addresses(prefix, n)):
        stats = {
            "format": "modelfleet-stats/2", "model": "bench-model", "version": "7", "digest": "d" * 64,
            "epoch": f"bench{i:011d}", "counter_start": started, "window_start": started, "taken_at": started,
            "requests": ROWS, "errors": 1, "rows": ROWS,
            "latency": latency([rng.lognormvariate(-5, 0.4) for _ in range(ROWS)]),
            "drift": {"available": True, "reason": None, "profile_sha256": sha,
                      "counts": shifted if i % 10 == 0 else like_reference},
            "latency_regression": {"state": "watching"}}
        base = {"taken_at": started, "requests": 0, "errors": 0, "rows": 0, "latency": latency([]),
                "drift": {"available": True, "reason": None, "profile_sha256": sha, "counts": zeros}}
        bodies[addr, False] = json.dumps(stats).encode()
        bodies[addr, True] = json.dumps({**stats, "base": base}).encode()
    metrics = (b"modelfleet_agent_process_cpu_seconds_total 12.5\nmodelfleet_agent_process_resident_memory_bytes "
               b"1.9e+08\nmodelfleet_agent_host_memory_bytes{state=\"total\"} 8e9\n"
               b"modelfleet_agent_host_memory_bytes{state=\"available\"} 5e9\n")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                target = line.split()[1].decode() if len(line.split()) > 1 else "/"
                path, _, query = target.partition("?")
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                addr = writer.get_extra_info("sockname")[0]
                if path == "/health":
                    body = json.dumps({"status": "ok", "model": "bench-model", "version": "7", "digest": "d" * 64,
                                       "uptime_s": time.time() - started}).encode()
                    ctype = b"application/json"
                elif path == "/stats":
                    body, ctype = bodies[addr, query.startswith("window=")], b"application/json"
                elif path == "/profile":
                    body, ctype = profile_json, b"application/json"
                else:
                    body, ctype = metrics, b"text/plain"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(handle, addr, port) for addr in addresses(prefix, n)]
    print("READY", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


@contextlib.contextmanager
def simulated_agents(prefix: str, n: int, port: int) -> Iterator[subprocess.Popen[str]]:
    """This module as a process serving ``n`` agents, ready when entered, terminated on exit."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), prefix, str(n), str(port)],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            print("simulated agents did not start", file=sys.stderr)
            raise SystemExit(2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
