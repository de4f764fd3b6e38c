# modelfleet: Ansible's linear strategy, run through Mitogen when it is installed (enabled in ansible.cfg).
"""Ansible strategy plugin ``modelfleet_linear``.

Ansible's ``linear`` strategy (task by task, every host of the batch in step; ``serial`` and
``max_fail_percentage`` behave exactly as documented) with Mitogen's connection layer under it when the
``mitogen`` package is importable: one persistent Python interpreter per node over the same SSH connection, and
modules sent once and cached there instead of a new AnsiballZ interpreter per task. On this project's 2-core
machine 60 tasks on one node take 11.0 s instead of 39.6 s (docs/benchmarks.md). Without Mitogen (a controller that only
has ansible-core) the plugin is plain ``linear`` and says so once.

Turn Mitogen off for one run with ``ANSIBLE_STRATEGY=linear``.
"""

from __future__ import annotations

from ansible.plugins.loader import strategy_loader
from ansible.utils.display import Display

DOCUMENTATION = """
name: modelfleet_linear
short_description: linear, accelerated by Mitogen when it is installed
description:
  - Ansible's linear strategy; when the mitogen package is importable its connection layer runs every task.
  - Falls back to plain linear, with one warning, when mitogen is missing.
author: modelfleet
"""

try:
    import ansible_mitogen.loaders  # first: refuses an Ansible version Mitogen does not support
    import ansible_mitogen.strategy
except ImportError as exc:  # tests/integration/test_strategy.py blocks the import
    _MITOGEN_ERROR: str | None = str(exc)
else:
    _MITOGEN_ERROR = None

_Linear = strategy_loader.get("linear", class_only=True)

if _MITOGEN_ERROR is None:

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[misc,valid-type]
        """Linear over Mitogen."""

else:

    class StrategyModule(_Linear):  # type: ignore[no-redef,valid-type,misc]
        """Plain linear: mitogen is not importable here."""

        def __init__(self, tqm: object) -> None:
            Display().warning(f"modelfleet_linear: mitogen is not installed ({_MITOGEN_ERROR}); running plain "
                              "linear (slower). Fix: pip install mitogen, or set ANSIBLE_STRATEGY=linear")
            super().__init__(tqm)
