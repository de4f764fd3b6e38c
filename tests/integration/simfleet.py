"""Helpers for tests that need a running simulated fleet and real Ansible runs against it.

``make_sim_fleet(prefix, port, nodes)`` is a context manager (also exposed as the session fixture factory
``make_sim_fleet`` in conftest.py); each test module picks its own loopback prefix and ssh port so modules
and engineers never share addresses. ``ansible_adhoc`` runs the venv's ``ansible`` with the repo's ansible.cfg.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

from modelfleet.core.errors import ModelfleetError
from modelfleet.sim.fleet import SimFleet
from modelfleet.sim.session import RunningFleet, fleet_settings, sim_fleet_session

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
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=FLEET_DIR_PREFIX, dir=base_dir)))
        # mkdtemp makes the folder 0700; agents run as the nodes' service user, who must reach their node root.
        tmp.chmod(0o755)
        me = psutil.Process()
        (tmp / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "create_time": me.create_time(),
                                                  "prefix": prefix, "port": port}), encoding="utf-8")
        yield stack.enter_context(sim_fleet_session(tmp / "state", address_prefix=prefix, ssh_port=port, nodes=nodes))


FLEET_DIR_PREFIX = "mf-"
#: who brought a fleet up (pid and start time of the test process), written into its folder
OWNER_FILE = "owner.json"


def reap_orphaned_fleets(base_dir: Path | None = None) -> list[Path]:
    """Bring down and remove the fleets under ``base_dir`` (default: the temp dir) whose test process is gone.

    A pytest worker that dies (killed, crashed) never runs its fleet's teardown: the fleet's sshd, supervisords and
    agents go on listening on its addresses, and the next session's fleet on those addresses cannot start. The test
    session's controller calls this first (tests/conftest.py). A fleet whose owner still runs (another session)
    is left alone. Returns the folders reaped."""
    reaped = []
    for owner_file in sorted(Path(base_dir or tempfile.gettempdir()).glob(f"{FLEET_DIR_PREFIX}*/{OWNER_FILE}")):
        folder = owner_file.parent
        try:
            owner = json.loads(owner_file.read_text(encoding="utf-8"))
            alive = psutil.Process(int(owner["pid"])).create_time() == owner["create_time"]
        except psutil.NoSuchProcess:
            alive = False
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours, or being written
        if alive:
            continue
        settings = fleet_settings(folder / "state", address_prefix=str(owner["prefix"]), ssh_port=int(owner["port"]))
        try:
            SimFleet(settings).down()
        except ModelfleetError as exc:
            sys.stderr.write(f"tests: the orphaned fleet in {folder} did not come down cleanly: {exc.message}\n")
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped


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


def write_project(running: RunningFleet, nodes: str, *, extra: str = "") -> Path:
    """A project folder beside the fleet's state dir with a modelfleet.toml that points at this fleet (registry
    and ledger inside it); returns the folder. ``extra`` is appended TOML (e.g. a [monitor] section)."""
    project = Path(running.settings.state_dir).parent
    state = running.settings.state_dir
    project.chmod(0o755)  # agents may run as the nodes' service user, who must reach their root
    sim = running.settings.sim
    (project / "modelfleet.toml").write_text(
        f'[paths]\nstate_dir = "{state}"\n'
        f'[registry]\ntracking_uri = "sqlite:///{project}/mlflow.db"\n'
        f'artifact_root = "{project}/mlartifacts"\ncache_dir = "{state}/cache"\n'
        f'[ledger]\nurl = "sqlite:///{project}/ledger.db"\n'
        f'[fleet]\ninventory = "{running.inventory}"\n'
        f'[sim]\naddress_prefix = "{sim.address_prefix}"\nssh_port = {sim.ssh_port}\nnodes = "{nodes}"\n' + extra,
        encoding="utf-8",
    )
    return project


def run_cli(project: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """``modelfleet ARGS`` in ``project`` with none of the caller's MODELFLEET_*/ANSIBLE_* settings (the
    project's modelfleet.toml decides), except the wheelhouse folder ``mfns`` gives each engineer."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODELFLEET_", "ANSIBLE_")) or k == "MODELFLEET_WHEELHOUSE_DIR"}
    return subprocess.run([str(VENV_BIN / "modelfleet"), *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


class ProjectCtx:
    """A running fleet and the project folder that points at it (:func:`write_project`)."""

    def __init__(self, running: RunningFleet, project: Path) -> None:
        from modelfleet.core.config import load_settings

        self.running = running
        self.project = project
        self.settings = load_settings(config_file=project / "modelfleet.toml")

    def cli(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        return run_cli(self.project, *args, timeout=timeout)


def run_processes(run_id: str) -> list[str]:
    """Command lines of the processes still working for a run: ansible-playbook, its forks and ssh clients.

    OpenSSH's ControlPersist masters (``ssh: <socket> [mux]``) are left out: they are idle connection caches
    that inherited the run's environment and expire on their own (ansible.cfg's ControlPersist), not work."""
    alive = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"MODELFLEET_RUN_ID={run_id}".encode() not in (proc / "environ").read_bytes():
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmdline.startswith("ssh:") and cmdline.endswith("[mux]"):
            continue
        alive.append(cmdline)
    return alive
