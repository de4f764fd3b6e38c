"""Write docs/img/fleet.svg: Textual's own SVG export of the fleet view, with statuses probed over HTTP from
simulated agents (bench/console_agents.py on 127.0.96.x).  ``.venv/bin/python bench/console_screenshot.py``

``bench/console_screenshot.py drift [NODE]``: docs/img/drift.svg and docs/img/drift-detail.svg, the Drift and latency
view and a version's drill-down (scoped to NODE, default edge-cpu-01), on the configured fleet as it is: run it
beside the simulated fleet after ``make run`` (real agents counting the demo traffic, a drift injected on
edge-cpu-01). It waits for ``PASSES`` monitoring passes ``INTERVAL_S`` apart, so that p95 has a history."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tui")]


async def shoot(out: Path) -> None:
    from bench.console import BenchServices
    from modelfleet.console.app import ModelfleetApp

    services = BenchServices(12, 20)
    app = ModelfleetApp(services=services, refresh_s=0)
    async with app.run_test(size=(160, 40)) as pilot:
        while app.state.fleet is None:
            await asyncio.sleep(0.05)
        app.refresh_fleet()  # a second probe gives rates between two samples
        await asyncio.sleep(1.0)
        await pilot.pause()
        out.write_text(app.export_screenshot(title="modelfleet: fleet"), encoding="utf-8")


PASSES, INTERVAL_S = 12, 5.0


async def shoot_drift(out_dir: Path, node: str) -> None:
    from modelfleet.console.app import ModelfleetApp
    from modelfleet.console.services import ConsoleServices
    from modelfleet.console.widgets.filterable_table import FilterableTable
    from modelfleet.core.config import load_settings

    app = ModelfleetApp(services=ConsoleServices(load_settings()), refresh_s=0)
    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(PASSES):  # the first pass follows the first fleet probe; then one every INTERVAL_S
            before = app.state.monitor
            if before is not None:
                await asyncio.sleep(INTERVAL_S)
                app.refresh_monitor()
            while app.state.monitor is before:
                if "monitor" in app.state.errors:
                    raise SystemExit(f"monitoring pass failed: {app.state.errors['monitor']}")
                await asyncio.sleep(0.05)
        await pilot.press("7")
        await pilot.pause(0.5)
        (out_dir / "drift.svg").write_text(app.export_screenshot(title="modelfleet: drift and latency"),
                                           encoding="utf-8")
        view = app.state.monitor
        assert view is not None
        key = next(f"{v.model}@{v.version}" for v in view.status.versions if node in v.nodes)
        versions = app.screen.query_one("#drift-versions", FilterableTable)
        versions.select_key(key)
        await pilot.press("enter")
        await pilot.pause(0.5)
        app.screen.query_one("#drift-scopes", FilterableTable).select_key(node)
        await pilot.pause(0.5)
        (out_dir / "drift-detail.svg").write_text(app.export_screenshot(title=f"modelfleet: {key} on {node}"),
                                                  encoding="utf-8")


def main() -> int:
    if sys.argv[1:2] == ["drift"]:
        out_dir = ROOT / "docs" / "img"
        asyncio.run(shoot_drift(out_dir, sys.argv[2] if len(sys.argv) > 2 else "edge-cpu-01"))
        print(out_dir / "drift.svg", out_dir / "drift-detail.svg")
        return 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    agents = subprocess.Popen([sys.executable, str(ROOT / "bench" / "console_agents.py"), "127.0.96", "12",
                               "18080"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert agents.stdout is not None
        agents.stdout.readline()
        out = ROOT / "docs" / "img" / "fleet.svg"
        asyncio.run(shoot(out))
        print(out)
    finally:
        agents.terminate()
        agents.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
