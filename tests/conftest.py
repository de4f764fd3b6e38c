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


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder with no modelfleet.toml and no MODELFLEET_* variables; cwd is that folder."""
    for key in list(os.environ):
        if key.startswith("MODELFLEET_"):
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
