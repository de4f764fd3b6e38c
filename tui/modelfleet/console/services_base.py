"""What the parts of ConsoleServices (``infra_services.py``, ``governance_services.py``) use of it, declared for
the type checker only: :class:`~modelfleet.console.services.ConsoleServices` defines each and mixes the parts in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.fleet import Inventory


class ServicesBase:
    settings: Settings

    if TYPE_CHECKING:  # pragma: no cover

        @property
        def actor(self) -> str: ...

        @property
        def registry(self) -> Any: ...

        @property
        def ledger(self) -> Any: ...

        def inventory(self) -> Inventory: ...
