"""Console benchmark: 1,000-version registry, 200 agents on loopback, headless Textual app.

Figures: time to first paint, view switch, a full fleet refresh (200 nodes probed with bounded concurrency and
rendered) and the longest event-loop stall seen by a 10 ms heartbeat during the whole session.
Targets (issue 5): first paint < 1.0 s, view switch < 100 ms, fleet refresh < 2 s, loop never blocked > 50 ms.

Where the console has the drift view (issue 16), the refreshes are the app's periodic one (fleet probe and monitoring
pass: drift counts of every agent on a reference profile, verdicts per node and fleet), the first monitoring pass
is timed on its own, and switches to and from the drift view and its drill-down are timed apart from the 16 above
(which stay the same keys as before, so that figures compare across trees).

    .venv/bin/python bench/console.py [--nodes 200] [--versions 1000]

BENCH_DEBUG=1: every switch's times, each stall over 30 ms and asyncio's debug log of callbacks over 30 ms (debug
mode slows the loop: use it to see where a stall falls, not for the figures) and the modules imported after the
first paint. BENCH_STACKS=1: where the loop thread is whenever the heartbeat is 35 ms late (a sampling thread).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tui"))

from modelfleet.console.services import ConsoleServices  # noqa: E402
from modelfleet.core.config import load_settings  # noqa: E402
from modelfleet.core.fleet import Inventory, Node, NodeClass  # noqa: E402
from modelfleet.core.registry import ModelSummary, ModelVersionInfo  # noqa: E402

PREFIX = "127.0.96"
PORT = 18080


class BenchServices(ConsoleServices):
    """Synthetic registry (1,000 versions) + 200-node inventory; probing and rendering are the real code."""

    def __init__(self, n_nodes: int, n_versions: int) -> None:
        super().__init__(load_settings(env={}, cwd=Path("/nonexistent-bench")))
        from bench.console_agents import addresses

        classes = list(NodeClass)
        self.node_list = [Node(name=f"edge-{i:03d}", address=a, node_class=classes[i % 3], agent_port=PORT,
                               groups=("edge", classes[i % 3].group, "staging" if i % 4 else "production"))
                          for i, a in enumerate(addresses(PREFIX, n_nodes))]
        t0 = datetime(2025, 1, 1, tzinfo=UTC)
        self.version_list = [
            ModelVersionInfo("bench-model", v, ("champion",) if v == 7 else (), {}, f"run{v}",
                             {"auc": 0.8 + v / 1e5, "accuracy": 0.7}, {"depth": str(v % 9)},
                             t0 + timedelta(hours=v), f"models:/bench/{v}", "READY", "")
            for v in range(n_versions, 0, -1)]

    def context(self) -> dict[str, str]:
        return {"registry": "synthetic (bench)", "inventory": f"{len(self.node_list)} nodes", "ledger": "-"}

    def models(self) -> list[Any]:
        t = datetime(2025, 1, 1, tzinfo=UTC)
        return [ModelSummary("bench-model", "", len(self.version_list), {"champion": 7}, {}, t, t)]

    def versions(self, model: str) -> list[Any]:
        return list(self.version_list)

    def placement_events(self, model: str) -> list[Any]:
        return []

    def version_governance(self, model: str, versions: list[Any]) -> dict[str, Any]:
        return {}  # no ledger behind this bench (the real one would open one under /nonexistent-bench)

    def version_detail(self, model: str, version: int) -> Any:
        # synthetic like the versions (the real one pins from the registry: MLflow is not behind this bench)
        from modelfleet.console.services import VersionDetail

        return VersionDetail(digest=f"{version:064x}", digest_source="synthetic (bench)",
                             signature={"inputs": [{"name": "x", "type": "double"}]})

    def inventory(self) -> Inventory:
        return Inventory(self.node_list, {"edge": [n.name for n in self.node_list]})

    def ledger_events(self, filters: Any = None, limit: int = 500) -> list[Any]:
        return []

    def ledger_verify(self) -> Any:
        from modelfleet.core.ledger import VerifyResult

        return VerifyResult(True, 0)

    def runs(self, limit: int = 200) -> list[Any]:
        return []


async def session(n_nodes: int, n_versions: int, debug: bool = False) -> dict[str, float]:
    from textual import events

    from modelfleet.console.app import ModelfleetApp

    services = BenchServices(n_nodes, n_versions)
    if debug:
        asyncio.get_running_loop().slow_callback_duration = 0.03
    gaps: list[tuple[str, float]] = []
    phase = ["start"]
    figures: dict[str, float] = {}
    t_start = time.perf_counter()
    steal_start, preempted_start = _cpu_steal_s(), resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    app = ModelfleetApp(services=services, refresh_s=0)
    painted = asyncio.Event()

    async with app.run_test(size=(160, 48)) as pilot:
        app.call_after_refresh(painted.set)
        await painted.wait()
        figures["first_paint_s"] = time.perf_counter() - t_start
        modules_at_paint = set(sys.modules)
        idle_gc = getattr(app, "idle_gc", None)  # (absent before it was built: the "before" column)
        start_gc_s = idle_gc.last_pause_s if idle_gc else 0.0
        last = [time.perf_counter()]

        def beat() -> None:
            now = time.perf_counter()
            gaps.append((phase[0], now - last[0] - 0.01))
            if debug and now - last[0] > 0.04:
                logging.warning("stall %.0f ms (%s)", (now - last[0] - 0.01) * 1000, phase[0])
            last[0] = now

        app.set_interval(0.01, beat)
        if os.environ.get("BENCH_STACKS"):
            _start_stall_sampler(last, phase)

        async def until(cond: Any, timeout: float = 30) -> float:
            t0 = time.perf_counter()
            while not cond():
                await asyncio.sleep(0.002)
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError("benchmark step timed out")
            return time.perf_counter() - t0

        # first fleet probe (also warms up connections and imports)
        await until(lambda: app.state.fleet is not None)
        figures["first_fleet_s"] = time.perf_counter() - t_start
        phase[0] = "first fleet"  # the 200-row table filled, measured and drawn for the first time
        await settle(pilot)
        ok = sum(1 for s in app.state.fleet or [] if s.state == "ok")
        figures["nodes_ok"] = ok
        monitoring = "drift" in app.MODES
        if monitoring:  # the first monitoring pass (its child starts, imports scipy, reads 200 agents)
            phase[0] = "first monitor"
            t0 = time.perf_counter()
            await until(lambda: app.state.monitor is not None or "monitor" in app.state.errors, timeout=180)
            await settle(pilot)
            figures["first_monitor_pass_s"] = time.perf_counter() - t0
            view = app.state.monitor
            figures["monitor_nodes_decided"] = 0 if view is None else sum(
                1 for v in view.status.versions for s in v.nodes.values() if s.drift is not None)

        # full refreshes, as the periodic timer makes them: probe 200 agents + render (and the monitoring pass)
        refreshes, passes = [], []
        phase[0] = "refresh"
        for _ in range(5):
            before = app.state.fleet_at
            before_monitor = getattr(app.state, "monitor", None)
            t0 = time.perf_counter()
            app._periodic()
            await until(lambda b=before: app.state.fleet_at != b)
            await settle(pilot)
            refreshes.append(time.perf_counter() - t0)
            if monitoring:
                await until(lambda b=before_monitor: app.state.monitor is not b or "monitor" in app.state.errors,
                            timeout=180)
                await settle(pilot)
                passes.append(time.perf_counter() - t0)
        figures["fleet_refresh_s_median"] = statistics.median(refreshes)
        figures["fleet_refresh_s_max"] = max(refreshes)
        if passes:
            figures["monitor_pass_s_median"] = statistics.median(passes)
            figures["monitor_pass_s_max"] = max(passes)

        # load the 1,000-version view once, then time view switches between loaded views
        phase[0] = "load versions"
        await pilot.press("1")
        await until(lambda: app.state.models is not None)
        await settle(pilot)
        await pilot.press("enter")
        await until(lambda: "bench-model" in app.state.versions)
        await settle(pilot)
        # a switch: a key event handed to the app (as the terminal driver does) until the first frame of the new
        # view is written, and until the app is idle again (settle: no pending messages, the loop idle once)
        frames: list[tuple[float, Any]] = []
        write_frame = app._display

        def display(screen: Any, renderable: Any) -> None:
            # (App._display drops a frame drawn during a batch update: switch_mode holds frames back for 50 ms)
            shown = renderable is not None and not app._batch_count
            write_frame(screen, renderable)
            if shown:
                frames.append((time.perf_counter(), screen))

        app._display = display  # type: ignore[method-assign]
        phase[0] = "switch"
        painted_at, idle_at = [], []
        for key in ("2", "1", "4", "2", "1", "3", "2", "1") * 2:
            shown, seen = app.screen, len(frames)
            t0 = time.perf_counter()
            assert app._driver is not None
            app._driver.send_message(events.Key(key, key))
            await until(lambda s=shown, n=seen: any(scr is not s for _t, scr in frames[n:]))
            painted_at.append(next(t for t, scr in frames[seen:] if scr is not shown) - t0)
            await settle(pilot)
            idle_at.append(time.perf_counter() - t0)
        if os.environ.get("BENCH_DEBUG"):
            print("switches ms:", [round(x * 1000) for x in painted_at], [round(x * 1000) for x in idle_at])
            late = sorted({m.split(".")[0] for m in set(sys.modules) - modules_at_paint})
            print(f"imported after the first paint ({len(set(sys.modules) - modules_at_paint)} modules):", late)
        figures["view_switch_ms_median"] = statistics.median(painted_at) * 1000
        figures["view_switch_ms_max"] = max(painted_at) * 1000
        figures["view_switch_to_idle_ms_median"] = statistics.median(idle_at) * 1000
        figures["view_switch_to_idle_ms_max"] = max(idle_at) * 1000
        if monitoring:  # to and from the drift view, and into a version's drill-down and back
            phase[0] = "drift switch"
            drift_at = []
            for key in ("7", "enter", "escape", "2", "7", "enter", "escape", "1") * 2:
                shown, seen = app.screen, len(frames)
                t0 = time.perf_counter()
                assert app._driver is not None
                app._driver.send_message(events.Key(key, None if len(key) > 1 else key))
                await until(lambda s=shown, n=seen: any(scr is not s for _t, scr in frames[n:]))
                drift_at.append(next(t for t, scr in frames[seen:] if scr is not shown) - t0)
                await settle(pilot)
            figures["drift_switch_ms_median"] = statistics.median(drift_at) * 1000
            figures["drift_switch_ms_max"] = max(drift_at) * 1000
        for name in ("start", "first fleet", "first monitor", "refresh", "load versions", "switch", "drift switch"):
            stalls = [g for p, g in gaps if p == name]
            figures[f"stall_ms_max_{name.replace(' ', '_')}"] = max(stalls) * 1000 if stalls else 0.0
        figures["heartbeat_max_stall_ms"] = max(g for _p, g in gaps) * 1000 if gaps else 0.0
        figures["heartbeats"] = len(gaps)
        figures["stalls_over_50ms"] = sum(1 for _p, g in gaps if g > 0.05)
        # the console's own collections (modelfleet.console.idle_gc): the one at start-up (before the first
        # frame), the freezes after imports, and a full collection of what is not frozen as it runs when the user
        # is idle, forced here to time it
        if idle_gc is not None:
            figures["gc_start_pause_ms"] = start_gc_s * 1000
            figures["gc_idle_collections"] = idle_gc.collections - 1
            figures["gc_import_freezes"] = idle_gc.freezes
            idle_gc.collect()
            figures["gc_idle_pause_ms"] = idle_gc.last_pause_s * 1000
            # what the freezes kept out of reach: objects frozen alive that are garbage by the end of the session
            gc.unfreeze()
            figures["gc_frozen_garbage_objects"] = gc.collect()
    # what the machine did to the session: CPU time the hypervisor gave to other guests (all CPUs), and how
    # often the kernel took a CPU away from this process while it could still run
    figures["machine_cpu_steal_s"] = _cpu_steal_s() - steal_start
    figures["involuntary_switches"] = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - preempted_start
    return figures


async def settle(pilot: Any) -> None:
    """Until the app has handled every pending message and the loop has been idle once: ``Pilot.pause`` without
    the frame it draws on the spot (``Screen._on_timer_update``). A terminal session gets its frames from the
    screen's own update timer only; the frame a pause forced, usually right before the timer's own, made the
    heartbeat see two frames back to back that the console never draws that way."""
    from textual._wait import wait_for_idle

    await pilot._wait_for_screen()
    await wait_for_idle(0)


def _start_stall_sampler(last: list[float], phase: list[str]) -> None:
    """BENCH_STACKS=1: a thread that, whenever the heartbeat is 35 ms late, logs where the loop thread is (its
    innermost frames in modelfleet, Textual and Rich), once per stall. Cheaper than asyncio's debug mode."""
    import threading
    import traceback

    main_id = threading.main_thread().ident
    assert main_id is not None

    def sample() -> None:
        seen = 0.0
        while True:
            time.sleep(0.005)
            late = time.perf_counter() - last[0]
            if late > 0.035 and last[0] != seen:
                seen = last[0]
                frame = sys._current_frames().get(main_id)
                stack = traceback.extract_stack(frame) if frame is not None else []
                ours = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack
                        if any(k in f.filename for k in ("modelfleet", "textual", "rich", "httpx", "httpcore"))]
                logging.warning("late %.0f ms (%s): %s", late * 1000, phase[0], " < ".join(reversed(ours[-6:])))

    threading.Thread(target=sample, daemon=True, name="stall-sampler").start()


def _cpu_steal_s() -> float:
    """Seconds of CPU stolen by the hypervisor since boot, summed over CPUs (0 where /proc/stat has no steal)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--versions", type=int, default=1000)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.console_agents import simulated_agents

    with simulated_agents(PREFIX, args.nodes, PORT):
        debug = bool(os.environ.get("BENCH_DEBUG"))
        if debug or os.environ.get("BENCH_STACKS"):
            logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)8.0f ms %(message)s")
        figures = asyncio.run(session(args.nodes, args.versions, debug), debug=debug)
    targets = {"first_paint_s": 1.0, "view_switch_ms_max": 100.0, "drift_switch_ms_max": 100.0,
               "fleet_refresh_s_max": 2.0, "heartbeat_max_stall_ms": 50.0}
    print(f"console bench: {args.nodes} nodes, {args.versions} versions, {datetime.now(UTC):%Y-%m-%d}, "
          f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}")
    failed = False
    for key, value in figures.items():
        target = targets.get(key)
        verdict = "" if target is None else (f"  ok (< {target:g})" if value < target else f"  OVER ({target:g})")
        failed |= target is not None and value >= target
        print(f"  {key:<26} {value:10.3f}{verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
