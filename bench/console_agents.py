"""Many simulated agents in one process: an asyncio HTTP server on each of N loopback addresses.

``python bench/console_agents.py 127.0.96 200 18080`` serves ``/health``, ``/stats`` (with a latency sketch) and
``/metrics`` on 127.0.96.1..200:18080 (then 127.0.97.x after 250 addresses) until killed; prints READY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0] + "/tui")

from modelfleet.core.latency import LatencySketch


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
    sketches = {}
    for addr in addresses(prefix, n):
        s = LatencySketch()
        s.add_many([rng.lognormvariate(-5, 0.4) for _ in range(200)])
        sketches[addr] = s
    metrics = (b"modelfleet_agent_process_cpu_seconds_total 12.5\nmodelfleet_agent_process_resident_memory_bytes "
               b"1.9e+08\nmodelfleet_agent_host_memory_bytes{state=\"total\"} 8e9\n"
               b"modelfleet_agent_host_memory_bytes{state=\"available\"} 5e9\n")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                path = line.split()[1].decode() if len(line.split()) > 1 else "/"
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                addr = writer.get_extra_info("sockname")[0]
                if path == "/health":
                    body = json.dumps({"status": "ok", "model": "bench-model", "version": "7", "digest": "d" * 64,
                                       "uptime_s": time.time() - started}).encode()
                    ctype = b"application/json"
                elif path == "/stats":
                    body = json.dumps({"model": "bench-model", "version": "7", "window_start": started,
                                       "requests": 1000, "errors": 1,
                                       "latency": {"unit": "seconds", "sketch": sketches[addr].to_dict()},
                                       "drift": {"available": True}}).encode()
                    ctype = b"application/json"
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
