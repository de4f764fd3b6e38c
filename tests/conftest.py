"""Shared fixtures: every test runs against its own state directory, never the developer's .modelfleet/.

Parallel runs: ``make test`` runs pytest-xdist with two workers and ``--dist loadgroup``. Every test module is
one unit of work (one worker runs all of it, in file order), so module- and session-scoped fixtures (a simulated
fleet on fixed addresses, a seeded registry, an agent) are set up once, in one worker, and never twice at the
same addresses. A module whose tests are independent of each other and each expensive can split itself: either
give its tests ``pytest.mark.xdist_group(name)`` markers of their own (tests/integration/test_molecule.py does,
one group per scenario) or set ``XDIST_EACH_TEST = True`` in it (each test a unit of its own;
tests/faults/test_faults.py). Tests that use a session-scoped fleet on fixed addresses (``PINNED_FIXTURES``:
``sim_fleet``) share one unit, whatever module they are in. The shared provisioned fleet (``provisioned_fleet``)
is not pinned: each worker brings up its own, on addresses of its own (tests/provisioned.py), once, so its users
spread over the workers. Units holding tests marked ``slow`` start first (those with more ``integration`` tests
first), then the other ``integration`` ones, then the rest, so that a long one does not start last and leave the
other worker idle at the end: mark a module with a fleet ``slow``.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelfleet.core.config import Settings, load_settings

if TYPE_CHECKING:  # the fleet helpers import httpx and the sim: only the tests that use the fleet load them
    from tests.provisioned import ProvisionedFleet

REPO_ROOT = Path(__file__).resolve().parent.parent


# Session-scoped fixtures bound to fixed addresses: every module that uses one runs in the same worker (one
# unit of work for all of them), or a second worker would bring up a second copy on the same addresses.
# (``provisioned_fleet`` is not one: each worker brings up its own, on addresses of its own; tests/provisioned.py.)
PINNED_FIXTURES = ("sim_fleet",)


# -- a worker that is signalled says by whom -------------------------------------------------------------------
# Twice a pytest-xdist worker died mid-run ("node down: Not properly terminated") with no traceback: something
# signalled it. A worker that gets SIGTERM or SIGHUP now notes, before it dies, which test it was running and which
# processes started in the last 30 s (the sender is among them); the controller prints the note when the worker
# goes down, so a CI log names the culprit. (A worker's own stderr is captured by pytest during a test.)
SIGNAL_LOG_ENV = "MODELFLEET_TEST_SIGNAL_LOG"
_CURRENT_TEST = ""


def _note_signal_and_die(signum: int, _frame: object) -> None:
    import psutil

    lines = [f"worker {os.environ.get('PYTEST_XDIST_WORKER')} (pid {os.getpid()}) got "
             f"{signal.Signals(signum).name} while running {_CURRENT_TEST or 'no test'}; processes started in the "
             "last 30 s:"]
    now = time.time()
    for proc in psutil.process_iter(["pid", "ppid", "create_time", "cmdline"]):
        if now - (proc.info["create_time"] or 0) < 30:
            lines.append(f"  {proc.info['pid']} (parent {proc.info['ppid']}): "
                         f"{' '.join(proc.info['cmdline'] or [])[:160]}")
    with open(os.environ[SIGNAL_LOG_ENV], "a", encoding="utf-8") as log:
        log.write("\n".join(lines) + "\n")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller: its workers inherit the variables
        # One wheelhouse (and simulated-fleet seed venv) for every fleet of the session, built once under its lock
        # (runners/wheelhouse.py): without it each fleet built its own in its state folder (~15 CPU-s each).
        os.environ.setdefault("MODELFLEET_WHEELHOUSE_DIR", str(Path(tempfile.gettempdir()) / "modelfleet-wheelhouse"))
        os.environ[SIGNAL_LOG_ENV] = str(Path(tempfile.gettempdir()) / f"modelfleet-test-signals-{os.getpid()}.log")
        # fleets left running by an earlier session whose worker died hold addresses this session's fleets need
        if any(Path(tempfile.gettempdir()).glob("mf-*/owner.json")):  # (the sim is imported only when needed)
            from tests.integration.simfleet import reap_orphaned_fleets

            for folder in reap_orphaned_fleets():
                sys.stderr.write(f"tests: brought down the fleet in {folder}, left running by a test process that "
                                 "is gone\n")
    elif os.environ.get(SIGNAL_LOG_ENV):
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _note_signal_and_die)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    log = Path(os.environ.get(SIGNAL_LOG_ENV, "/nonexistent"))
    if error and log.is_file():
        os.write(2, f"\n{log.read_text(encoding='utf-8')}\n".encode(errors="replace"))
        log.unlink()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    global _CURRENT_TEST
    _CURRENT_TEST = item.nodeid


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tiers: dict[str, int] = {}  # group -> 0 holds slow tests, 1 integration ones, 2 neither
    weights: dict[str, int] = {}  # group -> how many integration tests (a fleet module's cost grows with them)
    module_group: dict[str, str] = {}  # a module that uses a pinned fixture joins that fixture's unit, whole
    for item in items:
        module = item.nodeid.split("::")[0]
        pinned = [name for name in PINNED_FIXTURES if name in getattr(item, "fixturenames", ())]
        if pinned or module not in module_group:
            module_group[module] = f"fixture:{pinned[0]}" if pinned else module
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            split = getattr(getattr(item, "module", None), "XDIST_EACH_TEST", False)
            group = f"each:{item.nodeid}" if split else module_group[item.nodeid.split("::")[0]]
            item.add_marker(pytest.mark.xdist_group(group))
        group = str(next(item.iter_markers("xdist_group")).args[0])
        tier = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("integration") else 2
        tiers[group] = min(tier, tiers.get(group, 2))
        weights[group] = weights.get(group, 0) + (item.get_closest_marker("integration") is not None)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # only the order the scheduler hands out changes, not serial runs
        order = {group: i for i, group in enumerate(tiers)}

        def key(item: pytest.Item) -> tuple[int, int, int]:
            group = str(next(item.iter_markers("xdist_group")).args[0])
            return tiers[group], -weights[group], order[group]

        items.sort(key=key)  # stable: file order within each group


# Machine-level settings of the test session, not a project's: a test's own project folder keeps them.
KEPT_VARIABLES = ("MODELFLEET_WHEELHOUSE_DIR", SIGNAL_LOG_ENV)


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder with no modelfleet.toml and no MODELFLEET_* variables; cwd is that folder."""
    for key in list(os.environ):
        if key.startswith("MODELFLEET_") and key not in KEPT_VARIABLES:
            monkeypatch.delenv(key)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    yield project


@pytest.fixture
def settings(isolated_env: Path) -> Settings:
    """Embedded-default settings rooted in a fresh temporary project folder."""
    return load_settings(cwd=isolated_env)


@pytest.fixture(scope="session")
def provisioned_fleet() -> Iterator[ProvisionedFleet]:
    """The shared provisioned 6-node fleet on 127.0.78.x (tests/provisioned.py): seeded, provisioned and on
    ``credit-risk/1`` once per session; a user calls ``provisioned_fleet.reset()`` first and hands it back."""
    from tests.provisioned import provisioned_fleet_session

    yield from provisioned_fleet_session()
