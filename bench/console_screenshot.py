"""Write docs/img/fleet.svg: Textual's own SVG export of the fleet view, with statuses probed over HTTP from
simulated agents (bench/console_agents.py on 127.0.96.x).  ``.venv/bin/python bench/console_screenshot.py``"""

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


def main() -> int:
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
