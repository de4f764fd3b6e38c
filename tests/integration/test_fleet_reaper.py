"""A fleet whose test process died is brought down by the next session (tests/integration/simfleet.py
``reap_orphaned_fleets``, called by tests/conftest.py): a pytest worker that died left its fleet listening, and the
next session's fleet on the same addresses could not start. A fleet whose test process still runs is left alone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO_ROOT
from tests.integration.simfleet import OWNER_FILE, reap_orphaned_fleets

pytestmark = pytest.mark.integration

PREFIX, PORT = "127.0.70", 2270  # tests/integration/conftest.py's table

#: a test process that brings a one-node fleet up, says where, and waits to be killed
OWNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tests.integration.simfleet import make_sim_fleet
    with make_sim_fleet({prefix!r}, {port}, "cpu=1", base_dir=Path({base!r})) as running:
        print(running.state_dir, flush=True)
        time.sleep(600)
""")


def listening(prefix: str) -> list[int]:
    """Pids of the processes listening on ``prefix``.x."""
    return sorted({c.pid for c in psutil.net_connections("inet4")
                   if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.ip.startswith(prefix + ".") and c.pid})


@pytest.fixture
def base() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mfr-"))  # short: the fleet's unix sockets live under it
    yield folder
    reap_orphaned_fleets(folder)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_fleet_whose_test_process_was_killed_is_brought_down(base: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER.format(prefix=PREFIX, port=PORT, base=str(base))],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline().strip()  # type: ignore[union-attr]
        if not line:
            pytest.fail(f"the fleet did not come up: {owner.communicate(timeout=60)[1][-3000:]}")
        state_dir = Path(line)
        assert state_dir.is_dir() and listening(PREFIX), "the fleet did not come up"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    assert listening(PREFIX), "a killed test process leaves its fleet running (what the reaper is for)"
    assert reap_orphaned_fleets(base) == [state_dir.parent]
    assert listening(PREFIX) == [] and not state_dir.parent.exists()


def test_a_fleet_whose_test_process_runs_is_left_alone(base: Path) -> None:
    folder = base / "mf-alive"
    folder.mkdir()
    me = psutil.Process()
    (folder / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "create_time": me.create_time(),
                                                 "prefix": PREFIX, "port": PORT}), encoding="utf-8")
    assert reap_orphaned_fleets(base) == [] and folder.is_dir()
