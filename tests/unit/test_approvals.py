"""Policy files refused with file, line and fix; signed approvals and the clearance rule (controller and node)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet.core import approvals as a
from modelfleet.core.errors import GovernanceError, PolicyError
from modelfleet.core.policy import load_gate_policy
from modelfleet.core.roles import load_trust
from tests.conftest import REPO_ROOT

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DIGEST = "ab" * 32
OTHER = "cd" * 32
PEOPLE = {"dana": ["data_scientist"], "mona": ["manager"], "quinn": ["qa"], "sam": ["manager", "qa"],
          "omar": ["ops"]}


# -- policy files ------------------------------------------------------------------------------------------------


def test_the_shipped_gates_policy_loads() -> None:
    policy = load_gate_policy(REPO_ROOT / "policy" / "gates.yaml")
    assert policy.cost_ratio == 5 and policy.random_seed == 42
    names = {g.name for g in policy.for_environment("prod")}
    assert "Equal opportunity (FPR gap)" in names and len(policy.for_environment(None)) < len(names)


GOOD_GATE = "  - name: g\n    metric: auc\n    threshold: 0.7\n    comparison: \">=\"\n    severity: error\n"


@pytest.mark.parametrize(("text", "line", "fragment", "fix"), [
    ("gates:\n" + GOOD_GATE.replace("metric: auc", "metric: roc_auc"), 3, "unknown metric 'roc_auc'", "'auc'"),
    ("gates:\n" + GOOD_GATE.replace('">="', "greater_than"), 5, "unknown comparison", 'comparison: ">"'),
    ("gates:\n" + GOOD_GATE.replace("severity: error", "severity: fatal"), 6, "severity 'fatal'", "warning"),
    ("gates:\n" + GOOD_GATE.replace("threshold: 0.7", "threshold: high"), 4, "is not a number", "number"),
    ("gates:\n" + GOOD_GATE + "    group: applicant_group\n", 7, "not computed per group", "fpr_gap"),
    ("gates:\n" + GOOD_GATE + "    treshold: 1\n", 7, "unknown key 'treshold'", "'threshold'"),
    ("gates:\n" + GOOD_GATE + GOOD_GATE, 7, "used twice", "own name"),
    ("gates:\n" + GOOD_GATE + "    metric: auc\n", 7, "appears twice", "remove"),
    ("gates:\n  - name: g\n    metric: [auc\n", 4, "not valid YAML", "syntax"),
    ("gates: []\n", 1, "non-empty list", "gates:"),
])
def test_malformed_gates_policy_names_file_line_and_fix(tmp_path: Path, text: str, line: int, fragment: str,
                                                        fix: str) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_gate_policy(path)
    assert info.value.message.startswith(f"{path}:{line}:"), info.value.message
    assert fragment in info.value.message and fix in (info.value.hint or ""), (info.value.message, info.value.hint)
    assert info.value.exit_code == 2


def _keys() -> dict[str, Ed25519PrivateKey]:
    return {name: Ed25519PrivateKey.generate() for name in PEOPLE}


@pytest.fixture(scope="module")
def keys() -> dict[str, Ed25519PrivateKey]:
    return _keys()


@pytest.fixture(scope="module")
def trust(keys: dict[str, Ed25519PrivateKey]) -> a.Trust:
    people = tuple(a.Person(n, tuple(PEOPLE[n]), k.public_key()) for n, k in keys.items())
    return a.Trust(people, {"prod": a.Requirement("prod", ("manager", "qa"), 3600),
                            "staging": a.Requirement("staging", (), 3600)}, default_ttl_s=3600)


def test_roles_and_approvals_files_compile_to_the_same_trust(tmp_path: Path, keys: dict[str, Ed25519PrivateKey],
                                                             trust: a.Trust) -> None:
    lines = ["people:"]
    for name, key in keys.items():
        lines += [f"  - name: {name}", f"    roles: [{', '.join(PEOPLE[name])}]",
                  f"    public_key: {a.public_key_text(key.public_key())}"]
    (tmp_path / "roles.yaml").write_text("\n".join(lines) + "\n")
    (tmp_path / "approvals.yaml").write_text("default_ttl: 1h\nenvironments:\n  prod:\n    require: [manager, qa]\n"
                                             "  staging:\n    require: []\n")
    assert load_trust(tmp_path).to_dict() == trust.to_dict()
    assert a.Trust.from_dict(json.loads(trust.to_json())).to_dict() == trust.to_dict()
    (tmp_path / "approvals.yaml").write_text("environments:\n  prod:\n    require: [manager, ops]\n")
    with pytest.raises(PolicyError, match=r"approvals.yaml:3: .*'ops' cannot approve"):
        load_trust(tmp_path)
    (tmp_path / "approvals.yaml").write_text("environments:\n  prod:\n    require: [qa]\n    ttl: soon\n")
    with pytest.raises(PolicyError, match=r"approvals.yaml:4: .*not a positive duration"):
        load_trust(tmp_path)
    (tmp_path / "roles.yaml").write_text("people:\n  - name: eve\n    roles: [admin]\n    public_key: ed25519:AAAA\n")
    with pytest.raises(PolicyError, match=r"roles.yaml:3: .*unknown role 'admin'"):
        load_trust(tmp_path)


# -- records -----------------------------------------------------------------------------------------------------


def _sign(keys: dict[str, Ed25519PrivateKey], who: str, record: dict, *, key_of: str | None = None) -> a.Signed:
    signer_key = keys[key_of or who]
    body = {**record, "by": who, "key_id": a.key_id(keys[who].public_key())}
    return a.sign_record(signer_key, body)


def _request(keys: dict[str, Ed25519PrivateKey], digest: str = DIGEST, env: str = "prod") -> a.Signed:
    subject = a.Subject("credit-risk", "2", digest, env, None)
    return _sign(keys, "dana", {"format": a.REQUEST_FORMAT, "id": "r1", **subject.to_dict(), "reason": "x",
                                "issued_at": a.format_time(NOW)})


def _approval(keys: dict[str, Ed25519PrivateKey], who: str, *, digest: str = DIGEST, key_of: str | None = None,
              decision: str = "approve", expires: datetime | None = None) -> a.Signed:
    subject = a.Subject("credit-risk", "2", digest, "prod", None)
    return _sign(keys, who, {"format": a.APPROVAL_FORMAT, "request_id": "r1", **subject.to_dict(),
                             "decision": decision, "reason": "", "issued_at": a.format_time(NOW),
                             "expires_at": a.format_time(expires or NOW + timedelta(hours=1)),
                             "gate": {"policy_sha256": "p", "verdict": "passed"}}, key_of=key_of)


def test_manager_and_qa_clear_a_request(keys: dict, trust: a.Trust) -> None:
    state = a.evaluate(trust, _request(keys), [_approval(keys, "mona"), _approval(keys, "quinn")], NOW)
    assert state.satisfied and state.counted == (("mona", "manager"), ("quinn", "qa"))


def test_a_person_with_two_roles_counts_once(keys: dict, trust: a.Trust) -> None:
    state = a.evaluate(trust, _request(keys), [_approval(keys, "sam"), _approval(keys, "sam")], NOW)
    assert not state.satisfied and len(state.counted) == 1 and "already counts once" in state.set_aside[0]
    state = a.evaluate(trust, _request(keys), [_approval(keys, "sam"), _approval(keys, "mona")], NOW)
    assert state.satisfied and dict(state.counted) == {"mona": "manager", "sam": "qa"}


def test_self_approval_wrong_key_other_digest_and_expiry_do_not_count(keys: dict, trust: a.Trust) -> None:
    dana_self = _sign(keys, "dana", {**_approval(keys, "mona").record, "by": "dana",
                                     "key_id": a.key_id(keys["dana"].public_key())})
    forged = _approval(keys, "quinn", key_of="dana")  # claims quinn's key, signed with dana's
    other = _approval(keys, "quinn", digest=OTHER)
    expired = _approval(keys, "quinn", expires=NOW - timedelta(seconds=1))
    state = a.evaluate(trust, _request(keys), [_approval(keys, "mona"), dana_self, forged, other, expired], NOW)
    assert not state.satisfied and state.missing_roles == ("qa",)
    reasons = " | ".join(state.set_aside)
    for fragment in ("requester's own decision", "signature does not verify", "another subject", "expired"):
        assert fragment in reasons, reasons
    with pytest.raises(GovernanceError, match="signature does not verify"):
        a.signer(trust, forged, "approval")


def test_a_rejection_blocks_and_match_roles_is_a_matching() -> None:
    k = _keys()
    people = [a.Person("x", ("manager", "qa"), k["sam"].public_key()),
              a.Person("y", ("manager",), k["mona"].public_key())]
    filled, missing = a.match_roles(("qa", "manager"), people)
    assert not missing and {filled[0].name, filled[1].name} == {"x", "y"}
    assert a.match_roles(("qa", "qa"), people)[1] == ["qa"]


def _clearance(request: a.Signed, approvals: list[a.Signed], glass: a.Signed | None = None) -> dict:
    return {"format": a.CLEARANCE_FORMAT, **{k: request.record[k] for k in ("model", "version", "digest",
                                                                            "environment", "thresholds_sha256")},
            "request": request.to_dict(), "approvals": [x.to_dict() for x in approvals],
            "break_glass": glass.to_dict() if glass else None}


def test_node_verifier_decides_like_the_controller(tmp_path: Path, keys: dict, trust: a.Trust) -> None:
    (tmp_path / "trust.json").write_text(trust.to_json())
    ok = _clearance(_request(keys), [_approval(keys, "mona"), _approval(keys, "quinn")])
    half = _clearance(_request(keys), [_approval(keys, "mona")])
    glass = _sign(keys, "omar", {"format": a.BREAK_GLASS_FORMAT, "id": "b1",
                                 **a.Subject("credit-risk", "2", DIGEST, "prod").to_dict(), "reason": "outage",
                                 "issued_at": a.format_time(NOW),
                                 "expires_at": a.format_time(NOW + timedelta(hours=1))})
    bad_glass = _sign(keys, "mona", {**glass.record, "by": "mona", "key_id": a.key_id(keys["mona"].public_key())})
    cases = [("ok", ok, "prod", DIGEST, 0, "approvals"), ("half", half, "prod", DIGEST, 1, "lacks approval by qa"),
             ("ok", ok, "prod", OTHER, 1, "another release"), ("none", None, "prod", DIGEST, 1, "no modelfleet"),
             ("none", None, "staging", DIGEST, 0, "unprotected"),
             ("glass", _clearance(_request(keys), [], glass), "prod", DIGEST, 0, "break_glass"),
             ("badglass", _clearance(_request(keys), [], bad_glass), "prod", DIGEST, 1, "only the ops role")]
    for name, doc, env, digest, code, fragment in cases:
        argv = [sys.executable, "-m", "modelfleet.governance_verify", "--trust", str(tmp_path / "trust.json"),
                "--environment", env, "--digest", digest, "--now", a.format_time(NOW)]
        if doc is not None:
            (tmp_path / f"{name}.json").write_text(json.dumps(doc))
            argv += ["--clearance", str(tmp_path / f"{name}.json")]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
        assert out.returncode == code, (name, out.stdout, out.stderr)
        assert fragment in out.stdout + out.stderr, (name, out.stdout, out.stderr)
    later = NOW + timedelta(hours=2)
    with pytest.raises(GovernanceError, match="expired"):
        a.verify_clearance(trust, ok, environment="prod", digest=DIGEST, thresholds_sha256=None, now=later)


def test_node_verifier_reads_digest_and_thresholds_from_the_release_manifest(tmp_path: Path, keys: dict,
                                                                             trust: a.Trust) -> None:
    (tmp_path / "trust.json").write_text(trust.to_json())
    (tmp_path / "ok.json").write_text(json.dumps(_clearance(_request(keys), [_approval(keys, "mona"),
                                                                             _approval(keys, "quinn")])))
    release = tmp_path / "release"
    release.mkdir()
    manifest = {"digest": DIGEST, "thresholds": {"column": "g", "thresholds": {"A": 0.2}, "default": 0.5}}
    (release / "manifest.json").write_text(json.dumps(manifest))
    argv = [sys.executable, "-m", "modelfleet.governance_verify", "--trust", str(tmp_path / "trust.json"),
            "--environment", "prod", "--release-dir", str(release), "--clearance", str(tmp_path / "ok.json"),
            "--now", a.format_time(NOW)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert out.returncode == 1 and "thresholds_sha256" in out.stdout  # approvals were for no thresholds
    del manifest["thresholds"]
    (release / "manifest.json").write_text(json.dumps(manifest))
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert out.returncode == 0, out.stdout


def _verify_cli(tmp_path: Path, trust: a.Trust, clearance_text: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "trust.json").write_text(trust.to_json())
    (tmp_path / "clearance.json").write_text(clearance_text)
    argv = [sys.executable, "-m", "modelfleet.governance_verify", "--trust", str(tmp_path / "trust.json"),
            "--environment", "prod", "--digest", DIGEST, "--clearance", str(tmp_path / "clearance.json"),
            "--now", a.format_time(NOW)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=False)


@pytest.mark.parametrize(("mangle", "fragment"), [
    (lambda doc: "{not json", "is not valid JSON"),
    (lambda doc: json.dumps([{**doc, "environment": "staging"}]), "no modelfleet-clearance/1 document came"),
    (lambda doc: json.dumps({**doc, "format": "something/9"}),
     "is not a modelfleet-clearance/1 document (format 'something/9')"),
    (lambda doc: json.dumps({**doc, "approvals": "mona, quinn"}),
     "approvals must be a list of signed records, not str"),
    (lambda doc: json.dumps({**doc, "approvals": [{"record": {}, "signature": "x"}]}),
     "not counted: decision by None: format '' is not modelfleet-approval/1"),
])
def test_a_malformed_clearance_is_refused_naming_what_is_wrong(tmp_path: Path, keys: dict, trust: a.Trust,
                                                               mangle: Any, fragment: str) -> None:
    doc = _clearance(_request(keys), [_approval(keys, "mona"), _approval(keys, "quinn")])
    out = _verify_cli(tmp_path, trust, mangle(doc))
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert fragment in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_an_unknown_approver_role_a_role_that_cannot_approve_or_another_digest_does_not_count(
        tmp_path: Path, keys: dict, trust: a.Trust) -> None:
    (tmp_path / "roles.yaml").write_text("people: []\n")
    (tmp_path / "approvals.yaml").write_text("environments:\n  prod:\n    require: [manager, auditor]\n")
    with pytest.raises(PolicyError, match=r"approvals.yaml:3: environment 'prod': 'auditor' cannot approve"):
        load_trust(tmp_path)
    by_ops = _clearance(_request(keys), [_approval(keys, "mona"), _approval(keys, "omar")])
    out = _verify_cli(tmp_path, trust, json.dumps(by_ops))
    assert out.returncode == 1, out.stdout
    assert "not counted: approve by omar: omar holds none of the roles manager, qa" in out.stdout
    other = _clearance(_request(keys), [_approval(keys, "mona"), _approval(keys, "quinn", digest=OTHER)])
    out = _verify_cli(tmp_path, trust, json.dumps(other))
    assert out.returncode == 1, out.stdout
    assert f"not counted: approve by quinn: for another subject: digest '{OTHER}'" in out.stdout


def test_a_person_whose_key_file_is_not_there_yet_is_left_out_and_named(tmp_path: Path,
                                                                         keys: dict[str, Ed25519PrivateKey]) -> None:
    """A project that has not run `demo seed` (whose identities the shipped roles.yaml names) still provisions and
    deploys: the person without a key file is left out of the trust (nobody can sign as them) and named; a key
    file that is there but unreadable or malformed is still an error."""
    mona = a.public_key_text(keys["mona"].public_key())
    (tmp_path / "approvals.yaml").write_text("environments:\n  prod:\n    require: [manager]\n")
    (tmp_path / "roles.yaml").write_text(
        "people:\n  - name: dana\n    roles: [data_scientist]\n    public_key_file: '{state_dir}/dana.pub'\n"
        f"  - name: mona\n    roles: [manager]\n    public_key: {mona}\n")
    trust = load_trust(tmp_path, state_dir=tmp_path / "state")
    assert [p.name for p in trust.people] == ["mona"]
    assert len(trust.left_out) == 1 and "person 'dana' left out: " in trust.left_out[0]
    assert "roles.yaml:4" in trust.left_out[0] and "modelfleet demo seed" in trust.left_out[0]
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "dana.pub").write_text("not a key\n")
    with pytest.raises(PolicyError, match=r"roles.yaml:4: person 'dana': bad public key"):
        load_trust(tmp_path, state_dir=tmp_path / "state")
