"""molecule: every role's scenario (create/destroy bring up a simulated fleet; converge, idempotence, verify)
and the fleet_rollout scenario, run with the real `molecule test` as a role author would.

Each scenario uses its own loopback prefix, ssh port and state dir (its molecule.yml; the state dir under a
folder each run makes, MODELFLEET_MOLECULE_DIR), so they never meet the
fleets of the other integration tests, even when pytest-xdist runs them side by side (keep them unique:
tests/integration/conftest.py lists the prefixes in use). The wheelhouse is the one the other integration tests
share.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (REPO_ROOT / "molecule").glob("*/molecule.yml"))

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (REPO_ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())
    assert set(roles) <= set(SCENARIOS), f"roles without a molecule scenario: {sorted(set(roles) - set(SCENARIOS))}"
    assert "fleet_rollout" in SCENARIOS


@pytest.mark.timeout(1200)
# each scenario is its own unit of work for pytest-xdist (own fleet, prefix, port and state dir: they can run
# side by side with each other and with every other module's fleet)
@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.xdist_group(f"molecule-{s}"))
                                      for s in SCENARIOS])
def test_molecule_scenario(scenario: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MODELFLEET_", "MOLECULE_"))}
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}", ANSIBLE_NOCOLOR="1", PY_COLORS="0",
               MODELFLEET_WHEELHOUSE_DIR=os.environ.get("MODELFLEET_WHEELHOUSE_DIR", "/tmp/modelfleet-wheelhouse"))
    # The scenario's state (fleet, keys, bundles) in a folder of this run's own: two runs of the same scenario on
    # one machine (two checkouts, in network namespaces of their own) never share a state dir. Short, under /tmp:
    # supervisord's unix sockets live in it; 0755: the nodes' agents must reach their roots.
    state_root = Path(tempfile.mkdtemp(prefix="mfm-", dir="/tmp"))
    state_root.chmod(0o755)
    env["MODELFLEET_MOLECULE_DIR"] = str(state_root)
    subprocess.run([str(VENV_BIN / "python"), "-m", "modelfleet.runners.wheelhouse", "--arch", os.uname().machine,
                    "--out", env["MODELFLEET_WHEELHOUSE_DIR"]], env=env, cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=900)
    try:
        proc = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", scenario], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=1150, check=False)
    finally:  # molecule's destroy step has stopped the fleet by now
        shutil.rmtree(state_root, ignore_errors=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"molecule test -s {scenario} failed (rc {proc.returncode}):\n{out[-6000:]}"
    # the idempotence step ran and found nothing to change (molecule fails the run otherwise; be explicit)
    assert f"{scenario} > idempotence: Executed: Successful" in out, out[-3000:]
    assert f"{scenario} > verify: Executed: Successful" in out, out[-3000:]
