"""module_utils/modelfleet_release_session.py: the part of a step that must not stop half-way (switch, reload,
gate, journal, unlock) finishes even when the module's process is killed, as Mitogen's context on a node kills
itself (SIGTERM) once the controller is gone. Seen before: ``kill -9`` of ``modelfleet deploy`` just after a node
switched left ``current`` on v2 and the agent serving v1 (tests/faults: test_controller_killed[after_switch])."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

UTILS = REPO_ROOT / "roles" / "model_release" / "module_utils"

#: a module-like process: the step writes "started", waits for the test's go, then writes "done"
STEP = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {utils!r})
    from modelfleet_release_session import to_completion
    work_dir = {work!r}

    def step():
        open(os.path.join(work_dir, "started"), "w").close()
        while not os.path.exists(os.path.join(work_dir, "go")):
            time.sleep(0.02)
        open(os.path.join(work_dir, "done"), "w").close()
        return {{"outcome": "deployed", "pid": os.getpid()}}

    result = to_completion(step) if {detached!r} else step()
    print(json.dumps(result))
""")


def _start(tmp_path: Path, detached: bool) -> subprocess.Popen[str]:
    code = STEP.format(utils=str(UTILS), work=str(tmp_path), detached=detached)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.02)
    return False


def test_the_step_returns_what_its_process_returned(tmp_path: Path) -> None:
    (tmp_path / "go").touch()
    proc = _start(tmp_path, detached=True)
    out, _ = proc.communicate(timeout=60)
    result = json.loads(out)
    assert proc.returncode == 0 and result["outcome"] == "deployed" and result["pid"] != proc.pid


@pytest.mark.parametrize("detached", [True, False], ids=["in_its_own_session", "in_the_module_process"])
def test_a_step_outlives_the_module_killed_mid_step(tmp_path: Path, detached: bool) -> None:
    """SIGTERM to the module's process group once the step started (what a controller's death does on the node):
    run to completion, the step still finishes; run in the module's own process (as before), it does not."""
    proc = _start(tmp_path, detached)
    assert _wait_for(tmp_path / "started")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    (tmp_path / "go").touch()
    assert _wait_for(tmp_path / "done", timeout=5 if detached else 1) == detached


def test_an_error_in_the_step_comes_back_with_its_traceback(tmp_path: Path) -> None:
    sys.path.insert(0, str(UTILS))
    try:
        from modelfleet_release_session import SessionError, to_completion
    finally:
        sys.path.remove(str(UTILS))

    def broken() -> dict[str, object]:
        raise KeyError("no such release")

    with pytest.raises(SessionError, match="KeyError: 'no such release'"):
        to_completion(broken)
