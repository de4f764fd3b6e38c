"""Governance on the seeded demo registry: gate exit codes, fairness thresholds, approvals, break-glass, MLflow tags,
the ledger. One seeded registry for the session (tests/unit/registry_support.py); the policy is the repository's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from modelfleet.cli import main
from modelfleet.core.config import Settings
from modelfleet.core.errors import GovernanceError, IdentityError
from modelfleet.core.ledger import Ledger
from modelfleet.core.registry import Registry
from modelfleet.demo import GROUP_COLUMN
from tests.conftest import REPO_ROOT
from tests.unit.registry_support import make_settings, seeded_project


@pytest.fixture(scope="module")
def project() -> Path:
    path, _ = seeded_project()
    if not (path / "policy").exists():
        shutil.copytree(REPO_ROOT / "policy", path / "policy")
    return path


def _as(project: Path, person: str | None, **env: str) -> Settings:
    if person:
        env["MODELFLEET_GOVERNANCE_IDENTITY"] = str(project / ".modelfleet/demo/identities" / f"{person}.key")
    return make_settings(project, **env)


@pytest.fixture()
def cli(project: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(project)
    for key in [k for k in os.environ if k.startswith("MODELFLEET_")]:
        monkeypatch.delenv(key)

    def run(*argv: str, person: str | None = None) -> int:
        if person:
            monkeypatch.setenv("MODELFLEET_GOVERNANCE_IDENTITY", f".modelfleet/demo/identities/{person}.key")
        else:
            monkeypatch.delenv("MODELFLEET_GOVERNANCE_IDENTITY", raising=False)
        return main(list(argv))

    return run


def test_gate_exit_codes_on_the_demo(project: Path, cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("gate", "credit-risk@champion", "--env", "prod") == 0
    capsys.readouterr()
    assert cli("gate", "credit-risk@challenger", "--env", "prod", "--explain-failures",
               "--manifest", "gate.manifest.json") == 1
    out = capsys.readouterr().out
    assert "FAILED: Equal opportunity (FPR gap)" in out
    assert "fpr by applicant_group: D " in out  # the group with the highest FPR is named
    manifest = json.loads((project / "gate.manifest.json").read_text())
    assert manifest["verdict"] == "failed" and len(manifest["digest"]) == 64
    assert manifest["evaluation_data"]["rows"] == 10_000 and len(manifest["evaluation_data"]["sha256"]) == 64
    assert manifest["policy"]["sha256"] and manifest["random_seed"] == 42 and "scikit-learn" in manifest["libraries"]
    bad = project / "bad-gates.yaml"
    bad.write_text("gates:\n  - name: AUC\n    metric: roc_auc\n    threshold: 0.7\n    comparison: '>='\n"
                   "    severity: error\n")
    assert cli("gate", "credit-risk@champion", "--policy", str(bad)) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: gate 'AUC': unknown metric 'roc_auc'" in err and "did you mean 'auc'" in err
    assert cli("gate", "credit-risk@@x", "--env", "prod") == 2
    tags = Registry(make_settings(project)).get_version("credit-risk", 3).tags
    assert tags["modelfleet.gate.prod"] == "failed" and "Equal opportunity" in tags["modelfleet.gate.prod.detail"]


def test_fairness_thresholds_reach_the_tolerance_on_the_demo(project: Path, cli: Any,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("fairness", "credit-risk@challenger", "--group", GROUP_COLUMN, "--cost-ratio", "5", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["before"]["fpr_gap"]["value"] > 0.3
    assert result["after"]["fpr_gap"]["value"] <= 0.02 and result["after"]["feasible"]
    assert set(result["after"]["thresholds"]["thresholds"]) == {"A", "B", "C", "D"}
    assert cli("fairness", "credit-risk@challenger", "--group", "nope") == 2
    # Attached to the baseline (v1): the tag, a ledger event, and its gate now judges the thresholded decisions.
    assert cli("fairness", "credit-risk/1", "--attach") == 0
    info = Registry(make_settings(project)).get_version("credit-risk", 1)
    assert json.loads(info.tags["modelfleet.thresholds"])["column"] == GROUP_COLUMN
    with Ledger.from_settings(make_settings(project)) as ledger:
        assert ledger.events(action="thresholds_attach")[-1].version == "1"


def test_approvals_by_role_then_the_deploy_check(project: Path, cli: Any,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from modelfleet.core.governance import check_deploy, subject_for

    settings = make_settings(project)
    subject = subject_for(Registry(settings), "credit-risk@champion", "prod")
    assert cli("gate", "credit-risk@champion", "--env", "prod") == 0
    with pytest.raises(GovernanceError) as refused:
        check_deploy(settings, **_kw(subject))
    assert "no approval request" in refused.value.message
    assert cli("request", "credit-risk@champion", "--env", "prod", "--reason", "retrain", person="mona") == 1
    assert "may not request" in capsys.readouterr().err
    assert cli("request", "credit-risk@champion", "--env", "prod", "--reason", "retrain", "--json",
               person="dana") == 0
    request_id = json.loads(capsys.readouterr().out)["id"]
    os.environ["MODELFLEET_ACTOR"] = "mona"  # a name proves nothing: dana's key is dana
    try:
        assert cli("approve", request_id, person="dana") == 1
    finally:
        del os.environ["MODELFLEET_ACTOR"]
    assert "self-approval refused" in capsys.readouterr().err
    assert cli("approve", request_id, person="omar") == 1
    assert cli("approve", request_id, person="mona") == 0
    assert cli("approve", request_id, person="mona") == 1
    assert "counts once" in capsys.readouterr().err
    with pytest.raises(GovernanceError) as refused:
        check_deploy(settings, **_kw(subject))
    assert refused.value.missing and "qa" in refused.value.missing[0]
    assert cli("approve", request_id[:6], person="quinn") == 0
    clearance = check_deploy(settings, **_kw(subject))
    assert clearance.mode == "approvals" and dict(clearance.people) == {"mona": "manager", "quinn": "qa"}
    tags = Registry(settings).get_version("credit-risk", int(subject.version)).tags
    assert tags["modelfleet.gate.prod"] == "passed" and tags["modelfleet.approval.prod"] == "approved"
    assert "mona (manager), quinn (qa)" in tags["modelfleet.approval.prod.detail"]
    assert check_deploy(settings, **{**_kw(subject), "environment": "staging"}).mode == "unprotected"
    with pytest.raises(GovernanceError):  # approvals bind the digest
        check_deploy(settings, **{**_kw(subject), "digest": "ef" * 32})
    capsys.readouterr()
    assert cli("approvals", "--all", "--json") == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[request_id]["status"] == "approved"


def _kw(subject: Any) -> dict[str, Any]:
    return {"model": subject.model, "version": subject.version, "digest": subject.digest,
            "environment": subject.environment, "thresholds_sha256": subject.thresholds_sha256}


def test_break_glass_is_ops_only_loud_and_the_ledger_verifies(project: Path) -> None:
    from modelfleet.core.governance import break_glass, open_break_glass, subject_for, trust_for
    from modelfleet.core.identity import current_identity

    settings = _as(project, "omar")
    registry = Registry(settings)
    trust = trust_for(settings)
    subject = subject_for(registry, "credit-risk@challenger", "prod")
    with Ledger.from_settings(settings) as ledger:
        with pytest.raises(GovernanceError, match="mona holds none of the roles ops"):
            break_glass(settings, current_identity(_as(project, "mona"), trust), subject, "outage", ledger=ledger,
                        registry=registry)
        clearance = break_glass(settings, current_identity(settings, trust), subject, "fraud spike: roll now",
                                ledger=ledger, registry=registry)
        assert clearance.mode == "break_glass" and clearance.people == (("omar", "ops"),)
        assert clearance.document["break_glass"]["record"]["reason"] == "fraud spike: roll now"
        assert [e.actor for e in open_break_glass(ledger, subject)] == ["omar"]
        assert ledger.verify().ok
        actions = {e.action for e in ledger.events()}
    assert {"gate", "approval_request", "approval_decision", "break_glass"} <= actions
    tag = registry.get_version("credit-risk", int(subject.version)).tags["modelfleet.break_glass.prod"]
    assert tag.startswith("OPEN: omar") and "fraud spike" in tag


def test_break_glass_stays_open_until_approved_after_the_fact(project: Path, cli: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Omar deploys the champion to a prod node with `--break-glass` (the run pipeline's governance step: signed at
    prepare, recorded when the run starts); the red mark and the OPEN tag stay through a first approval, and go
    when dana's request holds a manager's and a QA person's approval (through the CLI): a break_glass_resolved
    event names the break-glass, the request and the people.

    On a ledger of its own (CLI and settings alike): the module's ledger already holds approvals of the champion
    for prod (test_approvals_by_role_then_the_deploy_check), with which the deploy would need no break-glass."""
    from modelfleet.console.services import ConsoleServices
    from modelfleet.core.governance import open_break_glass, subject_for
    from modelfleet.runners.deploy_governance import govern_deploy
    from tests.unit.test_deploy_governance import _nodes, _release

    own = {"MODELFLEET_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    for key, value in own.items():
        monkeypatch.setenv(key, value)  # for `cli`, which reads the environment
    settings = _as(project, "omar", **own)
    registry = Registry(settings)
    subject = subject_for(registry, "credit-risk@champion", "prod")
    version = int(subject.version)
    governance = govern_deploy(settings, _release(subject), _nodes(), break_glass="INC-4711: roll back now")
    assert len(governance.break_glass) == 1, governance.notes  # no approvals in this ledger: the glass is broken
    with Ledger.from_settings(settings) as ledger:
        assert open_break_glass(ledger, subject) == []
        (seq,) = governance.record(ledger, settings, "run-break-glass")
        (opened,) = open_break_glass(ledger, subject)
    assert opened.seq == seq and opened.run_id == "run-break-glass" and opened.actor == "omar"

    def marks() -> list[tuple[str, str, int]]:
        services = ConsoleServices(make_settings(project, **own), probe_process=False)
        try:
            gov = services.version_governance("credit-risk", registry.list_versions("credit-risk", with_runs=False))
        finally:
            services.ledger.close()
        return [(b.environment, b.actor, b.seq) for b in gov[str(version)].break_glass] if str(version) in gov \
            else []

    def tag() -> str:
        return registry.get_version("credit-risk", version).tags["modelfleet.break_glass.prod"]

    assert marks() == [("prod", "omar", opened.seq)] and tag().startswith("OPEN: omar")
    assert cli("gate", "credit-risk@champion", "--env", "prod") == 0
    capsys.readouterr()
    assert cli("request", "credit-risk@champion", "--env", "prod", "--reason", "after the fact: INC-4711", "--json",
               person="dana") == 0
    request_id = json.loads(capsys.readouterr().out)["id"]
    assert cli("approve", request_id, person="mona") == 0
    assert marks() == [("prod", "omar", opened.seq)] and tag().startswith("OPEN: omar")  # one role is not enough
    assert cli("approve", request_id, "--reason", "reviewed the incident", person="quinn") == 0
    assert "approved" in capsys.readouterr().out

    with Ledger.from_settings(settings) as ledger:
        assert open_break_glass(ledger, subject) == []
        (resolved,) = [e for e in ledger.events(action="break_glass_resolved")
                       if e.details["break_glass_seq"] == opened.seq]
        assert ledger.verify().ok
    assert (resolved.actor, resolved.target, resolved.digest, resolved.outcome) == (
        "quinn", "prod", subject.digest, "ok")
    assert resolved.details["request_id"] == request_id
    assert resolved.details["approved_by"] == "mona (manager), quinn (qa)"
    assert marks() == []  # the console's red mark is gone
    assert tag() == (f"resolved: approved after the fact by mona (manager), quinn (qa) (request {request_id}); "
                     f"break-glass ledger #{opened.seq}")
    assert cli("ledger", "verify") == 0


def test_a_rejection_needs_a_reason_blocks_the_deploy_and_is_recorded(project: Path, cli: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`modelfleet reject ID --reason` on the real ledger and keys: exit 2 without a reason (nothing recorded), a
    signed rejection with its reason otherwise; the request can then be approved by no one, and the deploy check
    names the rejection among what is missing."""
    from modelfleet.core.governance import check_deploy, subject_for

    settings = make_settings(project)
    subject = subject_for(Registry(settings), "credit-risk@challenger", "prod")
    assert cli("request", "credit-risk@challenger", "--env", "prod", "--reason", "new features", "--json",
               person="dana") == 0
    request_id = json.loads(capsys.readouterr().out)["id"]
    with Ledger.from_settings(settings) as ledger:
        decisions = len(ledger.events(action="approval_decision"))

    with pytest.raises(SystemExit) as usage:  # argparse: --reason is required
        cli("reject", request_id, person="quinn")
    assert usage.value.code == 2
    assert "--reason" in capsys.readouterr().err
    assert cli("reject", request_id, "--reason", "   ", person="quinn") == 2
    assert "a rejection needs a reason" in capsys.readouterr().err
    assert cli("reject", request_id, "--reason", "retrain", person="dana") == 1  # her own request
    assert "self-approval refused" in capsys.readouterr().err
    with Ledger.from_settings(settings) as ledger:
        assert len(ledger.events(action="approval_decision")) == decisions  # none of those recorded anything

    assert cli("reject", request_id, "--reason", "FPR gap of group D above policy", "--json", person="quinn") == 0
    view = json.loads(capsys.readouterr().out)
    assert view["status"] == "rejected" and view["rejected_by"] == "quinn"
    assert [(d["by"], d["decision"], d["reason"]) for d in view["decisions"]] == [
        ("quinn", "reject", "FPR gap of group D above policy")]
    with Ledger.from_settings(settings) as ledger:
        event = ledger.events(action="approval_decision")[-1]
        assert ledger.verify().ok
    assert (event.actor, event.outcome, event.target, event.digest) == ("quinn", "rejected", "prod", subject.digest)
    record = event.details["decision"]["record"]
    assert record["decision"] == "reject" and record["reason"] == "FPR gap of group D above policy"
    assert event.details["decision"]["signature"]  # signed with quinn's key

    assert cli("approve", request_id, person="mona") == 1
    assert f"request {request_id} is already rejected" in capsys.readouterr().err
    with pytest.raises(GovernanceError) as refused:
        check_deploy(settings, **_kw(subject))
    assert any(f"{subject.label} was rejected" in m for m in refused.value.missing), refused.value.missing
    tags = Registry(settings).get_version("credit-risk", int(subject.version)).tags
    assert tags["modelfleet.approval.prod"] == "rejected"
    assert cli("approvals", "--all", "--json") == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[request_id]["status"] == "rejected"


def test_an_identity_that_is_not_in_roles_is_refused(project: Path, tmp_path: Path) -> None:
    from modelfleet.core.governance import trust_for
    from modelfleet.core.identity import current_identity, new_identity

    stranger = tmp_path / "stranger.key"
    new_identity(stranger)
    settings = make_settings(project, MODELFLEET_GOVERNANCE_IDENTITY=str(stranger))
    with pytest.raises(IdentityError, match="belongs to no person"):
        current_identity(settings, trust_for(settings))
    with pytest.raises(IdentityError, match="does not exist"):
        current_identity(make_settings(project, MODELFLEET_GOVERNANCE_IDENTITY=str(tmp_path / "none")),
                         trust_for(settings))
