"""A real supervisord for one test (the simulated nodes' own code: config, socket and logs in a short temp root),
and a helper to run supervisorctl against it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from modelfleet.core.fleet import NodeClass
from modelfleet.sim import supervisor
from modelfleet.sim.inventory import supervisorctl
from modelfleet.sim.state import NodeState


def run(cmd: Sequence[str]) -> tuple[int, str, str]:
    """A command's (rc, stdout, stderr): the runner ``AgentService`` takes."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@contextlib.contextmanager
def running_supervisord() -> Iterator[NodeState]:
    """A node whose supervisord runs for the block (root under /tmp: unix socket paths are short)."""
    root = Path(tempfile.mkdtemp(prefix="mf-sv-", dir="/tmp"))
    node = NodeState("edge-t-01", "127.0.0.1", NodeClass.CPU, root)
    ref = supervisor.start(node)
    try:
        yield node
    finally:
        supervisor.stop(ref)
        shutil.rmtree(root, ignore_errors=True)


def add_program(node: NodeState, name: str, text: str) -> None:
    """Drop ``[program:name]`` with ``text`` into conf.d and apply it (``update``: autostart starts it)."""
    (node.root / "etc" / "supervisor" / "conf.d" / f"{name}.conf").write_text(f"[program:{name}]\n{text}")
    rc, out, err = ctl(node, "update")
    assert rc == 0, out + err


def ctl(node: NodeState, *args: str) -> tuple[int, str, str]:
    return run([str(supervisorctl()), "-c", str(node.supervisor_conf), *args])
