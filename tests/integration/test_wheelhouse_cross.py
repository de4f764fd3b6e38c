"""An aarch64 wheelhouse built on this (x86_64) controller installs offline on an aarch64 node.

The build downloads aarch64 wheels from the package index (pip download --platform); the check resolves the
node's whole install from the wheelhouse alone (--no-index) for an aarch64 target, as the edge_runtime role does
on a node with no internet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet.runners.wheelhouse import PLATFORM_TAGS

pytestmark = pytest.mark.integration
PY = sys.executable


def _build(out: Path) -> dict[str, object]:
    proc = subprocess.run([PY, "-m", "modelfleet.runners.wheelhouse", "--arch", "aarch64", "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(1200)
def test_aarch64_wheelhouse_from_an_x86_controller_installs_offline(tmp_path: Path) -> None:
    first = _build(tmp_path)
    assert first["built"] is True and first["arch"] == "aarch64"
    house = tmp_path / "aarch64"
    wheels = sorted(p.name for p in house.glob("*.whl"))
    assert any(w.startswith("modelfleet-") for w in wheels)
    binary = [w for w in wheels if not w.endswith("-none-any.whl") and "py2.py3-none-any" not in w]
    assert binary, wheels
    assert all("aarch64" in w for w in binary), [w for w in binary if "aarch64" not in w]
    assert not any("x86_64" in w for w in wheels)
    stamp = json.loads((house / "wheelhouse.json").read_text())
    assert stamp["arch"] == "aarch64"

    platforms = [arg for tag in PLATFORM_TAGS["aarch64"] for arg in ("--platform", tag)]
    resolve = subprocess.run(
        [PY, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check", "--no-index",
         "--find-links", str(house), "--only-binary=:all:", "--python-version", "3.11", *platforms,
         "--target", str(tmp_path / "target"), "-r", str(house / "requirements.txt")],
        capture_output=True, text=True, timeout=300, check=False)
    assert resolve.returncode == 0, resolve.stdout + resolve.stderr  # the role installs modelfleet --no-deps

    again = _build(tmp_path)
    assert again["built"] is False, "a current wheelhouse is rebuilt"
