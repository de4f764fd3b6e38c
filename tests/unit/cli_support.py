"""Shared helpers for subprocess tests of the installed ``modelfleet`` command: a clean environment and a small
hand-written inventory (the shape `modelfleet sim up` writes) for commands that read one without a live fleet."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

MODELFLEET = str(Path(sys.executable).parent / "modelfleet")


def run(project: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """``modelfleet ARGS`` in ``project`` with no MODELFLEET_* variables but ``env``; no terminal on stdin."""
    return subprocess.run([MODELFLEET, *args], cwd=project, env=clean_env(**env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def clean_env(**env: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}, **env}


def closed_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_inventory(path: Path, nodes: dict[str, tuple[str, str]], *, agent_port: int,
                    environment: str = "staging") -> Path:
    """An inventory of ``nodes`` (name -> (class, address)) under edge_<class>, all in ``environment``."""
    lines = ["all:", "  children:", "    edge:", "      vars:", f"        modelfleet_agent_port: {agent_port}",
             "      children:"]
    for node_class in ("cpu", "gpu", "arm"):
        members = {n: a for n, (c, a) in nodes.items() if c == node_class}
        lines.append(f"        edge_{node_class}:")
        lines.append("          hosts:" + ("" if members else " {}"))
        for name, address in members.items():
            lines += [f"            {name}:", f"              ansible_host: {address}",
                      f"              modelfleet_node_class: {node_class}",
                      f"              modelfleet_agent_address: {address}"]
    lines += [f"    {environment}:", "      hosts:"] + [f"        {n}:" for n in nodes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def placed_fleet(folder: Path) -> tuple[Path, dict[str, str]]:
    """An inventory of three nodes whose agents refuse connections, and a real ledger in which credit-risk v2 was
    deployed to edge-cpu-01 and edge-arm-01 (run r1), then v3 to edge-arm-01 (run r2); edge-cpu-02 never had it.
    Returns ``folder`` and the MODELFLEET_* variables that point commands at them."""
    from modelfleet.core.ledger import Ledger

    inventory = write_inventory(folder / "inventory.yml", {"edge-cpu-01": ("cpu", "127.0.0.1"),
                                                          "edge-cpu-02": ("cpu", "127.0.0.1"),
                                                          "edge-arm-01": ("arm", "127.0.0.1")},
                                agent_port=closed_port())
    ledger_url = f"sqlite:///{folder}/ledger.db"
    with Ledger(ledger_url) as ledger:
        for run_id, version, nodes in (("r1", "2", ("edge-cpu-01", "edge-arm-01")), ("r2", "3", ("edge-arm-01",))):
            ledger.append("run_start", actor="ops", model="credit-risk", version=version, run_id=run_id,
                          outcome="started", details={"kind": "deploy"})
            for node in nodes:
                ledger.append("node_deploy", actor="ops", model="credit-risk", version=version, node=node,
                              run_id=run_id, outcome="changed")
            ledger.append("run_end", actor="ops", model="credit-risk", version=version, run_id=run_id, outcome="ok")
    return folder, {"MODELFLEET_FLEET_INVENTORY": str(inventory), "MODELFLEET_LEDGER_URL": ledger_url}
