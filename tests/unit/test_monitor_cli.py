"""Bad input to the monitoring commands: one clear message naming the object and the fix, exit 2, no change."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.cli import main
from modelfleet.demo.traffic import Shift, parse_shift


@pytest.mark.parametrize(("argv", "fragment"), [
    (["drift", "credit-risk", "--window", "forever"], "not a duration"),
    (["drift", "credit-risk@@2"], "more than one '@'"),
    (["drift", "credit-risk@"], "empty version"),
    (["status", "--source", "graphite"], "invalid choice"),
    (["demo", "traffic", "--shift", "income=lots"], "is not a shift"),
    (["demo", "traffic", "--shift", "income"], "is not FEATURE=SPEC"),
    (["demo", "traffic", "--shift", "income=-100%"], "zero or negative"),
    (["demo", "traffic", "--batch", "0"], "at least 1"),
])
def test_bad_input_exits_2_with_one_line(isolated_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                         fragment: str) -> None:
    with pytest.raises(SystemExit) as stop:
        raise SystemExit(main(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (isolated_env / ".modelfleet").exists()  # nothing was created


def test_shift_forms() -> None:
    assert parse_shift("income=+25%") == Shift("income", "scale", 0.25)
    assert parse_shift("edge-cpu-01:purpose=new-category:5%") == Shift("purpose", "new-category", 0.05, "edge-cpu-01")
    assert str(parse_shift("edge-cpu-01:income=-10%")) == "edge-cpu-01:income=-10%"
