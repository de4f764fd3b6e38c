"""Two builds of one wheelhouse at the same time (two provisions, or two test workers, on one controller): one
builds, the other waits and reuses it, so nobody replaces the folder while nodes are being served from it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelfleet.runners import wheelhouse


def test_concurrent_builds_of_one_wheelhouse_build_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []

    def fake_run(cmd: list[str], step: str) -> None:  # pip wheel / pip download, without the network
        steps.append(step)
        time.sleep(0.2)  # long enough for the other build to arrive while this one works
        staging = Path(cmd[cmd.index("-w" if "-w" in cmd else "-d") + 1])
        (staging / f"{len(steps)}.whl").write_text("x")

    monkeypatch.setattr(wheelhouse, "_run", fake_run)
    results: list[wheelhouse.Wheelhouse] = []
    start = threading.Barrier(2)

    def build() -> None:
        start.wait()
        results.append(wheelhouse.build(tmp_path, "x86_64", requirements=["numpy==2.0"]))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.built for r in results) == [False, True]
    assert steps == ["building the modelfleet wheel", "downloading x86_64 wheels for Python 3.11"]
    assert (tmp_path / "x86_64" / wheelhouse.STAMP_NAME).is_file()


def test_wheel_builds_of_one_source_tree_never_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two wheelhouses (or two architectures) have separate locks, but pip builds the source tree in place: two
    wheel builds of one tree at once broke each other ("Failed building wheel for modelfleet", a CI failure).
    Their wheel builds now take turns; the downloads may still overlap."""
    running = 0
    overlaps: list[str] = []
    lock = threading.Lock()

    def fake_run(cmd: list[str], step: str) -> None:
        nonlocal running
        wheel = step == "building the modelfleet wheel"
        with lock:
            running += wheel
            if running > 1:
                overlaps.append(step)
        time.sleep(0.3)
        staging = Path(cmd[cmd.index("-w" if "-w" in cmd else "-d") + 1])
        (staging / f"{step[:8].replace(' ', '-')}.whl").write_text("x")
        with lock:
            running -= wheel

    monkeypatch.setattr(wheelhouse, "_run", fake_run)
    start = threading.Barrier(2)

    def build(out: Path, arch: str) -> None:
        start.wait()
        wheelhouse.build(out, arch, requirements=["numpy==2.0"])

    threads = [threading.Thread(target=build, args=(tmp_path / "a", "x86_64")),
               threading.Thread(target=build, args=(tmp_path / "b", "aarch64"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert overlaps == []
    assert (tmp_path / "a" / "x86_64" / wheelhouse.STAMP_NAME).is_file()
    assert (tmp_path / "b" / "aarch64" / wheelhouse.STAMP_NAME).is_file()
