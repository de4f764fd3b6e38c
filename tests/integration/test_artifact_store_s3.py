"""The S3 artifact store against an S3 API server on loopback (moto's server mode) and a simulated node.

The controller uploads a signed bundle once (content-addressed key); `playbooks/deploy.yml` with the role's S3
variables (:meth:`StoredBundle.extra_vars`) makes the controller presign a GET URL and the node download it
over HTTP, check its sha256, verify and switch. A tampered object in the bucket is refused on the node before
the switch: the node keeps serving the release it had. One provisioned node (127.0.86.1, ssh 2286) and one
server (127.0.86.250:5086) for the module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from modelfleet.core.artifact_store import S3Location, StoredBundle, file_sha256, upload_bundle
from modelfleet.core.config import Settings, load_settings
from modelfleet.core.deploy import Release, prepare_release
from modelfleet.core.errors import ArtifactStoreError
from modelfleet.core.fleet import Inventory
from modelfleet.core.ledger import Ledger
from modelfleet.runners.events import RunEvent
from modelfleet.runners.pipeline import RunResult, launch, prepare
from modelfleet.runners.requests import DeployRequest
from modelfleet.sim.session import RunningFleet
from tests.integration.s3server import CREDENTIALS, s3_server

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

MODELFLEET = str(Path(sys.executable).parent / "modelfleet")
BUCKET = "modelfleet-artifacts"
NODE = "edge-cpu-01"
PRESIGN = Path(__file__).resolve().parents[2] / "roles" / "model_release" / "files" / "presign_s3.py"


class Ctx:
    def __init__(self, running: RunningFleet, project: Path, endpoint: str) -> None:
        self.running = running
        self.project = project
        self.settings: Settings = load_settings(config_file=project / "modelfleet.toml")
        self.endpoint = endpoint
        self.location = S3Location(BUCKET, endpoint_url=endpoint, region="us-east-1")
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFLEET_", "ANSIBLE_"))}
        return subprocess.run([MODELFLEET, *args], cwd=self.project, env=env, capture_output=True, text=True,
                              timeout=1500, check=False)

    def release(self, ref: str) -> Release:
        return prepare_release(self.settings, ref)

    def deploy(self, release: Release, stored: StoredBundle) -> tuple[RunResult, list[RunEvent]]:
        """What `modelfleet deploy --source s3` will do: the prepared deploy, plus the role's S3 variables."""
        prepared = prepare(self.settings, DeployRequest(ref=release.ref, release=release, waves="1"))
        prepared = dataclasses.replace(prepared, extra_vars={**prepared.extra_vars, **stored.extra_vars(300)})
        events: list[RunEvent] = []
        handle = launch(self.settings, prepared, on_event=events.append)
        return handle.wait(900), events

    def current(self) -> str | None:
        link = self.running.fleet.nodes_dir / NODE / "opt" / "modelfleet" / "models" / "credit-risk" / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def health(self) -> dict[str, Any]:
        node = Inventory.load(self.running.inventory).node(NODE)
        return dict(httpx.get(node.agent_url + "/health", timeout=5, trust_env=False).json())


@pytest.fixture(scope="module")
def ctx(make_sim_fleet: Any) -> Iterator[Ctx]:
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)  # the controller's credentials (the presign runs under ansible-playbook)
    try:
        with make_sim_fleet("127.0.86", 2286, "cpu=1") as running:
            project = Path(running.settings.state_dir).parent
            project.chmod(0o755)
            state = running.settings.state_dir
            (project / "modelfleet.toml").write_text(
                f'[paths]\nstate_dir = "{state}"\n'
                f'[registry]\ntracking_uri = "sqlite:///{project}/mlflow.db"\n'
                f'artifact_root = "{project}/mlartifacts"\ncache_dir = "{state}/cache"\n'
                f'[ledger]\nurl = "sqlite:///{project}/ledger.db"\n'
                f'[fleet]\ninventory = "{running.inventory}"\n'
                f'[sim]\naddress_prefix = "127.0.86"\nssh_port = 2286\nnodes = "cpu=1"\n'
                f'[artifacts]\ns3_bucket = "{BUCKET}"\ns3_endpoint_url = "http://127.0.86.250:5086"\n'
                f's3_region = "us-east-1"\npresign_expires_s = 300\n',
                encoding="utf-8",
            )
            group_vars = Path(running.inventory).parent / "group_vars"
            group_vars.mkdir(exist_ok=True)
            (group_vars / "edge.yml").write_text("model_release_gate_wait_s: 40\n", encoding="utf-8")
            with s3_server("127.0.86.250", 5086, project / "moto.log") as endpoint:
                c = Ctx(running, project, endpoint)
                c.client.create_bucket(Bucket=BUCKET)
                for step in (("demo", "seed"), ("provision", "--yes")):
                    proc = c.cli(*step)
                    assert proc.returncode == 0, proc.stdout + proc.stderr
                yield c
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_bundle_is_uploaded_once_under_its_content(ctx: Ctx) -> None:
    release = ctx.release("credit-risk@champion")
    stored = upload_bundle(release.bundle, ctx.location)
    assert stored.uploaded and stored.sha256 == release.bundle_sha256 == file_sha256(release.bundle)
    assert stored.key == f"bundles/{release.bundle_sha256}/{release.bundle.name}"
    head = ctx.client.head_object(Bucket=BUCKET, Key=stored.key)
    assert head["Metadata"]["sha256"] == stored.sha256 and head["ContentLength"] == release.bundle.stat().st_size
    again = upload_bundle(release.bundle, ctx.location)
    assert again.key == stored.key and not again.uploaded


def test_upload_errors_name_the_bucket_and_the_fix(ctx: Ctx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(b"x")
    with pytest.raises(ArtifactStoreError, match="bucket no-such-bucket does not exist"):
        upload_bundle(bundle, S3Location("no-such-bucket", endpoint_url=ctx.endpoint, region="us-east-1"))
    with pytest.raises(ArtifactStoreError, match="does not exist") as err:
        upload_bundle(tmp_path / "missing.tar.gz", ctx.location)
    assert "modelfleet bundle" in (err.value.hint or "")
    for key in CREDENTIALS:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ArtifactStoreError, match="no AWS credentials"):
        upload_bundle(bundle, S3Location(BUCKET, endpoint_url=ctx.endpoint, region="us-east-1"))


def test_deploy_pulls_the_bundle_from_s3(ctx: Ctx) -> None:
    """`modelfleet deploy --source s3`: the bundle is uploaded once under its content, the node pulls it."""
    from modelfleet.runners.pipeline import replay

    release = ctx.release("credit-risk@champion")
    proc = ctx.cli("deploy", "credit-risk@champion", "--source", "s3", "--waves", "1", "--yes", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["outcome"] == "ok"
    key = f"bundles/{release.bundle_sha256}/{release.bundle.name}"
    assert ctx.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == release.bundle.stat().st_size
    tasks = {t.task for t in replay(ctx.settings, data["run_id"]).hosts[NODE].tasks if t.status in ("ok", "changed")}
    assert "Pull | download the bundle on the node (HTTPS only, checksum checked)" in tasks, sorted(tasks)
    assert not any("push the bundle" in t for t in tasks)
    assert ctx.current() == release.release_name
    assert ctx.health()["version"] == release.version
    with Ledger(ctx.settings.ledger.url) as ledger:
        start = ledger.events(run_id=data["run_id"], action="run_start")[0]
    assert start.details["source"] == "s3" and start.details["artifact_url"] == f"s3://{BUCKET}/{key}"
    # a second deploy of the same bundle uploads nothing
    again = ctx.cli("deploy", "credit-risk@champion", "--source", "s3", "--yes")
    assert again.returncode == 0 and "already in s3://" in again.stderr, again.stderr


def test_a_source_s3_deploy_without_a_bucket_is_refused_before_anything(ctx: Ctx) -> None:
    env_cli = ctx.cli("deploy", "credit-risk@champion", "--source", "s3", "--yes")
    assert env_cli.returncode == 0  # configured: fine
    toml = ctx.project / "modelfleet.toml"
    text = toml.read_text()
    try:
        toml.write_text(text.replace(f's3_bucket = "{BUCKET}"', 's3_bucket = ""'))
        proc = ctx.cli("deploy", "credit-risk@challenger", "--source", "s3", "--yes")
        assert proc.returncode == 2 and "needs a bucket" in proc.stderr, proc.stderr
    finally:
        toml.write_text(text)


def test_a_tampered_object_is_refused_on_the_node_before_the_switch(ctx: Ctx) -> None:
    before = ctx.current()
    assert before is not None  # the champion from the test above
    release = ctx.release("credit-risk@challenger")
    stored = upload_bundle(release.bundle, ctx.location)
    data = bytearray(release.bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped in the bucket, size and metadata kept
    ctx.client.put_object(Bucket=BUCKET, Key=stored.key, Body=bytes(data), Metadata={"sha256": stored.sha256})

    result, _ = ctx.deploy(release, stored)
    assert not result.ok and result.outcome_of(NODE) == "failed", result.to_dict()
    assert "checksum" in (result.hosts[NODE].message or "").lower(), result.hosts[NODE]
    assert ctx.current() == before  # never switched
    assert ctx.health()["version"] != release.version

    # the next upload notices the object is not the bundle and puts it back
    healed = upload_bundle(release.bundle, ctx.location)
    assert healed.uploaded
    assert ctx.client.get_object(Bucket=BUCKET, Key=stored.key)["Body"].read() == release.bundle.read_bytes()


def test_presign_script_refuses_bad_input_in_one_line(ctx: Ctx) -> None:
    def presign(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(PRESIGN), *args], capture_output=True, text=True, timeout=60,
                              check=False, env=env)

    ok = presign("--bucket", BUCKET, "--key", "bundles/x", "--endpoint-url", ctx.endpoint, "--expires", "60")
    assert ok.returncode == 0 and ok.stdout.startswith(f"{ctx.endpoint}/{BUCKET}/bundles/x?"), ok.stderr
    for args, message in [
        (("--bucket", "", "--key", "k"), "model_release_s3_bucket is empty"),
        (("--bucket", BUCKET, "--key", "k", "--endpoint-url", "http://s3.example.com"), "plain HTTP"),
        (("--bucket", BUCKET, "--key", "k", "--expires", "0"), "between 1 and 604800"),
    ]:
        proc = presign(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    bare.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
                AWS_EC2_METADATA_DISABLED="true")
    proc = presign("--bucket", BUCKET, "--key", "k", "--endpoint-url", ctx.endpoint, env=bare)
    assert proc.returncode == 2 and "needs AWS credentials" in proc.stderr and proc.stderr.count("\n") == 1
