"""The fault suite's fixture: the shared provisioned fleet (tests/provisioned.py), reset before every case."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.provisioned import ProvisionedFleet


@pytest.fixture
def fleet(provisioned_fleet: ProvisionedFleet) -> Iterator[ProvisionedFleet]:
    """The shared fleet, reset to its contract; whatever a case left dark is started again afterwards."""
    provisioned_fleet.reset()
    yield provisioned_fleet
    for node in provisioned_fleet.dark_nodes():
        provisioned_fleet.running.fleet.start(node)
