#!/usr/bin/env python3
"""Inventory script for the simulated fleet: prints the inventory `modelfleet sim up` generated, as JSON.

Where it looks, first match wins: $MODELFLEET_FLEET_INVENTORY, $MODELFLEET_PATHS_STATE_DIR/sim/inventory.yml,
<repo>/.modelfleet/sim/inventory.yml. No fleet yet: an empty inventory (run `modelfleet sim up`).
The simulated fleet's own settings (no service user, local facts inside each node's root, supervisord, the
hardware check off) are in the generated inventory itself, so the CLI (which reads that file directly) and this
script see the same fleet.

SSH host keys: the generated inventory keeps StrictHostKeyChecking=yes against the fleet's own known_hosts file
(one generated host key for every node address). If you point this inventory at nodes without that file, turn
host key checking off in a group_vars/edge.yml beside this script ONLY, never in ansible.cfg or
inventory/example: ``ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def source() -> Path:
    if os.environ.get("MODELFLEET_FLEET_INVENTORY"):
        return Path(os.environ["MODELFLEET_FLEET_INVENTORY"])
    if os.environ.get("MODELFLEET_PATHS_STATE_DIR"):
        return Path(os.environ["MODELFLEET_PATHS_STATE_DIR"]) / "sim" / "inventory.yml"
    return REPO / ".modelfleet" / "sim" / "inventory.yml"


def walk(name: str, group: dict, out: dict, hostvars: dict) -> None:
    group = group or {}
    entry = out.setdefault(name, {"hosts": [], "vars": {}, "children": []})
    for host, hv in (group.get("hosts") or {}).items():
        entry["hosts"].append(host)
        hostvars.setdefault(host, {}).update(hv or {})
    entry["vars"].update(group.get("vars") or {})
    for child, sub in (group.get("children") or {}).items():
        entry["children"].append(child)
        walk(child, sub, out, hostvars)


def main() -> int:
    if "--host" in sys.argv:
        print("{}")
        return 0
    path = source()
    out: dict = {}
    hostvars: dict = {}
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        for name, group in data.items():
            walk(name, group, out, hostvars)
    out["_meta"] = {"hostvars": hostvars}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
