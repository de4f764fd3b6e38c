"""Garbage collection that stays out of the operator's way: never a full-heap scan in the middle of a keystroke.

CPython's automatic full (generation 2) collection walks every tracked object: in the console, the imported
libraries plus the registry, fleet and render caches, 50-150 ms at 1,000 versions and 200 nodes, a visible freeze
whenever it falls on a key press. ``IdleCollector`` keeps the cheap young-generation collections as they are and
replaces the automatic full ones:

- ``start`` (before the first frame): one full collection, then everything alive (modules, classes, the app) is
  frozen out of the collector's view (``gc.freeze``), and automatic full collections are turned off;
- ``tick`` (every second): when the user has been idle ``idle_s`` and ``min_interval_s`` have passed, collect what
  was allocated since the last freeze and freeze the survivors: a short pause, since only new objects are scanned;
  after ``max_interval_s`` it runs whatever the input;
- a deep collection (unfreeze, scan everything, freeze again), idle only, reclaims cycles among objects that were
  alive at a freeze and died since (a closed drill-down screen): when the frozen objects have grown by
  ``deep_growth`` since the last deep one (CPython's own rule for full collections is 25% growth), or after
  ``deep_interval_s``. It is the one long pause left (~270 ms at 1,000 versions and 200 nodes), and it waits
  for the operator to stop typing.

``stop`` puts the interpreter's settings back (tests run many apps in one process).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

NO_AUTOMATIC_FULL = 1_000_000  # gen-1 collections between automatic full ones: in effect, never


class IdleCollector:
    def __init__(self, *, idle_s: float = 2.0, min_interval_s: float = 30.0, max_interval_s: float = 300.0,
                 deep_interval_s: float = 3600.0, deep_growth: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self.deep_interval_s = deep_interval_s
        self.deep_growth = deep_growth
        self._frozen_after_deep = 0
        self.clock = clock
        self.collections = 0
        self.deep_collections = 0
        self.last_pause_s = 0.0
        self._saved: tuple[int, int, int] | None = None
        self._last_input = self._last_collect = self._last_deep = clock()

    @property
    def active(self) -> bool:
        return self._saved is not None

    def start(self) -> None:
        if self._saved is not None:
            return
        threshold0, threshold1, threshold2 = gc.get_threshold()
        self._saved = (threshold0, threshold1, threshold2)
        gc.set_threshold(threshold0, threshold1, NO_AUTOMATIC_FULL)
        self.collect(deep=True)

    def stop(self) -> None:
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        self._saved = None
        gc.unfreeze()

    def input_seen(self) -> None:
        self._last_input = self.clock()

    def due(self) -> bool:
        now = self.clock()
        since = now - self._last_collect
        return since >= self.max_interval_s or (since >= self.min_interval_s and now - self._last_input >= self.idle_s)

    def tick(self) -> bool:
        """Collect if due (deep when the frozen objects grew or ``deep_interval_s`` passed, and the user is idle);
        True when it ran."""
        if self._saved is None or not self.due():
            return False
        now = self.clock()
        grown = gc.get_freeze_count() > self._frozen_after_deep * (1 + self.deep_growth)
        idle = now - self._last_input >= self.idle_s
        self.collect(deep=idle and (grown or now - self._last_deep >= self.deep_interval_s))
        return True

    def collect(self, *, deep: bool) -> None:
        """Collect now: what is new since the last freeze, or (``deep``) everything; then freeze the survivors."""
        started = time.perf_counter()
        if deep:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.last_pause_s = time.perf_counter() - started
        self._last_collect = self.clock()
        self.collections += 1
        if deep:
            self._last_deep = self._last_collect
            self._frozen_after_deep = gc.get_freeze_count()
            self.deep_collections += 1
