"""Rollout benchmark: deploy to 1, 4, 8 and 16 simulated nodes with the real playbooks over SSH.

``.venv/bin/python -m bench.rollout [--sizes 1,4,8,16]`` prints, per fleet size: the first deploy's wall time
(pin + bundle + deploy.yml, every node health-gated), the idempotent rerun's time, the rollback time of one node
whose probe answer is wrong (failed gate -> previous release answering again), and a naive baseline that copies
the bundle with scp and restarts the agent over ssh, node after node (no verification, no gate). The marginal time
per node is the slope between the smallest and the largest fleet.

Anchors (goals on a 2-core machine): 16 nodes deployed and health-gated in < 60 s; rerun <= half the first run;
one failed node rolled back in < 10 s. Each fleet lives on 127.0.90.x (ssh port 2290) in its own temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELFLEET = str(Path(sys.executable).parent / "modelfleet")
PREFIX, PORT = "127.0.90", 2290


def _cli(project: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFLEET_", "ANSIBLE_"))}
    start = time.perf_counter()
    proc = subprocess.run([MODELFLEET, *args], cwd=project, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def _config(project: Path, registry: Path, nodes: int, prefix: str = PREFIX, port: int = PORT) -> None:
    state = project / "state"
    (project / "modelfleet.toml").write_text(
        f'[paths]\nstate_dir = "{state}"\n[registry]\ntracking_uri = "sqlite:///{registry}/mlflow.db"\n'
        f'artifact_root = "{registry}/mlartifacts"\ncache_dir = "{registry}/cache"\n'
        f'[ledger]\nurl = "sqlite:///{project}/ledger.db"\n[fleet]\ninventory = "{state}/sim/inventory.yml"\n'
        f'[sim]\naddress_prefix = "{prefix}"\nssh_port = {port}\nnodes = "cpu={nodes}"\n', encoding="utf-8")


def _rollback_seconds(settings: Any, run_id: str, node: str) -> float | None:
    """From the failed health gate to the previous release answering again, as the node-side step recorded it."""
    from modelfleet.runners.ansible import replay
    from modelfleet.runners.events import EventKind

    events, _, _ = replay(settings.state_dir, run_id)
    for e in events:
        step = e.data.get("modelfleet") if e.host == node and e.kind is EventKind.HOST_FAILED else None
        if isinstance(step, dict) and step.get("rolled_back_at") and step.get("gate_failed_at"):
            return float(step["rolled_back_at"]) - float(step["gate_failed_at"])
    return None


def _naive(settings: Any, bundle: Path, release: str) -> float:
    """scp the bundle to every node and restart its agent over ssh, one node after the other."""
    from modelfleet.core.fleet import Inventory

    start = time.perf_counter()
    for node in Inventory.load(settings.fleet.inventory).nodes:
        v = node.vars
        ssh_opts = [*shlex.split(str(v["ansible_ssh_common_args"])), "-i", str(v["ansible_ssh_private_key_file"])]
        target = f"{v['ansible_user']}@{node.address}"
        root = node.root
        incoming = f"{root}/run/{bundle.name}"
        subprocess.run(["scp", "-q", "-P", str(PORT), *ssh_opts, str(bundle), f"{target}:{incoming}"], check=True)
        rel = f"{root}/models/credit-risk/releases/naive-{release}"
        script = (f"set -e; rm -rf {rel}; mkdir -p {rel}; tar -xzf {incoming} -C {rel}; "
                  f"ln -sfn releases/naive-{release} {root}/models/credit-risk/current.naive; "
                  f"mv -Tf {root}/models/credit-risk/current.naive {root}/models/credit-risk/current; "
                  f"{v.get('modelfleet_supervisorctl', 'supervisorctl')} -c {v['modelfleet_supervisor_conf']} "
                  "restart modelfleet-agent-credit-risk >/dev/null")
        subprocess.run(["ssh", "-p", str(PORT), *ssh_opts, target, script], check=True)
    return time.perf_counter() - start


def run_size(nodes: int, registry: Path) -> dict[str, Any]:
    from modelfleet.core.bundle import verify_bundle
    from modelfleet.core.config import load_settings
    from modelfleet.sim.session import sim_fleet_session

    with tempfile.TemporaryDirectory(prefix="mf-b-") as tmp:
        project = Path(tmp)
        project.chmod(0o755)  # agents run as the nodes' service user, who must reach their root
        _config(project, registry, nodes)
        settings = load_settings(config_file=project / "modelfleet.toml")
        with sim_fleet_session(settings.state_dir, address_prefix=PREFIX, ssh_port=PORT, nodes=f"cpu={nodes}",
                               base=settings):
            t_prov, proc = _cli(project, "provision", "--yes")
            if proc.returncode:
                raise SystemExit(f"provision failed:\n{proc.stdout}\n{proc.stderr}")
            t_first, proc = _cli(project, "deploy", "credit-risk/2", "--yes", "--json")
            first = json.loads(proc.stdout)
            t_rerun, proc = _cli(project, "deploy", "credit-risk/2", "--yes", "--json")
            rerun = json.loads(proc.stdout)
            # one node answers the probe wrongly: measure its way back
            _, proc = _cli(project, "bundle", "credit-risk/3", "--json")
            bundle = Path(json.loads(proc.stdout)["bundle"])
            manifest = verify_bundle(bundle, settings.state_dir / "keys" / "release.pub")
            assert manifest.probe is not None
            host_vars = Path(settings.fleet.inventory).parent / "host_vars"
            host_vars.mkdir(exist_ok=True)
            bad = {"model_release_probe": {"request": manifest.probe["request"],
                                           "expected": {"predictions": [-1] * 3}}}
            (host_vars / "edge-cpu-01.yml").write_text(json.dumps(bad), encoding="utf-8")
            _, proc = _cli(project, "deploy", "credit-risk/3", "--yes", "--json", "--limit", "edge-cpu-01")
            (host_vars / "edge-cpu-01.yml").unlink()
            rollback = _rollback_seconds(settings, json.loads(proc.stdout)["run_id"], "edge-cpu-01")
            naive = _naive(settings, bundle, manifest.release_name)
    return {"nodes": nodes, "provision_s": round(t_prov, 1), "first_s": round(t_first, 1),
            "first_ok": first["ok"], "rerun_s": round(t_rerun, 1),
            "rerun_changed": sum(h["changed"] for h in rerun["hosts"].values()),
            "rollback_s": None if rollback is None else round(rollback, 1), "naive_s": round(naive, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.rollout")
    parser.add_argument("--sizes", default="1,4,8,16")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="mf-breg-") as reg:
        registry = Path(reg)
        seed_project = registry / "seed"
        seed_project.mkdir()
        _config(seed_project, registry, 1)
        _, proc = _cli(seed_project, "demo", "seed")
        if proc.returncode:
            raise SystemExit(f"demo seed failed:\n{proc.stderr}")
        rows = []
        for n in sizes:
            row = run_size(n, registry)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"{'nodes':>5} {'first s':>8} {'rerun s':>8} {'rerun/first':>11} {'rollback s':>10} {'naive s':>8}")
    for r in rows:
        ratio = r["rerun_s"] / r["first_s"] if r["first_s"] else 0.0
        print(f"{r['nodes']:>5} {r['first_s']:>8} {r['rerun_s']:>8} {ratio:>11.2f} {r['rollback_s']!s:>10} "
              f"{r['naive_s']:>8}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"marginal time per node: {(b['first_s'] - a['first_s']) / (b['nodes'] - a['nodes']):.2f} s "
              f"(naive: {(b['naive_s'] - a['naive_s']) / (b['nodes'] - a['nodes']):.2f} s)")
    last = rows[-1]
    print("anchors: 16 nodes < 60 s; rerun <= 0.5 x first; rollback < 10 s")
    ok = last["first_s"] < 60 and last["rerun_s"] <= last["first_s"] / 2 and (last["rollback_s"] or 99) < 10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
