"""The roles and playbooks pass `ansible-lint --profile production` (with the role-argument-spec rule on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ansible_lint_production_profile_passes() -> None:
    lint = Path(sys.executable).parent / "ansible-lint"
    assert lint.is_file(), "ansible-lint is not installed; fix: make deps (requirements/dev.txt pins it)"
    assert "role-argument-spec" in (REPO_ROOT / ".ansible-lint").read_text()
    proc = subprocess.run([str(lint), "--profile", "production", "--nocolor", "playbooks", "roles"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Profile 'production' was required, and it passed" in out, out[-3000:]
