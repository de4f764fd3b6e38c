"""core/deploy.py (pin -> bundle -> signing key -> extra vars), runners/records.py (a run's ledger records),
core/placement.py + runners/health.py (what should run where) and the CLI's guard rails."""

from __future__ import annotations

import argparse
import io
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelfleet.core.bundle import verify_bundle
from modelfleet.core.config import Settings
from modelfleet.core.deploy import (
    DeployOptions,
    deploy_extra_vars,
    ensure_signing_key,
    normalize_ref,
    prepare_release,
    provision_extra_vars,
    rollback_extra_vars,
)
from modelfleet.core.errors import ArtifactError, BundleError, ConfigError, UsageError
from modelfleet.core.fleet import Node, NodeClass
from modelfleet.core.ledger import Ledger
from modelfleet.core.placement import placements
from modelfleet.core.registry import PinnedVersion
from modelfleet.core.signing import create_private_key, key_paths
from modelfleet.runners.health import Target, plan_targets, probe
from modelfleet.runners.records import RunIdentity, RunRecorder, close_dead_runs, ended_runs
from modelfleet.runners.runstate import RunState
from tests.conftest import REPO_ROOT

DIGEST = "ab" * 32


class FakeRegistry:
    """Pins to a fixed model folder; no reference sample (like a model logged without one)."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.pins: list[str] = []

    def pin(self, ref: str) -> PinnedVersion:
        self.pins.append(str(ref))
        return PinnedVersion(name="plain", version=4, digest=DIGEST, source="s", run_id=None, aliases=(),
                             ref=str(ref), registry_uri="sqlite://", pinned_at=datetime.now(UTC),
                             path=self.model_dir)

    def load_reference_sample(self, name: str, version: int) -> Any:
        raise ArtifactError(f"{name}/{version} has no reference sample")

    def get_version(self, name: str, version: int) -> Any:
        return argparse.Namespace(tags={})  # no modelfleet.reference_sample tag


@pytest.fixture(autouse=True)
def signing_key(settings: Settings) -> None:
    """Deploys never create the release key (provisioning does): make one, as a provisioned project has."""
    ensure_signing_key(settings)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "MLmodel").write_text("flavors: {python_function: {loader_module: x}}\n", encoding="utf-8")
    (d / "model.pkl").write_bytes(b"not really a model")
    return d


def test_release_without_probe_still_bundles_and_warns(settings: Settings, model_dir: Path) -> None:
    registry = FakeRegistry(model_dir)
    said: list[str] = []
    release = prepare_release(settings, "plain@4", registry=registry, progress=said.append)  # type: ignore[arg-type]
    assert registry.pins == ["plain/4"]  # @<number> means a version; pinned exactly once
    assert release.probe_source == "none"
    assert release.warnings and "gated on /health only" in release.warnings[0]
    assert any(line.startswith("WARNING:") for line in said)
    manifest = verify_bundle(release.bundle, release.public_key)
    assert (manifest.model, manifest.version, manifest.digest, manifest.probe) == ("plain", "4", DIGEST, None)
    again = prepare_release(settings, "plain/4", registry=registry)  # type: ignore[arg-type]
    assert again.bundle_cached and again.bundle_sha256 == release.bundle_sha256  # same bytes: reruns change nothing
    assert release.to_dict()["release"] == f"4-{DIGEST[:12]}"


def test_a_cached_bundle_is_reused_without_loading_the_model(settings: Settings, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import modelfleet.core.bundle as bundle_module

    x = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0], "age": [20.0, 30.0, 40.0, 50.0]})
    path = tmp_path / "sk"
    mlflow.sklearn.save_model(LogisticRegression().fit(x, [0, 0, 1, 1]), str(path), input_example=x.iloc[[0, 3]],
                              pip_requirements=["scikit-learn"])
    registry = FakeRegistry(path)
    first = prepare_release(settings, "plain/4", registry=registry)  # type: ignore[arg-type]
    assert first.probe_source == "input_example" and not first.bundle_cached

    def no_model_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded although its bundle is cached")

    monkeypatch.setattr(bundle_module, "make_probe", no_model_loading)
    monkeypatch.setattr(bundle_module, "expected_response", no_model_loading)
    again = prepare_release(settings, "plain/4", registry=registry)  # type: ignore[arg-type]
    assert again.bundle_cached and again.bundle_sha256 == first.bundle_sha256
    assert again.probe_source == "input_example" and not again.warnings
    # a damaged cache entry is not trusted: it is rebuilt (which needs the model again), and the operator told
    again.bundle.write_bytes(b"garbage")
    with pytest.raises(AssertionError, match="the model was loaded"):
        prepare_release(settings, "plain/4", registry=registry)  # type: ignore[arg-type]
    monkeypatch.undo()
    said: list[str] = []
    rebuilt = prepare_release(settings, "plain/4", registry=registry, progress=said.append)  # type: ignore[arg-type]
    assert not rebuilt.bundle_cached and rebuilt.bundle_sha256 == first.bundle_sha256
    assert any("does not verify" in line and "rebuilding" in line for line in said), said
    assert any("does not verify" in w for w in rebuilt.warnings)


def test_a_version_the_controller_cannot_load_is_refused(settings: Settings, tmp_path: Path) -> None:
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0]})
    path = tmp_path / "sk"
    mlflow.sklearn.save_model(LogisticRegression().fit(x, [0, 0, 1, 1]), str(path), input_example=x.iloc[[0]],
                              pip_requirements=["scikit-learn"])
    next(path.glob("model.*")).unlink()  # the registry lost the model file (model.skops or model.pkl)
    with pytest.raises(BundleError, match="cannot be loaded on the controller") as info:
        prepare_release(settings, "plain/4", registry=FakeRegistry(path))  # type: ignore[arg-type]
    assert "nothing was signed or shipped" in info.value.message and info.value.hint
    assert not list((settings.state_dir / "bundles").glob("*")) if (settings.state_dir / "bundles").exists() else True


def test_the_signing_key_is_never_replaced_silently(settings: Settings, model_dir: Path) -> None:
    private, public = key_paths(settings.state_dir)
    kept = ensure_signing_key(settings)
    assert not kept.created and kept.key_id
    with Ledger(settings.ledger.url) as ledger:  # the fleet was provisioned with this key
        ledger.append("run_start", actor="a", run_id="p1", outcome="started",
                      details={"kind": "provision", "signing_key": kept.key_id})
    private.unlink()
    public.unlink()
    with pytest.raises(BundleError, match=f"trusts key {kept.key_id}") as info:
        prepare_release(settings, "plain/4", registry=FakeRegistry(model_dir))  # type: ignore[arg-type]
    assert "--new-signing-key" in (info.value.hint or "") and not private.exists()
    with pytest.raises(BundleError, match="missing"):
        ensure_signing_key(settings)
    assert ensure_signing_key(settings, dry_run=True, replace_trusted=True).key_id is None and not private.exists()
    said: list[str] = []
    new = ensure_signing_key(settings, replace_trusted=True, progress=said.append)
    assert new.created and new.key_id != kept.key_id and private.exists()
    assert "replacing the lost key" in said[0]


def test_a_key_the_fleet_does_not_trust_is_refused_before_signing(settings: Settings, model_dir: Path) -> None:
    private, public = key_paths(settings.state_dir)
    trusted = ensure_signing_key(settings)
    with Ledger(settings.ledger.url) as ledger:  # the fleet was provisioned with this key
        ledger.append("run_start", actor="a", run_id="p1", outcome="started",
                      details={"kind": "provision", "signing_key": trusted.key_id})
    private.unlink()
    public.unlink()
    create_private_key(private)  # another key in its place (a restore from the wrong backup, another controller)
    with pytest.raises(BundleError, match=f"but the fleet trusts key {trusted.key_id}") as info:
        prepare_release(settings, "plain/4", registry=FakeRegistry(model_dir))  # type: ignore[arg-type]
    assert "nothing was signed" in info.value.message and "--new-signing-key" in (info.value.hint or "")
    assert not (settings.state_dir / "bundles").exists() or not list((settings.state_dir / "bundles").iterdir())


def test_a_deploy_without_any_key_says_to_provision_first(settings: Settings, model_dir: Path) -> None:
    private, public = key_paths(settings.state_dir)
    private.unlink()
    public.unlink()
    with pytest.raises(BundleError, match="no release signing key") as info:
        prepare_release(settings, "plain/4", registry=FakeRegistry(model_dir))  # type: ignore[arg-type]
    assert "modelfleet provision" in (info.value.hint or "")


def test_extra_vars_match_the_playbooks_and_roles(settings: Settings, model_dir: Path) -> None:
    release = prepare_release(settings, "plain/4", registry=FakeRegistry(model_dir))  # type: ignore[arg-type]
    options = DeployOptions.from_settings(settings, limit="edge_cpu", waves="1,50%", max_fail=0,
                                          revert_on_abort=True)
    ev = deploy_extra_vars(release, options, "run-1")
    assert ev["modelfleet_waves"] == [1, "50%"] and ev["modelfleet_max_fail_percentage"] == 0
    assert ev["modelfleet_revert_on_abort"] is True and ev["modelfleet_run_id"] == "run-1"
    assert ev["model_release_version"] == "4" and ev["model_release_bundle"] == str(release.bundle)
    defaults = yaml.safe_load((REPO_ROOT / "roles/model_release/defaults/main.yml").read_text())
    ansible_text = "\n".join(p.read_text() for p in [*(REPO_ROOT / "playbooks").glob("*.yml"),
                                                     *(REPO_ROOT / "roles").rglob("*.yml")])
    for name in (*ev, *rollback_extra_vars("m", None, "r"), *provision_extra_vars(settings, "r")):
        if name.startswith("model_release_"):
            assert name in defaults, f"{name} is not a model_release variable"
        else:
            assert re.search(rf"\b{name}\b", ansible_text), f"no playbook or role reads {name}"
    assert Path(provision_extra_vars(settings, "r")["modelfleet_release_public_key"]).is_file()


def test_options_defaults_and_validation(settings: Settings) -> None:
    options = DeployOptions.from_settings(settings)
    assert options.waves == [1, "25%", "100%"] and options.max_fail_percentage == 20
    assert options.inventory == settings.fleet.inventory and not options.revert_on_abort
    with pytest.raises(ConfigError, match="wave"):
        DeployOptions.from_settings(settings, waves="1,0%")
    with pytest.raises(UsageError, match="between 0 and 100"):
        DeployOptions.from_settings(settings, max_fail=120)
    custom = replace(settings, deploy=replace(settings.deploy, waves="2,100%", max_fail_percentage=0))
    assert DeployOptions.from_settings(custom).waves == [2, "100%"]
    assert normalize_ref("m@7") == "m/7" and normalize_ref("m@champion") == "m@champion"


def test_run_recorder_writes_start_and_end_from_the_fold(tmp_path: Path) -> None:
    state = RunState("r1", kind="deploy", hosts=["a", "b", "c"])
    for name, res in (("a", {"changed": True}), ("b", {"changed": True, "modelfleet_rolled_back": True})):
        state.feed({"event": "playbook_on_play_start", "event_data": {"name": "Roll", "uuid": "u"}})
        state.feed({"event": "runner_on_ok", "event_data": {"host": name, "task": "t", "res": res}})
    state.finish("failed", 2)
    with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        rec = RunRecorder(ledger, RunIdentity("r1", "deploy", "me", None, "m", "2", DIGEST))
        rec.start(ref="m@champion", warnings=["no probe"])
        outcome = rec.end(state, duration_s=1.5)
        events = ledger.events(run_id="r1")
        runs = ledger.runs()
    assert outcome == "failed"
    assert [(e.action, e.outcome) for e in events] == [("run_start", "started"), ("run_end", "failed")]
    assert events[0].digest == DIGEST and events[0].details["warnings"] == ["no probe"] and events[0].target == "all"
    assert events[0].details["pid"] and events[0].details["controller"]
    assert events[1].details["outcomes"] == {"changed": 1, "reverted": 1, "not_started": 1}
    assert events[1].details["batches"] == [1, 1] and events[1].details["problem"].startswith("b reverted")
    assert runs[0].outcome == "failed"


def test_dead_runs_are_closed_and_ended_runs_listed(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        import socket

        here = socket.gethostname()

        def start(run_id: str, **details: Any) -> None:
            ledger.append("run_start", actor="a", model="m", run_id=run_id, outcome="started", details=details)

        start("dead", controller=here, pid=111)
        start("done", controller=here, pid=112)
        ledger.append("run_end", actor="a", model="m", run_id="done", outcome="ok")
        start("elsewhere", controller="other-host", pid=113)
        assert ended_runs(ledger, "m") == ["done"]
        assert close_dead_runs(ledger, "m", actor="a", by_run="r9", pid_alive=lambda pid: True) == (
            [], ["dead", "elsewhere"])
        assert close_dead_runs(ledger, "m", actor="a", by_run="r9", pid_alive=lambda pid: False) == (
            ["dead"], ["elsewhere"])
        assert ended_runs(ledger, "m") == ["dead", "done"]
        closing = ledger.events(run_id="dead", action="run_end")[0]
        assert closing.outcome == "incomplete" and "r9" in closing.details["reason"]
        assert close_dead_runs(ledger, "other-model", actor="a", by_run="r9") == ([], [])


def _ev(action: str, node: str, outcome: str, version: str | None, **details: Any) -> Any:
    return argparse.Namespace(action=action, node=node, model="m", outcome=outcome, version=version,
                              details=details, run_id=f"run-{action}-{node}-{version}")


def test_what_should_run_where_and_health_verdicts() -> None:
    events = [
        _ev("node_deploy", "a", "changed", "2", agent_url="http://127.0.0.1:9001"),
        _ev("node_deploy", "a", "reverted", "3", to_version="2"),  # failed its gate: back on 2
        _ev("node_deploy", "a", "ok", "2"),  # the operator accepts 2 by deploying it (nothing changes)
        _ev("node_deploy", "b", "changed", "3", agent_url="http://127.0.0.2:9001"),
        _ev("node_deploy", "b", "failed", "4"),  # did not reach b: b still runs 3, but the intent was 4
        _ev("node_deploy", "b", "changed", "9", check=True),  # check mode places nothing
        _ev("node_deploy", "c", "changed", "1", agent_url="http://127.0.0.3:9001"),
        _ev("node_rollback", "c", "rolled_back", "1", to_version="1"),
        _ev("node_rollback", "c", "failed", None),  # nothing to roll back to: placement unchanged
        _ev("node_deploy", "d", "rolled_back", "5", to_version="4"),  # an older ledger's word for reverted
    ]
    placed = placements(events)
    assert {k[0]: (p.version, p.intended_version, p.behind) for k, p in placed.items()} == {
        "a": ("2", "2", False), "b": ("3", "4", True), "c": ("1", "1", False), "d": ("4", "5", True)}
    assert placed[("b", "m")].intended_outcome == "failed"
    nodes = [Node(n, f"127.0.0.{i}", NodeClass.CPU) for i, n in enumerate(("a", "b", "c", "e"), 1)]
    targets = plan_targets(nodes, placed)
    assert [t.url for t in targets] == ["http://127.0.0.1:9001", "http://127.0.0.2:9001", "http://127.0.0.3:9001",
                                        "http://127.0.0.4:8080"]

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "127.0.0.1":
            return httpx.Response(200, json={"model": "m", "version": "2", "digest": DIGEST})
        if host == "127.0.0.2":
            return httpx.Response(200, json={"model": "m", "version": "3"})
        if host == "127.0.0.3":
            return httpx.Response(200, json={"model": "m", "version": "2"})
        if host == "127.0.0.4":
            return httpx.Response(503, json={"reason": "loading"})
        raise httpx.ConnectError("refused", request=request)

    rows = probe([*targets, Target("f", "http://127.0.0.6:8080")], transport=httpx.MockTransport(handler))
    assert [(r.node, r.verdict) for r in rows] == [("a", "healthy"), ("b", "behind"), ("c", "wrong_version"),
                                                  ("e", "unhealthy"), ("f", "unreachable")]
    assert "meant version 4" in (rows[1].reason or "") and "deploy m/3 to keep it" in (rows[1].reason or "")
    assert rows[3].reason == "loading" and rows[0].to_dict()["digest"] == DIGEST


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirmation_rules() -> None:
    from modelfleet.commands.deploy import confirm

    args = argparse.Namespace(yes=False, check=False, limit=None)
    with pytest.raises(UsageError, match="no terminal"):
        confirm(args, "deploy m", "m", stream_in=io.StringIO("m\n"))
    confirm(argparse.Namespace(yes=True, check=False, limit=None), "deploy m", "m", stream_in=io.StringIO())
    confirm(argparse.Namespace(yes=False, check=True, limit=None), "deploy m", "m", stream_in=io.StringIO())
    confirm(args, "deploy m", "m", stream_in=_Tty("m\n"))  # fleet-wide: the typed word
    with pytest.raises(UsageError, match="not confirmed"):
        confirm(args, "deploy m", "m", stream_in=_Tty("y\n"))
    confirm(argparse.Namespace(yes=False, check=False, limit="edge_cpu"), "deploy m", "m", stream_in=_Tty("y\n"))


def test_cli_usage_errors_exit_2(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from modelfleet.cli import main

    assert main(["deploy", "credit-risk@@x", "--yes"]) == 2
    assert "credit-risk@@x" in capsys.readouterr().err
    assert main(["deploy", "m@champion", "--waves", "0", "--yes"]) == 2
    assert main(["rollback", "m", "--yes"]) == 2  # no inventory in a fresh project
    assert "inventory" in capsys.readouterr().err


def test_already_provisioned_reads_the_ledger(settings: Settings) -> None:
    from modelfleet.commands.deploy import _already_provisioned

    with Ledger(settings.ledger.url) as ledger:
        ledger.append("run_start", actor="a", run_id="p1", outcome="started", details={"kind": "provision"})
        for node in ("a", "b"):
            ledger.append("node_provision", actor="a", run_id="p1", node=node, outcome="changed")
        ledger.append("run_end", actor="a", run_id="p1", outcome="ok")
    assert _already_provisioned(settings, ["a", "b"])
    assert not _already_provisioned(settings, ["a", "c"])
    assert not _already_provisioned(settings, [])


def test_a_version_with_a_reference_sample_bundles_its_profile(settings: Settings, tmp_path: Path) -> None:
    import tarfile

    import mlflow.sklearn
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from modelfleet.core.drift import ReferenceProfile
    from modelfleet.core.release_profile import GROUP_COLUMN_TAG

    x = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0] * 10, "group": ["a", "b"] * 20})
    path = tmp_path / "sk"
    pipe = make_pipeline(ColumnTransformer([("keep", "passthrough", ["income"])]), LogisticRegression())
    pipe.fit(x, [0, 0, 1, 1] * 10)
    mlflow.sklearn.save_model(pipe, str(path), input_example=x.head(2), pip_requirements=["scikit-learn"])

    class WithSample(FakeRegistry):
        def load_reference_sample(self, name: str, version: int) -> Any:
            return x.assign(label=1)  # a column the model does not take is left out of the profile

        def get_version(self, name: str, version: int) -> Any:
            return argparse.Namespace(tags={GROUP_COLUMN_TAG: "group", "modelfleet.reference_sample": "r.csv"})

    # first bundled without a sample (as before releases carried profiles): no profile in it
    before = prepare_release(settings, "plain/4", registry=FakeRegistry(path))  # type: ignore[arg-type]
    assert verify_bundle(before.bundle, before.public_key).profile is None
    said: list[str] = []
    release = prepare_release(settings, "plain/4", registry=WithSample(path), progress=said.append)  # type: ignore[arg-type]
    assert not release.bundle_cached and any("has no reference profile: rebuilding" in line for line in said)
    manifest = verify_bundle(release.bundle, release.public_key)
    assert manifest.profile == "profile.json"
    with tarfile.open(release.bundle) as tar:
        member = tar.extractfile("profile.json")
        assert member is not None
        profile = ReferenceProfile.from_json(member.read().decode())
    assert [f.name for f in profile.features] == ["income", "group"] and profile.group_column == "group"
    assert profile.prediction_reference is not None and sum(profile.prediction_reference) == 40
    assert any("reference profile: 2 features from 40 reference rows" in line for line in said)
    again = prepare_release(settings, "plain/4", registry=WithSample(path))  # type: ignore[arg-type]
    assert again.bundle_cached and again.bundle_sha256 == release.bundle_sha256
