"""Garbage collection that stays out of the operator's way: no collection longer than a few tens of milliseconds,
and none of the whole heap, ever.

CPython's automatic full (generation 2) collection walks every tracked object: in the console, the imported
libraries (Textual, Rich, httpx, and MLflow with SQLAlchemy, pandas and NumPy once the registry is read: ~400,000
objects) plus the registry, fleet and render data, 50-150 ms at 1,000 versions and 200 nodes at start, ~270 ms
(up to 800 ms on a busy machine) later in a session, a visible freeze whenever it falls on a key press. What the
libraries allocate when they are imported lives as long as the process: scanning it again and again finds nothing.
``IdleCollector`` keeps the cheap young-generation collections as they are and replaces the automatic full ones:

- ``start`` (before the first frame): one full collection, then everything alive (modules, classes, the app) is
  frozen out of the collector's view (``gc.freeze``), and automatic full collections are turned off;
- ``tick`` (every second), when modules were imported since the last freeze (a worker's first use of MLflow,
  SQLAlchemy, httpx): the young generations are collected and everything alive is frozen again, at once (a few
  milliseconds: only the young objects are scanned), so that the libraries' objects never enter a collection;
- ``tick``, when the user has been idle ``idle_s`` and ``min_interval_s`` have passed (after ``max_interval_s``
  whatever the input): a full collection of what is not frozen: the session's own objects (data, caches,
  screens), 2-30 ms; nothing is frozen after it, so the session's cyclic garbage (closed screens, Textual's
  render caches) is always reclaimed by the next one.

``before_collect`` callables run before each full collection: the console clears there a Textual cache that
keeps every widget's line cache reachable after the widget is gone (see console/app.py).

What an import-time freeze also freezes (the session's objects alive then) stays out of reach: if some of it
becomes cyclic garbage later, it is not reclaimed. That happens once per import of new modules, a handful of
times per process, and is counted in docs/benchmarks.md (~29,000 objects in a bench session).

``stop`` puts the interpreter's settings back (tests run many apps in one process).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence

NO_AUTOMATIC_FULL = 1_000_000  # gen-1 collections between automatic full ones: in effect, never


class IdleCollector:
    def __init__(self, *, idle_s: float = 2.0, min_interval_s: float = 30.0, max_interval_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 modules: Callable[[], int] = lambda: len(sys.modules),
                 before_collect: Sequence[Callable[[], object]] = ()) -> None:
        self.idle_s = idle_s
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self.clock = clock
        self.modules = modules
        self.before_collect = tuple(before_collect)  # e.g. caches that keep dead objects reachable
        self.collections = 0  # full collections of what is not frozen (the one at start included)
        self.freezes = 0  # freezes after imports (the one at start not included)
        self.last_pause_s = 0.0
        self._saved: tuple[int, int, int] | None = None
        self._frozen_modules = 0
        self._last_input = self._last_collect = clock()

    @property
    def active(self) -> bool:
        return self._saved is not None

    def start(self) -> None:
        if self._saved is not None:
            return
        threshold0, threshold1, threshold2 = gc.get_threshold()
        self._saved = (threshold0, threshold1, threshold2)
        gc.set_threshold(threshold0, threshold1, NO_AUTOMATIC_FULL)
        self.collect()
        gc.freeze()
        self._frozen_modules = self.modules()

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
        """Freeze what new imports brought, at once; collect if due. True when either ran."""
        if self._saved is None:
            return False
        froze = self.modules() != self._frozen_modules
        if froze:
            self.freeze_imports()
        if not self.due():
            return froze
        self.collect()
        return True

    def freeze_imports(self) -> None:
        """Collect the young generations and freeze everything alive: the objects modules created when they were
        imported (and whatever else is alive now) are never scanned again."""
        started = time.perf_counter()
        gc.collect(1)
        gc.freeze()
        self._frozen_modules = self.modules()
        self.freezes += 1
        self.last_pause_s = time.perf_counter() - started

    def collect(self) -> None:
        """A full collection now: of everything that is not frozen."""
        started = time.perf_counter()
        for release in self.before_collect:
            release()
        gc.collect()
        self.last_pause_s = time.perf_counter() - started
        self._last_collect = self.clock()
        self.collections += 1
