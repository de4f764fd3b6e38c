"""Prometheus file_sd targets from the inventory: one target group per node, its agent as the target.

``monitoring/prometheus.yml`` reads ``monitoring/targets/*.json``; ``modelfleet monitor targets`` writes them::

    [{"targets": ["127.0.10.1:8080"],
      "labels": {"node": "edge-cpu-01", "node_class": "cpu", "environment": "staging", "groups": "edge,edge_cpu"}}]

The ``node`` label is what the Prometheus monitoring source groups samples by (core/monitor_sources.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from modelfleet.core.fleet import Inventory


def file_sd(inventory: Inventory, limit: str | None = None) -> list[dict[str, Any]]:
    out = []
    for node in inventory.select(limit):
        labels = {"node": node.name, "node_class": node.node_class.value, "groups": ",".join(node.groups)}
        if node.environment:
            labels["environment"] = node.environment
        out.append({"targets": [f"{node.address}:{node.agent_port}"], "labels": labels})
    return out


def write_file_sd(path: Path, groups: list[dict[str, Any]]) -> bool:
    """Write ``groups`` atomically (Prometheus never reads half a file); False when the file was already so."""
    text = json.dumps(groups, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True
