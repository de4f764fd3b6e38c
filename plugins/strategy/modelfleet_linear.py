# modelfleet: Ansible's linear strategy, run through Mitogen when it is installed (enabled in ansible.cfg).
"""Ansible strategy plugin ``modelfleet_linear``.

Ansible's ``linear`` strategy (task by task, every host of the batch in step; ``serial`` and
``max_fail_percentage`` behave exactly as documented) with Mitogen's connection layer under it when the
``mitogen`` package is importable: one persistent Python interpreter per node over the same SSH connection, and
modules sent once and cached there instead of a new AnsiballZ interpreter per task. On this project's 2-core
machine 60 tasks on one node take 11.0 s instead of 39.6 s (docs/benchmarks.md). Without Mitogen (a controller that only
has ansible-core) the plugin is plain ``linear`` and says so once.

Turn Mitogen off for one run with ``ANSIBLE_STRATEGY=linear``.

ansible-core 2.19 prints a ``[DEPRECATION WARNING]`` (and the hint that ``deprecation_warnings=False`` hides it)
every time the strategy of a play is not one of ``ansible.builtin``: "Use of strategy plugins not included in
ansible.builtin are deprecated ...". It says nothing about this plugin's behaviour and there is no alternative to
move to, yet it opened every run's output. This module drops exactly that message, nothing else: the plugin
loader's ``display`` (``ansible.plugins.loader.display``, which the loader looks up as it warns, right after it
imported this module) is wrapped so that a ``deprecated()`` call with that text is not shown; every other
message of the loader, and every deprecation elsewhere, still is (``deprecation_warnings`` stays on).
tests/integration/test_strategy.py checks both.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins import loader as _loader
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

THIRD_PARTY_STRATEGY_NOTICE = "Use of strategy plugins not included in ansible.builtin are deprecated"


class _WithoutStrategyNotice:
    """The loader's ``display`` minus the deprecation notice about third-party strategy plugins."""

    def __init__(self, display: Any) -> None:
        self._display = display

    def deprecated(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if not str(msg).startswith(THIRD_PARTY_STRATEGY_NOTICE):
            self._display.deprecated(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._display, name)


if not isinstance(_loader.display, _WithoutStrategyNotice):
    _loader.display = _WithoutStrategyNotice(_loader.display)

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
