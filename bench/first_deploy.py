"""First deploys, again and again, on one provisioned fleet: A/B two versions of the playbooks and roles.

``.venv/bin/python -m bench.first_deploy [--nodes 16] [--rounds 2] [--roots /path/a,/path/b]``

Provisioning 16 nodes takes minutes, a first deploy under one; this bench provisions once, then alternates
first deploys between the given Ansible roots (folders holding ansible.cfg, playbooks/ and roles/, for example a
``git worktree`` of an older commit; default: this repository), returning every node to "provisioned, never
deployed" in between (the model's agent program removed, its release, tokens, port record and journal deleted,
the controller's bundle deleted so the probe's expected answer is computed again). Each deploy is
``modelfleet deploy credit-risk/2`` with the default waves, every node health-gated, as in bench/rollout.py.

Printed per deploy: wall time, the controller's CPU and the nodes' CPU. The controller's is the CLI's children as
``RUSAGE_CHILDREN`` counts them (ansible-playbook, its workers and whatever of theirs was waited for; a process
that outlives its parent is missed: the hand rounds in docs/benchmarks.md, measured with a cpuacct cgroup, fell in
the same range); the nodes' is the rest of the machine's busy
CPU (sshd sessions, Mitogen's interpreters, supervisord, the agents, and anything else running: keep the machine
otherwise idle). The nodes run the agent installed at provisioning, from this
repository's source. Fleet on 127.0.92.x, ssh port 2292.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.rollout import MODELFLEET, REPO, _cli, _config

PREFIX, PORT = "127.0.92", 2292


def _machine_cpu() -> float:
    """Busy CPU-seconds of the whole machine so far (user, nice, system, irq, softirq)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()[1:]
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / ticks


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reset_nodes(settings: Any, model: str = "credit-risk") -> None:
    """Every node back to provisioned and never deployed; the controller's bundles gone."""
    from modelfleet.core.fleet import Inventory

    nodes = Inventory.load(settings.fleet.inventory).nodes
    procs = []
    for node in nodes:
        conf = Path(str(node.vars["modelfleet_supervisor_conf"]))
        (conf.parent / "conf.d" / f"modelfleet-agent-{model}.conf").unlink(missing_ok=True)
        ctl = str(node.vars.get("modelfleet_supervisorctl", "supervisorctl"))
        procs.append(subprocess.Popen([ctl, "-c", str(conf), "update"], stdout=subprocess.DEVNULL))
    for p in procs:
        p.wait(60)
    for node in nodes:
        root = Path(node.root)
        shutil.rmtree(root / "models" / model, ignore_errors=True)
        for path in [*(root / "etc" / "agents").glob(f"{model}.*"), root / "etc" / "agents" / "ports.json",
                     *(root / "log").glob(f"agent-{model}*"), root / "log" / "deployments.jsonl",
                     *(root / "run").glob("*")]:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    shutil.rmtree(settings.state_dir / "bundles", ignore_errors=True)


def first_deploy(project: Path, ansible_root: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFLEET_", "ANSIBLE_"))}
    env["MODELFLEET_ANSIBLE_ROOT"] = str(ansible_root)
    cpu0, all0, t0 = _children_cpu(), _machine_cpu(), time.perf_counter()
    proc = subprocess.run([MODELFLEET, "deploy", "credit-risk/2", "--yes", "--json"], cwd=project, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    controller, machine = _children_cpu() - cpu0, _machine_cpu() - all0
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"deploy from {ansible_root} gave no JSON (rc {proc.returncode}):\n{proc.stderr}") from None
    if not out.get("ok"):
        raise SystemExit(f"deploy from {ansible_root} failed: {proc.stdout[-2000:]}")
    return {"root": str(ansible_root), "wall_s": round(wall, 1), "controller_cpu_s": round(controller, 1),
            "nodes_cpu_s": round(machine - controller, 1), "changed": sum(h["changed"] for h in out["hosts"].values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.first_deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--roots", default=str(REPO), help="comma-separated Ansible roots to alternate")
    args = parser.parse_args(argv)
    roots = [Path(r).resolve() for r in args.roots.split(",")]
    for r in roots:
        if not (r / "ansible.cfg").is_file() or not (r / "playbooks" / "deploy.yml").is_file():
            parser.error(f"{r} has no ansible.cfg and playbooks/deploy.yml")

    from modelfleet.core.config import load_settings
    from modelfleet.sim.session import sim_fleet_session

    with tempfile.TemporaryDirectory(prefix="mf-bfd-") as tmp:
        project = Path(tmp)
        project.chmod(0o755)  # agents run as the nodes' service user, who must reach their root
        registry = project / "registry"
        registry.mkdir()
        _config(project, registry, args.nodes, prefix=PREFIX, port=PORT)
        settings = load_settings(config_file=project / "modelfleet.toml")
        _, proc = _cli(project, "demo", "seed")
        if proc.returncode:
            raise SystemExit(f"demo seed failed:\n{proc.stderr}")
        with sim_fleet_session(settings.state_dir, address_prefix=PREFIX, ssh_port=PORT, nodes=f"cpu={args.nodes}",
                               base=settings):
            t_prov, proc = _cli(project, "provision", "--yes")
            if proc.returncode:
                raise SystemExit(f"provision failed:\n{proc.stdout}\n{proc.stderr}")
            print(json.dumps({"nodes": args.nodes, "provision_s": round(t_prov, 1)}), flush=True)
            rows = []
            for _ in range(args.rounds):
                for root in roots:
                    reset_nodes(settings)
                    time.sleep(1)
                    row = first_deploy(project, root)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(f"{'root':<40} {'wall s':>7} {'controller CPU s':>17} {'nodes CPU s':>12}")
    for r in rows:
        print(f"{r['root'][-40:]:<40} {r['wall_s']:>7} {r['controller_cpu_s']:>17} {r['nodes_cpu_s']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
