"""Helpers for tests that need a running simulated fleet and real Ansible runs against it.

``make_sim_fleet(prefix, port, nodes)`` is a context manager (also exposed as the session fixture factory
``make_sim_fleet`` in conftest.py); each test module picks its own loopback prefix and ssh port so modules
and engineers never share addresses. ``ansible_adhoc`` runs the venv's ``ansible`` with the repo's ansible.cfg.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelfleet.sim.session import RunningFleet, sim_fleet_session

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ANSIBLE_CFG = REPO_ROOT / "ansible.cfg"


@contextlib.contextmanager
def make_sim_fleet(
    prefix: str, port: int, nodes: str = "cpu=3,gpu=1,arm=2", *, base_dir: Path | None = None
) -> Iterator[RunningFleet]:
    """A fleet on ``<prefix>.1..N`` with its sshd on ``port``, in a fresh short state dir; always torn down.

    The state dir is short on purpose (``/tmp/mf-XXXX``): supervisord's unix sockets live under it and unix
    socket paths are limited to 107 bytes.
    """
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mf-", dir=base_dir)))
        # mkdtemp makes the folder 0700; agents run as the nodes' service user, who must reach their node root.
        tmp.chmod(0o755)
        yield stack.enter_context(sim_fleet_session(tmp / "state", address_prefix=prefix, ssh_port=port, nodes=nodes))


def ansible_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ANSIBLE_CFG), ANSIBLE_NOCOLOR="1")
    return env


def ansible_adhoc(
    inventory: Path, pattern: str, module: str, args: str | None = None, *, verbose: int = 0, timeout: float = 120,
    strategy: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``ansible -i INVENTORY PATTERN -m MODULE [-a ARGS]`` as a subprocess (``verbose=3`` adds ``-vvv``).

    ``strategy`` overrides ansible.cfg's (``modelfleet_linear``, Mitogen), e.g. ``"linear"`` for plain Ansible.
    """
    cmd = [str(VENV_BIN / "ansible"), "-i", str(inventory), pattern, "-m", module]
    if args is not None:
        cmd += ["-a", args]
    if verbose:
        cmd.append("-" + "v" * verbose)
    env = ansible_env()
    if strategy is not None:
        env["ANSIBLE_STRATEGY"] = strategy
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=timeout, check=False)


def host_results(output: str) -> dict[str, str]:
    """``{"edge-cpu-01": "SUCCESS", "edge-cpu-02": "UNREACHABLE!", ...}`` from ad-hoc output.

    Ad-hoc runs print ``<host> | <STATUS> => {...}`` (or ``| CHANGED | rc=0 >>``) at the start of a line.
    """
    results: dict[str, str] = {}
    for line in output.splitlines():
        host, sep, rest = line.partition(" | ")
        if sep and host.strip() and " " not in host.strip():
            results[host.strip()] = rest.split()[0].rstrip(":") if rest.split() else ""
    return results
