"""The run pipeline's governance check of a deploy (runners/deploy_governance.py, called by DeployRequest.prepare):
which nodes are in which environment, what a refusal says, break-glass signed at prepare and written at launch.
On the seeded demo registry with the repository's policy and a ledger of this module's own."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from modelfleet.core.approvals import Subject
from modelfleet.core.config import Settings
from modelfleet.core.deploy import Release
from modelfleet.core.errors import ConfigError, GovernanceError, UsageError
from modelfleet.core.fleet import Inventory, Node
from modelfleet.core.ledger import Ledger
from modelfleet.core.registry import Registry
from modelfleet.runners.deploy_governance import govern_deploy
from tests.conftest import REPO_ROOT
from tests.unit.registry_support import make_settings, seeded_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    path, _ = seeded_project()
    if not (path / "policy").exists():
        shutil.copytree(REPO_ROOT / "policy", path / "policy")
    return path, tmp_path_factory.mktemp("ledger") / "ledger.db"


def _settings(project: tuple[Path, Path], person: str | None = None, **env: str) -> Settings:
    path, ledger = project
    if person:
        env["MODELFLEET_GOVERNANCE_IDENTITY"] = str(path / ".modelfleet/demo/identities" / f"{person}.key")
    return make_settings(path, MODELFLEET_LEDGER_URL=f"sqlite:///{ledger}", **env)


@pytest.fixture(scope="module")
def subject(project: tuple[Path, Path]) -> Subject:
    from modelfleet.core.governance import subject_for

    return subject_for(Registry(_settings(project)), "credit-risk@champion", "prod")


def _release(subject: Subject) -> Release:
    return Release(ref="credit-risk@champion", model=subject.model, version=subject.version, digest=subject.digest,
                   bundle=Path("b.tar.gz"), bundle_sha256="0" * 64, public_key=Path("release.pub"),
                   probe_source="input_example", thresholds_sha256=subject.thresholds_sha256)


def _nodes(prod_var: bool = True) -> list[Node]:
    prod: dict[str, Any] = {"hosts": {"edge-b": {}}}
    if prod_var:
        prod["vars"] = {"modelfleet_environment": "prod"}
    inv = Inventory.from_data({"all": {"children": {
        "edge": {"children": {"edge_cpu": {"hosts": {"edge-a": {"ansible_host": "127.0.0.1"},
                                                      "edge-b": {"ansible_host": "127.0.0.2"}},
                                           "vars": {"modelfleet_node_class": "cpu"}}}},
        "staging": {"hosts": {"edge-a": {}}}, "prod": prod}}})
    return inv.nodes


def test_a_deploy_to_prod_without_gate_and_approvals_is_refused_naming_what_and_how(project: Any,
                                                                                    subject: Subject) -> None:
    with pytest.raises(GovernanceError) as refused:
        govern_deploy(_settings(project), _release(subject), _nodes())
    exc = refused.value
    assert exc.exit_code == 1
    assert exc.message.startswith(f"deploy of credit-risk/{subject.version} ({subject.digest[:12]}) refused: "
                                  "prod (edge-b) needs: no gate verdict"), exc.message
    assert f"modelfleet gate credit-risk/{subject.version} --env prod" in exc.message
    assert f"modelfleet request credit-risk/{subject.version} --env prod --reason" in exc.message
    assert "--break-glass" in (exc.hint or "") and "--limit '!edge-b'" in (exc.hint or "")
    assert exc.missing and all(m.startswith("prod: ") for m in exc.missing)
    with Ledger.from_settings(_settings(project)) as ledger:
        assert ledger.events() == []  # a refusal writes nothing


def test_staging_only_is_unprotected_and_carries_no_clearance(project: Any, subject: Subject) -> None:
    staging = [n for n in _nodes() if n.name == "edge-a"]
    governance = govern_deploy(_settings(project), _release(subject), staging)
    assert governance.clearances == () and governance.extra_vars(Path("c.json")) == {}
    assert governance.details()["environments"] == {"staging": {"hosts": ["edge-a"], "mode": "unprotected"}}


def test_a_node_in_the_prod_group_without_its_environment_is_a_configuration_error(project: Any,
                                                                                   subject: Subject) -> None:
    with pytest.raises(ConfigError) as wrong:
        govern_deploy(_settings(project), _release(subject), _nodes(prod_var=False))
    assert "edge-b in group 'prod'" in wrong.value.message
    assert "modelfleet_environment: prod" in (wrong.value.hint or "")


def test_without_approvals_yaml_nothing_is_protected(project: Any, subject: Subject, tmp_path: Path) -> None:
    settings = _settings(project, MODELFLEET_GOVERNANCE_POLICY_DIR=str(tmp_path))
    governance = govern_deploy(settings, _release(subject), _nodes())
    assert governance.clearances == () and governance.details()["configured"] is False


def test_break_glass_is_ops_only_signed_at_prepare_and_written_at_launch(project: Any, subject: Subject) -> None:
    from modelfleet.core.governance import open_break_glass

    release = _release(subject)
    with pytest.raises(GovernanceError, match="break-glass refused: mona holds none of the roles ops"):
        govern_deploy(_settings(project, "mona"), release, _nodes(), break_glass="outage")
    with pytest.raises(UsageError, match="a dry run does not break glass"):
        govern_deploy(_settings(project, "omar"), release, _nodes(), break_glass="outage", check=True)
    with pytest.raises(UsageError, match="needs a reason"):
        govern_deploy(_settings(project, "omar"), release, _nodes(), break_glass="  ")
    settings = _settings(project, "omar")
    governance = govern_deploy(settings, release, _nodes(), break_glass="fraud spike, INC-4711")
    (glass,) = governance.break_glass
    assert glass.mode == "break_glass" and glass.people == (("omar", "ops"),)
    assert governance.details()["environments"]["prod"]["mode"] == "break_glass"
    assert '"environment": "prod"' in governance.documents_json()
    with Ledger.from_settings(settings) as ledger:
        assert open_break_glass(ledger, subject) == []  # signed, not yet written: a preview leaves nothing
        seqs = governance.record(ledger, settings, "run-BG")
        (event,) = open_break_glass(ledger, subject)
        assert [event.seq] == seqs and event.run_id == "run-BG" and event.actor == "omar"
        assert event.details["reason"] == "fraud spike, INC-4711" and ledger.verify().ok
    tag = Registry(settings).get_version("credit-risk", int(subject.version)).tags["modelfleet.break_glass.prod"]
    assert tag.startswith("OPEN: omar") and "INC-4711" in tag
