"""Demo traffic: rows resampled from a version's reference sample, sent to the agents at a chosen rate, shifted.

A shift applies to every node or to one (``[NODE:]FEATURE=SPEC``):

- ``income=+25%`` / ``income=-10%``: a numeric feature multiplied by 1.25 / 0.9 (integer columns rounded);
- ``purpose=new-category:5%``: 5 % of the rows get a category the reference never saw (``new-purpose``).

Rows come from one seeded generator per node (``seed`` + the node's position), so the same command sends the
same rows. The sender keeps ``rate`` requests per second per node (``rate <= 0``: as fast as the agents answer)
of ``batch`` rows each, for ``duration`` seconds or ``requests`` requests per node, whichever ends first.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelfleet.core.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from modelfleet.core.fleet import Node

SHIFT_FORMS = "write [NODE:]FEATURE=+25% (scale a number) or [NODE:]FEATURE=new-category:5% (unseen values)"
_SCALE = re.compile(r"^([+-]?\d+(?:\.\d+)?)%$")
_NEW = re.compile(r"^new-category:(\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class Shift:
    feature: str
    kind: str  # "scale" | "new-category"
    amount: float  # fraction: +0.25 scales by 1.25; 0.05 of rows get a new category
    node: str | None = None  # None: every node

    def __str__(self) -> str:
        where = f"{self.node}:" if self.node else ""
        spec = f"{self.amount * 100:+g}%" if self.kind == "scale" else f"new-category:{self.amount * 100:g}%"
        return f"{where}{self.feature}={spec}"


def parse_shift(text: str) -> Shift:
    """``[NODE:]FEATURE=+25%`` or ``[NODE:]FEATURE=new-category:5%``; UsageError names what is wrong."""
    target, sep, spec = text.strip().partition("=")
    if not sep or not target or not spec:
        raise UsageError(f"--shift {text!r} is not FEATURE=SPEC", hint=SHIFT_FORMS)
    node, _, feature = target.rpartition(":")
    if m := _SCALE.match(spec):
        amount = float(m.group(1)) / 100.0
        if amount <= -1.0:
            raise UsageError(f"--shift {text!r} would make values zero or negative", hint="use a change above -100%")
        return Shift(feature, "scale", amount, node or None)
    if m := _NEW.match(spec):
        amount = float(m.group(1)) / 100.0
        if not 0 < amount <= 1:
            raise UsageError(f"--shift {text!r}: the share of new categories must be in (0%, 100%]",
                             hint=SHIFT_FORMS)
        return Shift(feature, "new-category", amount, node or None)
    raise UsageError(f"--shift {text!r}: {spec!r} is not a shift", hint=SHIFT_FORMS)


def check_shifts(shifts: Sequence[Shift], columns: Sequence[str], numeric: Sequence[str],
                 nodes: Sequence[str]) -> None:
    for s in shifts:
        if s.feature not in columns:
            raise UsageError(f"--shift {s}: no feature {s.feature!r} in the reference sample",
                             hint=f"features: {', '.join(columns)}")
        if s.kind == "scale" and s.feature not in numeric:
            raise UsageError(f"--shift {s}: {s.feature!r} is not numeric", hint="scale numbers; use "
                             "new-category:N% for categories")
        if s.kind == "new-category" and s.feature in numeric:
            raise UsageError(f"--shift {s}: {s.feature!r} is numeric", hint="use FEATURE=+N% for numbers")
        if s.node is not None and s.node not in nodes:
            raise UsageError(f"--shift {s}: no node {s.node!r} in this traffic", hint=f"nodes: {', '.join(nodes)}")


def apply_shifts(frame: pd.DataFrame, shifts: Sequence[Shift], rng: Any) -> pd.DataFrame:
    """A copy of ``frame`` with ``shifts`` applied (``rng``: numpy Generator for the new-category rows)."""
    out = frame.copy()
    for s in shifts:
        col = out[s.feature]
        if s.kind == "scale":
            scaled = col.astype(float) * (1.0 + s.amount)
            out[s.feature] = scaled.round().astype(col.dtype) if col.dtype.kind in "iu" else scaled
        else:
            hit = rng.random(len(out)) < s.amount
            values = col.astype(object).to_numpy(copy=True)
            values[hit] = f"new-{s.feature}"
            out[s.feature] = values
    return out


@dataclass
class NodeTally:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    last_error: str | None = None


@dataclass
class TrafficPlan:
    nodes: Sequence[Node]
    sample: pd.DataFrame
    shifts: Sequence[Shift] = ()
    rate: float = 2.0  # requests per second per node; <= 0: as fast as answered
    batch: int = 2
    duration_s: float | None = None
    requests: int | None = None  # per node
    seed: int = 7
    token: str | None = None
    tallies: dict[str, NodeTally] = field(default_factory=dict)


def _bodies(plan: TrafficPlan, index: int, node: Node, count: int) -> list[dict[str, Any]]:
    import json

    import numpy as np

    rng = np.random.default_rng(plan.seed + index)
    rows = plan.sample.iloc[rng.integers(0, len(plan.sample), count * plan.batch)].reset_index(drop=True)
    mine = [s for s in plan.shifts if s.node in (None, node.name)]
    rows = apply_shifts(rows, mine, rng)
    records = json.loads(rows.to_json(orient="records"))
    return [{"dataframe_records": records[i * plan.batch:(i + 1) * plan.batch]} for i in range(count)]


def _drive(plan: TrafficPlan, index: int, node: Node, stop: threading.Event) -> None:
    import httpx

    tally = plan.tallies.setdefault(node.name, NodeTally())
    chunk = 256
    headers = {"authorization": f"Bearer {plan.token}"} if plan.token else {}
    deadline = None if plan.duration_s is None else time.monotonic() + plan.duration_s
    interval = 1.0 / plan.rate if plan.rate > 0 else 0.0
    next_at = time.monotonic()
    pending: list[dict[str, Any]] = []
    n = 0
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        while not stop.is_set():
            if plan.requests is not None and tally.sent >= plan.requests:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            if not pending:
                pending = _bodies(plan, index + 1000 * n, node, chunk)
                n += 1
            body = pending.pop(0)
            try:
                r = client.post(f"{node.agent_url}/invocations", json=body, headers=headers)
                tally.sent += 1
                if r.status_code == 200:
                    tally.ok += 1
                else:
                    tally.failed += 1
                    tally.last_error = f"HTTP {r.status_code}: {r.text[:120]}"
            except httpx.HTTPError as exc:
                tally.sent += 1
                tally.failed += 1
                tally.last_error = str(exc)[:120] or type(exc).__name__
                stop.wait(1.0)  # an agent that is down: do not spin
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                else:
                    next_at = time.monotonic()


def run(plan: TrafficPlan, *, stop: threading.Event | None = None,
        progress: Callable[[Mapping[str, NodeTally]], None] | None = None,
        every_s: float = 10.0) -> dict[str, NodeTally]:
    """Send the planned traffic until it is done or ``stop`` is set; returns the per-node tallies."""
    stop = stop or threading.Event()
    threads = [threading.Thread(target=_drive, args=(plan, i, node, stop), name=f"traffic-{node.name}", daemon=True)
               for i, node in enumerate(plan.nodes)]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=every_s / max(len(threads), 1))
            if progress is not None:
                progress(plan.tallies)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    return plan.tallies
