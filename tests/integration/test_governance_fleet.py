"""Governance enforced on every path to production, on a simulated fleet over SSH.

One 2-node fleet for the module (127.0.97.1-2, ssh port 2297): edge-cpu-02 is in the protected environment
``prod`` (its inventory variable ``modelfleet_environment``), edge-cpu-01 in none. The demo registry is seeded and
the fleet provisioned (each node gets the trust file and its environment). The tests run in file order: an
unapproved production deploy is refused before any node is touched, by the CLI and by a plain ansible-playbook
run; a tampered clearance is refused by the prod node itself (controller check skipped); after a manager's and a
QA person's approval the deploy goes through; an ops break-glass deploys an unapproved version and is recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.core.ledger import Ledger
from tests.conftest import REPO_ROOT
from tests.integration.simfleet import VENV_BIN, ProjectCtx, ansible_env, write_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

PREFIX, SSH_PORT, NODES = "127.0.97", 2297, "cpu=2"
PROD_NODE, OTHER_NODE = "edge-cpu-02", "edge-cpu-01"


class Ctx(ProjectCtx):
    def env(self, person: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MODELFLEET_", "ANSIBLE_")) or k == "MODELFLEET_WHEELHOUSE_DIR"}
        if person:
            env["MODELFLEET_GOVERNANCE_IDENTITY"] = str(self.settings.state_dir / "demo" / "identities" /
                                                        f"{person}.key")
        return env

    def run(self, *args: str, person: str | None = None) -> subprocess.CompletedProcess[str]:
        """``modelfleet ARGS`` as ``person`` (the demo identity whose key is used); shown with ``pytest -s``."""
        proc = subprocess.run([str(VENV_BIN / "modelfleet"), *args], cwd=self.project, env=self.env(person),
                              capture_output=True, text=True, timeout=1500, check=False)
        print(f"\n=== {person or ''}$ modelfleet {' '.join(args)}   # exit {proc.returncode}\n"
              f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return proc

    def playbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A plain ``ansible-playbook playbooks/deploy.yml`` from the project folder (MODELFLEET_CONFIG tells the
        controller steps which project's policy and keys to use)."""
        env = {**self.env(None), **ansible_env(), "MODELFLEET_CONFIG": str(self.project / "modelfleet.toml")}
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(self.running.inventory),
                               str(REPO_ROOT / "playbooks" / "deploy.yml"), *args], cwd=self.project, env=env,
                              capture_output=True, text=True, timeout=1500, check=False)
        print(f"\n=== $ ansible-playbook playbooks/deploy.yml {' '.join(args)}   # exit {proc.returncode}\n"
              f"{proc.stdout[-5000:]}")
        return proc

    def node_files(self) -> dict[str, str]:
        """Every release folder and current/previous link of credit-risk on both nodes."""
        out = {}
        for root in sorted(Path(self.running.settings.state_dir).rglob("models/credit-risk")):
            for path in sorted(root.rglob("*")):
                if path.is_symlink():
                    out[str(path)] = "-> " + os.readlink(path)
                elif path.parent.name == "releases":
                    out[str(path)] = "release"
        return out

    def current(self, node: str) -> str:
        (link,) = [p for p in Path(self.running.settings.state_dir).rglob("models/credit-risk/current")
                   if node in str(p)]
        return os.readlink(link)

    def pinned(self, ref: str) -> dict[str, Any]:
        proc = self.run("bundle", ref, "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return dict(json.loads(proc.stdout))


def release_vars(pinned: dict[str, Any]) -> tuple[str, ...]:
    """The -e variables of a plain deploy.yml run of the pinned release (its bundle built by ``modelfleet bundle``)."""
    return ("-e", "model_release_model=credit-risk", "-e", f"model_release_version={pinned['version']}",
            "-e", f"model_release_digest={pinned['digest']}", "-e", f"model_release_bundle={pinned['bundle']}")


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def ctx(make_sim_fleet: Any) -> Iterator[Ctx]:
    with make_sim_fleet(PREFIX, SSH_PORT, NODES) as running:
        project = write_project(running, NODES)
        shutil.copytree(REPO_ROOT / "policy", project / "policy", dirs_exist_ok=True)
        inv_dir = Path(running.inventory).parent
        (inv_dir / "host_vars").mkdir(exist_ok=True)
        (inv_dir / "host_vars" / f"{PROD_NODE}.yml").write_text("modelfleet_environment: prod\n", encoding="utf-8")
        c = Ctx(running, project)
        ok(c.run("demo", "seed"))
        ok(c.run("provision", "--yes"))
        yield c


def test_unapproved_production_deploy_is_refused_before_any_node_is_touched(ctx: Ctx) -> None:
    ok(ctx.run("gate", "credit-risk@champion", "--env", "prod"))
    before = ctx.node_files()
    cli = ctx.run("deploy", "credit-risk@champion", "--yes")
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "refused" in cli.stderr and "prod" in cli.stderr and "modelfleet request" in cli.stderr, cli.stderr
    assert "Governance | refuse the whole run" not in cli.stdout + cli.stderr  # refused before the run, not by it
    pinned = ctx.pinned("credit-risk@champion")
    for limit in ((), ("--limit", PROD_NODE)):
        plain = ctx.playbook(*release_vars(pinned), *limit)
        assert plain.returncode != 0, plain.stdout[-4000:]
        assert "refused for prod" in plain.stdout and "no modelfleet-clearance/1 document" in plain.stdout, \
            plain.stdout[-4000:]
        assert "Preflight | on the node" not in plain.stdout
    assert ctx.node_files() == before


def test_after_the_approvals_a_tampered_clearance_is_refused_on_the_node_and_the_real_one_deploys(ctx: Ctx) -> None:
    request = json.loads(ok(ctx.run("request", "credit-risk@champion", "--env", "prod", "--reason", "retrain",
                                    "--json", person="dana")))
    ok(ctx.run("approve", request["id"], person="mona"))
    ok(ctx.run("approve", request["id"], person="quinn"))
    clearance = ctx.project / "clearance.json"
    ok(ctx.run("clearance", "credit-risk@champion", "--env", "prod", "-o", str(clearance)))
    doc = json.loads(clearance.read_text())
    doc["approvals"][1]["record"]["reason"] = "edited after signing"
    tampered = ctx.project / "tampered.json"
    tampered.write_text(json.dumps(doc), encoding="utf-8")
    pinned = ctx.pinned("credit-risk@champion")
    before = ctx.node_files()
    plain = ctx.playbook(*release_vars(pinned), "-e", f"modelfleet_clearance={tampered}",
                         "--limit", PROD_NODE, "--skip-tags", "governance")
    assert plain.returncode != 0, plain.stdout[-4000:]
    assert f"refused on {PROD_NODE} (environment prod)" in plain.stdout, plain.stdout[-4000:]
    assert "signature does not verify" in plain.stdout, plain.stdout[-4000:]
    assert ctx.node_files() == before
    ok(ctx.run("deploy", "credit-risk@champion", "--yes"))
    for node in (PROD_NODE, OTHER_NODE):
        assert ctx.current(node).startswith(f"releases/{pinned['version']}-{pinned['digest'][:12]}"), node


def test_break_glass_deploys_an_unapproved_version_and_is_recorded(ctx: Ctx) -> None:
    refused = ctx.run("deploy", "credit-risk/1", "--limit", PROD_NODE, "--yes", "--break-glass", "outage",
                      person="mona")
    assert refused.returncode != 0 and "mona holds none of the roles ops" in refused.stderr, refused.stderr
    ok(ctx.run("deploy", "credit-risk/1", "--limit", PROD_NODE, "--yes", "--break-glass", "fraud spike, INC-4711",
               person="omar"))
    assert ctx.current(PROD_NODE).startswith("releases/1-")
    with Ledger.from_settings(ctx.settings) as ledger:
        (event,) = ledger.events(action="break_glass")
        assert event.actor == "omar" and "fraud spike, INC-4711" in json.dumps(event.details)
        assert ledger.verify().ok
    ok(ctx.run("ledger", "verify"))
