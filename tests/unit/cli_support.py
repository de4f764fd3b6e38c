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
