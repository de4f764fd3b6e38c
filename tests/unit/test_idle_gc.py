"""IdleCollector: automatic full collections off while the console runs; what imports bring is frozen at once; its
own full collections (of what is not frozen) only when the user is idle."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from modelfleet.console.idle_gc import NO_AUTOMATIC_FULL, IdleCollector


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Modules:
    """Stands in for len(sys.modules): the test 'imports' by moving it."""

    def __init__(self) -> None:
        self.n = 100

    def __call__(self) -> int:
        return self.n


class Cycle:
    def __init__(self) -> None:
        self.me = self


@contextmanager
def running(**options: Any) -> Iterator[tuple[IdleCollector, Clock, Modules]]:
    """A started collector on a clock the test moves; the interpreter's settings are put back afterwards."""
    clock, modules = Clock(), Modules()
    collector = IdleCollector(clock=clock, modules=modules, **options)
    collector.start()
    try:
        yield collector, clock, modules
    finally:
        collector.stop()


def test_start_freezes_and_turns_off_automatic_full_collections_stop_puts_them_back() -> None:
    before = gc.get_threshold()
    with running() as (collector, _clock, _modules):
        assert gc.get_threshold()[2] == NO_AUTOMATIC_FULL and gc.get_freeze_count() > 0
        assert collector.collections == 1 and collector.freezes == 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_collects_only_when_idle_and_not_too_often_but_always_after_the_maximum() -> None:
    with running(idle_s=2, min_interval_s=30, max_interval_s=300) as (collector, clock, _modules):
        clock.t += 10
        assert not collector.tick()  # idle, but the last collection was 10 s ago
        clock.t += 25
        collector.input_seen()
        assert not collector.tick()  # 35 s since the last one, but the user just typed
        clock.t += 2
        assert collector.tick() and collector.collections == 2
        for _ in range(299):  # typing without pause: nothing for 300 s ...
            clock.t += 1
            collector.input_seen()
            collector.tick()
        assert collector.collections == 2
        clock.t += 1
        collector.input_seen()
        assert collector.tick() and collector.collections == 3  # ... then collected anyway


def test_new_imports_are_frozen_at_the_next_tick_even_while_typing() -> None:
    with running() as (collector, clock, modules):
        frozen = gc.get_freeze_count()
        kept = [Cycle() for _ in range(1000)]  # what an import leaves alive
        clock.t += 1
        collector.input_seen()
        assert not collector.tick() and gc.get_freeze_count() == frozen  # no import: nothing
        modules.n += 3
        assert collector.tick() and collector.freezes == 1 and collector.collections == 1
        assert gc.get_freeze_count() >= frozen + 1000
        clock.t += 1
        assert not collector.tick() and collector.freezes == 1  # the same modules: not frozen again
        del kept


def test_session_garbage_is_reclaimed_even_after_it_survived_a_collection() -> None:
    with running() as (collector, clock, _modules):
        young = Cycle()
        young_ref = weakref.ref(young)
        del young
        clock.t += 60
        assert collector.tick() and young_ref() is None  # allocated after the freeze: reclaimed
        old = Cycle()
        collector.collect()  # survives a collection: not frozen by it
        old_ref = weakref.ref(old)
        del old
        clock.t += 60
        assert collector.tick() and old_ref() is None


def test_garbage_alive_at_an_import_freeze_is_not_reclaimed() -> None:
    """The documented cost of freezing after imports: what was alive then and dies later stays out of reach."""
    with running() as (collector, clock, modules):
        caught = Cycle()
        caught_ref = weakref.ref(caught)
        modules.n += 1
        collector.tick()
        del caught
        clock.t += 60
        assert collector.tick() and caught_ref() is not None


def test_before_collect_runs_before_each_full_collection() -> None:
    cache: list[Cycle] = []
    calls: list[int] = []

    def release() -> None:
        calls.append(len(cache))
        cache.clear()

    with running(before_collect=(release,)) as (collector, clock, _modules):
        cache.append(Cycle())
        ref = weakref.ref(cache[0])
        clock.t += 60
        assert collector.tick() and ref() is None  # released by the callable, then collected
        assert calls == [0, 1]  # at start, then before this collection


def test_tick_before_start_or_after_stop_does_nothing() -> None:
    clock = Clock()
    collector = IdleCollector(clock=clock)
    clock.t += 10_000
    assert not collector.tick() and not collector.active
    collector.start()
    collector.stop()
    clock.t += 10_000
    assert not collector.tick() and collector.collections == 1
