"""Integration fixtures: simulated fleets on loopback (real sshd, supervisord and Ansible over SSH).

* ``make_sim_fleet`` - session-scoped factory: ``with make_sim_fleet("127.0.88", 2288, "cpu=2") as fleet:``
  (pick a prefix and port of your own per test module; see tests/integration/simfleet.py);
* ``sim_fleet`` - the shared 6-node fleet on 127.0.77.1-6, sshd on port 2277, up for the whole session.

Both yield a :class:`modelfleet.sim.session.RunningFleet` (``.fleet`` SimFleet, ``.settings``, ``.inventory``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from modelfleet.sim.session import RunningFleet
from tests.integration.simfleet import make_sim_fleet as _make_sim_fleet

SIM_PREFIX = "127.0.77"
SIM_SSH_PORT = 2277


@pytest.fixture(scope="session")
def make_sim_fleet() -> Callable[..., contextlib.AbstractContextManager[RunningFleet]]:
    """Factory for fleets of your own, e.g. in a module-scoped fixture::

        @pytest.fixture(scope="module")
        def deploy_fleet(make_sim_fleet):
            with make_sim_fleet("127.0.88", 2288, "cpu=2,gpu=1") as running:
                yield running
    """
    return _make_sim_fleet


@pytest.fixture(scope="session")
def sim_fleet() -> Iterator[RunningFleet]:
    """The default 6-node fleet (cpu=3,gpu=1,arm=2) on 127.0.77.x, ssh port 2277."""
    with _make_sim_fleet(SIM_PREFIX, SIM_SSH_PORT, "cpu=3,gpu=1,arm=2") as running:
        yield running
