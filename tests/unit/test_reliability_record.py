"""docs/reliability.md and the fault suite stay in step: one row per fault case (tests/faults/), and a case the
table records as a known bug is exactly a case marked xfail (strict) in the tests."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

RECORD = REPO_ROOT / "docs" / "reliability.md"
ROW = re.compile(r"^\| `(?P<case>test_[\w\[\]-]+)` \|(?P<rest>.*)\|\s*$")


def _collected(*marker: str) -> set[str]:
    """Fault case ids (``test_node_dark[before_lock]``) pytest collects, optionally only those with a marker."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
           *(("-m", marker[0]) if marker else ()), "tests/faults"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr  # 5: none selected
    return {line.split("::")[-1] for line in proc.stdout.splitlines() if line.startswith("tests/faults/")}


def _recorded() -> dict[str, bool]:
    rows = {}
    for line in RECORD.read_text(encoding="utf-8").splitlines():
        if match := ROW.match(line):
            status = match["rest"].split("|")[-1].strip()
            assert status in {"holds", "known bug"}, line
            rows[match["case"]] = status == "known bug"
    return rows


def test_every_fault_case_is_in_the_record_with_its_status() -> None:
    cases, known_bugs = _collected(), _collected("xfail")
    assert cases and known_bugs <= cases
    assert _recorded() == {case: case in known_bugs for case in cases}
