"""The run form's equivalent commands are the real ones: the modelfleet line parses with the CLI's own parser
(same verb, reference and flags) and the ansible-playbook line carries the extra variables core.deploy builds."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from modelfleet.cli import build_parser
from modelfleet.console.services import RUN_ID_PLACEHOLDER, RunForm
from modelfleet.core import deploy as d
from modelfleet.core.config import load_settings


@pytest.fixture
def settings(tmp_path: Path) -> object:
    return load_settings(env={}, cwd=tmp_path)


def _parse(req: RunForm):  # type: ignore[no-untyped-def]
    cmd = req.cli_command()
    assert cmd[0] == "modelfleet"
    assert shlex.split(RunForm.shell(cmd)) == cmd  # what is shown is what is parsed
    return build_parser().parse_args(cmd[1:])


@pytest.mark.parametrize("req, expected", [
    (RunForm("deploy", model="credit-risk", ref="champion", target="edge_cpu", waves="1,50%,100%", max_fail=0,
                check=True),
     {"ref": "credit-risk@champion", "limit": "edge_cpu", "waves": "1,50%,100%", "max_fail": 0, "check": True,
      "yes": True}),
    (RunForm("deploy", model="credit-risk", ref="champion", target="edge", version=2, digest="ab" * 32),
     {"ref": "credit-risk/2", "limit": "edge", "waves": "1,25%,100%", "max_fail": 20, "check": False}),
    (RunForm("deploy", model="credit-risk", ref="3", target="edge-cpu-01"),
     {"ref": "credit-risk/3", "limit": "edge-cpu-01"}),
    (RunForm("rollback", model="credit-risk", ref="1", target="staging", version=1),
     {"model": "credit-risk", "to": "1", "limit": "staging", "yes": True}),
    (RunForm("rollback", model="credit-risk", target="edge"), {"model": "credit-risk", "to": None}),
    (RunForm("provision", target="edge_arm", check=True), {"limit": "edge_arm", "check": True, "yes": True}),
    (RunForm("healthcheck", target="edge-gpu-04"), {"limit": "edge-gpu-04"}),
])
def test_the_shown_modelfleet_command_parses_with_the_cli(req: RunForm, expected: dict[str, object]) -> None:
    from modelfleet.commands import deploy as commands

    args = _parse(req)
    func = getattr(args.func, "__wrapped__", args.func)  # `health` is wrapped by --watch (commands/_watch.py)
    assert func is {"deploy": commands.cmd_deploy, "rollback": commands.cmd_rollback,
                         "provision": commands.cmd_provision, "healthcheck": commands.cmd_health}[req.kind]
    for key, value in expected.items():
        assert getattr(args, key) == value, key
    if req.kind == "deploy":
        assert d.normalize_ref(args.ref) == args.ref


def _extra(cmd: list[str]) -> dict[str, object]:
    i = cmd.index("-e")
    assert cmd.count("-e") == 1
    return dict(json.loads(cmd[i + 1]))


def test_deploy_playbook_command_has_exactly_the_variables_core_deploy_builds(settings: object) -> None:
    req = RunForm("deploy", model="credit-risk", ref="champion", target="edge_cpu", waves="1,50%", max_fail=10,
                  version=2, digest="ab" * 32)
    cmd = req.playbook_command("inventory/local/hosts.yml", settings)  # type: ignore[arg-type]
    assert cmd[:6] == ["ansible-playbook", "-i", "inventory/local/hosts.yml", "playbooks/deploy.yml", "--limit",
                       "edge_cpu"]
    extra = _extra(cmd)
    release = d.Release(ref="credit-risk/2", model="credit-risk", version="2", digest="ab" * 32,
                        bundle=Path("b.tar.gz"), bundle_sha256="cd" * 32, public_key=Path("k.pub"),
                        probe_source="none")
    real = d.deploy_extra_vars(release, d.DeployOptions.from_settings(settings, limit="edge_cpu",  # type: ignore[arg-type]
                                                                       waves="1,50%", max_fail=10), "run-1")
    assert set(extra) == set(real)
    for key in ("model_release_model", "model_release_version", "model_release_digest", "modelfleet_waves",
                "modelfleet_max_fail_percentage", "model_release_keep", "modelfleet_revert_on_abort"):
        assert extra[key] == real[key], key
    assert extra["modelfleet_run_id"] == RUN_ID_PLACEHOLDER
    from modelfleet.core.signing import key_paths

    assert extra["model_release_public_key"] == str(key_paths(settings.state_dir)[1])  # type: ignore[attr-defined]


def test_other_playbook_commands_match_core_deploy(settings: object, tmp_path: Path) -> None:
    rb = _extra(RunForm("rollback", model="credit-risk", target="edge", version=1).playbook_command("inv", None))
    assert rb == d.rollback_extra_vars("credit-risk", "1", RUN_ID_PLACEHOLDER)
    prov = RunForm("provision", target="edge", check=True).playbook_command("inv", settings)  # type: ignore[arg-type]
    assert "--check" in prov and prov[3] == "playbooks/provision.yml"
    real = d.provision_extra_vars(settings, RUN_ID_PLACEHOLDER)  # type: ignore[arg-type]
    assert _extra(prov) == real
    hc = RunForm("healthcheck", target="edge-gpu-04").playbook_command("inv", None)
    assert hc[3] == "playbooks/healthcheck.yml" and hc[4:6] == ["--limit", "edge-gpu-04"]
    assert _extra(hc) == {"modelfleet_run_id": RUN_ID_PLACEHOLDER}
