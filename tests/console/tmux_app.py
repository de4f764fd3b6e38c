"""Entry point for the tmux test: the real console app (real terminal driver) on the fixed test data."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from modelfleet.console.app import ModelfleetApp
from tests.console.fakes import FakeServices

if __name__ == "__main__":
    ModelfleetApp(services=FakeServices(), refresh_s=0).run()
    print("console exited cleanly")
