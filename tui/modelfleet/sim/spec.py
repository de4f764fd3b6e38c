"""Parse a fleet spec such as ``cpu=3,gpu=1,arm=2`` into planned nodes with names and loopback addresses.

Node N (1-based, in spec order) gets ``<prefix>.N``; names are ``edge-<class>-<NN>`` per class. At most 250
nodes, so addresses stay in ``.1``-``.250`` of the /24 and clear of ``.255``.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelfleet.core.errors import UsageError
from modelfleet.core.fleet import NodeClass

MAX_NODES = 250
SPEC_HINT = 'write the spec as class=count pairs, e.g. --nodes "cpu=3,gpu=1,arm=2" (classes: cpu, gpu, arm)'


@dataclass(frozen=True)
class PlannedNode:
    name: str
    node_class: NodeClass
    address: str
    index: int  # 1-based position in the fleet; the address' last octet


def parse_spec(text: str, *, origin: str = "--nodes") -> list[tuple[NodeClass, int]]:
    """``"cpu=3,gpu=1"`` -> ``[(cpu, 3), (gpu, 1)]``. Anything odd -> UsageError naming the bad part."""
    counts: list[tuple[NodeClass, int]] = []
    seen: set[NodeClass] = set()
    allowed = ", ".join(c.value for c in NodeClass)
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, count_text = (p.strip() for p in part.partition("="))
        if not sep:
            raise UsageError(f"{origin}: {part!r} in {text!r} is not class=count", hint=SPEC_HINT)
        try:
            node_class = NodeClass(name.lower())
        except ValueError:
            raise UsageError(
                f"{origin}: unknown node class {name!r} in {text!r}; known classes: {allowed}", hint=SPEC_HINT
            ) from None
        if node_class in seen:
            raise UsageError(f"{origin}: class {name!r} given twice in {text!r}", hint=SPEC_HINT)
        if not count_text.isdigit():
            raise UsageError(
                f"{origin}: count {count_text!r} for {name} in {text!r} is not a whole number", hint=SPEC_HINT
            )
        seen.add(node_class)
        counts.append((node_class, int(count_text)))
    total = sum(n for _, n in counts)
    if total == 0:
        raise UsageError(f"{origin}: {text!r} asks for no nodes; a fleet needs at least one", hint=SPEC_HINT)
    if total > MAX_NODES:
        raise UsageError(
            f"{origin}: {text!r} asks for {total} nodes; the simulated fleet holds at most {MAX_NODES}",
            hint=f"ask for {MAX_NODES} nodes or fewer",
        )
    return counts


def plan_nodes(text: str, address_prefix: str, *, origin: str = "--nodes") -> list[PlannedNode]:
    """Names and addresses for every node of the spec, in order."""
    planned: list[PlannedNode] = []
    for node_class, count in parse_spec(text, origin=origin):
        for i in range(1, count + 1):
            index = len(planned) + 1
            planned.append(
                PlannedNode(
                    name=f"edge-{node_class.value}-{i:02d}",
                    node_class=node_class,
                    address=f"{address_prefix}.{index}",
                    index=index,
                )
            )
    return planned


def format_spec(counts: list[tuple[NodeClass, int]]) -> str:
    return ",".join(f"{c.value}={n}" for c, n in counts)
