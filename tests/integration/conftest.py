"""Integration fixtures: simulated fleets on loopback (real sshd, supervisord and Ansible over SSH).

* ``make_sim_fleet`` - session-scoped factory: ``with make_sim_fleet("127.0.88", 2288, "cpu=2") as fleet:``
  (pick a prefix and port of your own per test module; see tests/integration/simfleet.py);
* ``sim_fleet`` - the shared 6-node fleet on 127.0.77.1-6, sshd on port 2277, up for the whole session.

Both yield a :class:`modelfleet.sim.session.RunningFleet` (``.fleet`` SimFleet, ``.settings``, ``.inventory``).

``make test`` runs modules side by side (pytest-xdist, tests/conftest.py), so every fleet needs loopback
addresses and an ssh port no other module or molecule scenario uses. In use (prefix / ssh port):

    127.0.77 / 2277  test_sim (sim_fleet)            127.0.88 / 2288  test_playbooks
    127.0.81 / 2281  test_sim_nodes                  127.0.89 / 2289  molecule edge_runtime
    127.0.83 / 2283  test_infra_local (binary)       127.0.90 / 2290  (bench only)
    127.0.84 / 2284  test_infra_local (embedded)     127.0.91 / 2291  molecule model_release
    127.0.85 / 2285  molecule fleet_rollout          127.0.92 / 2292  molecule endpoint_health
    127.0.86 / 2286  test_artifact_store_s3          127.0.93 / 2293  test_make_run
    127.0.87 / 2287  molecule model_agent            127.0.95 / 2295  console/test_deploy_live
    127.0.78 / 2278  provisioned_fleet of xdist worker gw0 (tests/provisioned.py: tests/faults, test_rollout);
    127.0.79 / 2279  gw1's, 127.0.80 / 2280 gw2's, 127.0.82 / 2282 gw3's
    (no fleet: 127.0.50-59 agent tests, one prefix per worker; 127.0.60 registry server; 127.0.61 PostgreSQL;
    127.0.94 probe worker. 127.0.98 / 2298 and 127.0.99 / 2299 test_sim_isolation, 127.0.70 / 2270
    test_fleet_reaper. bench/ uses 127.0.90, 92, 96, 97, never beside the tests.)
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
