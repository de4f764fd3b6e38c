"""IdleCollector: automatic full collections off while the console runs, its own ones only when idle."""

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


class Cycle:
    def __init__(self) -> None:
        self.me = self


@contextmanager
def running(**options: Any) -> Iterator[tuple[IdleCollector, Clock]]:
    """A started collector on a clock the test moves; the interpreter's settings are put back afterwards."""
    clock = Clock()
    collector = IdleCollector(clock=clock, **options)
    collector.start()
    try:
        yield collector, clock
    finally:
        collector.stop()


def test_start_freezes_and_turns_off_automatic_full_collections_stop_puts_them_back() -> None:
    before = gc.get_threshold()
    with running() as (collector, _clock):
        assert gc.get_threshold()[2] == NO_AUTOMATIC_FULL and gc.get_freeze_count() > 0
        assert collector.collections == 1 and collector.deep_collections == 1
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_collects_only_when_idle_and_not_too_often_but_always_after_the_maximum() -> None:
    with running(idle_s=2, min_interval_s=30, max_interval_s=300, deep_interval_s=600,
                 deep_growth=1e9) as (collector, clock):
        clock.t += 10
        assert not collector.tick()  # idle, but the last collection was 10 s ago
        clock.t += 25
        collector.input_seen()
        assert not collector.tick()  # 35 s since the last one, but the user just typed
        clock.t += 2
        assert collector.tick() and collector.collections == 2 and collector.deep_collections == 1
        for _ in range(301):  # typing without pause: collected anyway after 300 s, never deep while typing
            clock.t += 1
            collector.input_seen()
            collector.tick()
        assert collector.collections == 3 and collector.deep_collections == 1
        clock.t += 600
        assert collector.tick() and collector.deep_collections == 2  # idle and 10 min since the last deep one


def test_cyclic_garbage_is_reclaimed_by_its_collections() -> None:
    with running(deep_interval_s=600, deep_growth=1e9) as (collector, clock):
        young = Cycle()
        young_ref = weakref.ref(young)
        del young
        clock.t += 60
        assert collector.tick() and young_ref() is None  # allocated after the freeze: a plain collection
        old = Cycle()
        collector.collect(deep=False)  # survives a collection: frozen
        old_ref = weakref.ref(old)
        del old
        clock.t += 60
        collector.tick()
        assert old_ref() is not None  # frozen garbage waits for the deep collection
        clock.t += 600
        assert collector.tick() and collector.deep_collections == 2 and old_ref() is None


def test_a_grown_frozen_heap_gets_a_deep_collection_when_idle() -> None:
    with running(deep_interval_s=1e9, deep_growth=0.25) as (collector, clock):
        clock.t += 60
        assert collector.tick() and collector.deep_collections == 1  # nothing new: a plain one
        kept = [Cycle() for _ in range(gc.get_freeze_count() // 2)]  # +50% long-lived objects
        clock.t += 60
        collector.input_seen()
        clock.t += 1
        assert not collector.tick()  # typing: nothing (for up to max_interval_s)
        clock.t += 60
        assert collector.tick() and collector.deep_collections == 1  # idle: a plain one freezes the new objects
        clock.t += 60
        assert collector.tick() and collector.deep_collections == 2  # the frozen heap grew by 50%: a deep one
        del kept


def test_tick_before_start_or_after_stop_does_nothing() -> None:
    clock = Clock()
    collector = IdleCollector(clock=clock)
    clock.t += 10_000
    assert not collector.tick() and not collector.active
    collector.start()
    collector.stop()
    clock.t += 10_000
    assert not collector.tick() and collector.collections == 1
