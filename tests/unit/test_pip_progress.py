"""scripts/pip_progress.py, the Makefile's installer: what is installed, each package as pip collects it, the end,
elapsed time on every line; pip's full output in a log; a failure shows pip's last lines and keeps its exit code;
a heartbeat when the command is silent. A real pip installs two pinned, hashed packages into a folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "scripts" / "pip_progress.py")


def _pinned(name: str) -> str:
    """The hashed requirement block of ``name`` in requirements/dev.txt."""
    lines = (REPO_ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}=="))
    block = [lines[start]]
    while block[-1].endswith("\\"):
        block.append(lines[start + len(block)])
    return "\n".join(block) + "\n"


def _run(tmp_path: Path, requirements: str, *extra: str) -> subprocess.CompletedProcess[str]:
    req = tmp_path / "req.txt"
    req.write_text(requirements, encoding="utf-8")
    return subprocess.run(
        [sys.executable, SCRIPT, "--log", str(tmp_path / "pip.log"), "--", sys.executable, "-m", "pip", "install",
         "--disable-pip-version-check", "--require-hashes", "--target", str(tmp_path / "site"), "-r", str(req),
         *extra], capture_output=True, text=True, timeout=300, check=False)


def test_install_shows_what_and_how_far(tmp_path: Path) -> None:
    proc = _run(tmp_path, _pinned("six") + _pinned("idna"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert all(re.match(r"\[\s*\d+:\d\d\] ", line) for line in lines), lines
    assert lines[0].endswith(f"installing 2 Python packages from {tmp_path / 'req.txt'} "
                             f"(pip's output: {tmp_path / 'pip.log'})")
    assert any(re.search(r"collecting 1/2: six\S*", line) for line in lines), lines
    assert any(line.endswith("installed 2 package(s)") for line in lines), lines
    assert "Successfully installed" in (tmp_path / "pip.log").read_text(encoding="utf-8")
    assert (tmp_path / "site" / "six.py").is_file()


def test_a_failed_install_shows_pips_last_lines_and_exit_code(tmp_path: Path) -> None:
    wrong = _pinned("six").split("--hash")[0] + "--hash=sha256:" + "0" * 64 + "\n"
    proc = _run(tmp_path, wrong)
    assert proc.returncode == 1
    assert f"pip failed (exit 1); its last lines (all of them in {tmp_path / 'pip.log'}):" in proc.stdout
    assert "DO NOT MATCH THE HASHES" in proc.stdout


def test_a_silent_step_gets_a_heartbeat(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--log", str(tmp_path / "log"), "--heartbeat", "0.4", "--", sys.executable, "-c",
         "import time; print('Installing collected packages: a, b', flush=True); time.sleep(2)"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "installing 2 package(s) into the venv" in proc.stdout
    assert "still working: installing 2 package(s)" in proc.stdout
