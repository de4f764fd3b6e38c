"""Fleet probe benchmark: CPU of one probe of 200 simulated agents, the FleetProber against a shared-pool anchor.

``.venv/bin/python -m bench.fleet_probe [--nodes 200] [--rounds 4]`` starts the simulated agents
(``bench/console_agents.py``: one process, one loopback address per agent) and times, per round:

- ``FleetProber.probe_sync``: what the console runs every refresh (3 GETs per node on one connection of its own,
  32 nodes in flight, rows built);
- the anchor: the same 3 GETs per node, 32 nodes in flight, through one httpx client for the whole fleet (a
  96-connection pool, as the prober had before 1ad7206) with the answers decoded, no rows built.

It prints wall time, the probing process's CPU and the simulated agents' CPU for each. The console's refresh
target (issue 5: 200 nodes probed and drawn in < 2 s) leaves the probe well under a second of CPU on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX, PORT = "127.0.96", 18080


def _shared_pool(addresses: list[str], concurrency: int = 32) -> int:
    import httpx

    async def run() -> int:
        sem = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency * 3, max_keepalive_connections=concurrency * 3)
        async with httpx.AsyncClient(limits=limits, timeout=2.0, trust_env=False) as client:
            async def one(address: str) -> bool:
                async with sem:
                    base = f"http://{address}:{PORT}"
                    health, stats, metrics = await asyncio.gather(
                        client.get(f"{base}/health"), client.get(f"{base}/stats"), client.get(f"{base}/metrics"))
                    return bool(health.json()) and bool(stats.json()) and bool(metrics.text)

            return sum(await asyncio.gather(*(one(a) for a in addresses)))

    return asyncio.run(run())


def _measure(probe: Callable[[], int], agents_pid: int) -> tuple[float, float, float, int]:
    import psutil

    agents = psutil.Process(agents_pid)
    a0, c0, t0 = sum(agents.cpu_times()[:2]), time.process_time(), time.perf_counter()
    answered = probe()
    t1, c1, a1 = time.perf_counter(), time.process_time(), sum(agents.cpu_times()[:2])
    return t1 - t0, c1 - c0, a1 - a0, answered


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.fleet_probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tui"))
    from bench.console_agents import addresses, simulated_agents
    from modelfleet.core.fleet import Node, NodeClass
    from modelfleet.core.fleet_status import FleetProber

    with simulated_agents(PREFIX, args.nodes, PORT) as agents:
        addrs = addresses(PREFIX, args.nodes)
        nodes = [Node(name=f"edge-{i:03d}", address=a, node_class=NodeClass.CPU, agent_port=PORT)
                 for i, a in enumerate(addrs)]
        prober = FleetProber()
        runs: dict[str, list[tuple[float, float, float, int]]] = {"FleetProber": [], "anchor: one shared pool": []}
        probes: dict[str, Callable[[], int]] = {
            "FleetProber": lambda: sum(r.state == "ok" for r in prober.probe_sync(nodes)),
            "anchor: one shared pool": lambda: _shared_pool(addrs),
        }
        for _ in range(args.rounds):  # alternate, so both see the same machine
            for name, probe in probes.items():
                runs[name].append(_measure(probe, agents.pid))
    print(f"fleet probe: {args.nodes} nodes x 3 GETs, {args.rounds} rounds, {platform.machine()} "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    failed = 0
    for name, rows in runs.items():
        wall, cpu, sim, ok = (list(x) for x in zip(*rows, strict=True))
        failed |= min(ok) < args.nodes
        print(f"  {name:<24} wall median {statistics.median(wall):.2f} s, process CPU median "
              f"{statistics.median(cpu):.2f} s (min {min(cpu):.2f}, max {max(cpu):.2f}), agents' CPU "
              f"{statistics.median(sim):.2f} s, answered {min(ok)}/{args.nodes}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

