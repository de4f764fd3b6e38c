"""Typed run requests: one per kind of run, each preparing itself into a :class:`PreparedRun`.

Preparing checks everything that can be checked before a node is touched and writes nothing: the target
selects nodes, the model and version exist, the reference pins, the bundle builds and signs, the signing key is
the one the fleet trusts. A request refused there raises a :class:`~modelfleet.core.errors.ModelfleetError` that
names the object and the fix, and no run starts. The pipeline (:mod:`modelfleet.runners.pipeline`) launches a
prepared run. A new kind of run is a new request class here, nothing else::

    prepared = DeployRequest(ref="credit-risk@champion", limit="edge_cpu").prepare(settings, run_id=run_id)
    prepared.summary      # 'deploy credit-risk/3 (1a2b3c4d5e6f) to 3 node(s)'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelfleet.core.deploy import Progress, quiet
from modelfleet.core.errors import ModelfleetError, ModelNotFound, UsageError, VersionNotFound

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.deploy import Release
    from modelfleet.core.fleet import Node
    from modelfleet.runners.deploy_governance import DeployGovernance

@dataclass(frozen=True)
class PreparedRun:
    """A request that passed every check: what will run, where, and what the ledger will say about it."""

    request: RunRequest
    run_id: str
    kind: str
    summary: str
    hosts: tuple[str, ...]
    inventory: Path
    playbook: str
    extra_vars: Mapping[str, Any]
    model: str | None = None
    version: str | None = None
    digest: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    release: Release | None = None
    warnings: tuple[str, ...] = ()
    executor: str = "ansible"  # ansible | terraform: what runs it (runners/pipeline.py)
    governance: DeployGovernance | None = None  # a deploy's clearances (runners/deploy_governance.py)
    files: Mapping[str, str] = field(default_factory=dict)  # written into the run folder at launch: name -> text

    @property
    def limit(self) -> str | None:
        return self.request.limit

    @property
    def check(self) -> bool:
        return self.request.check


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """What every run request says: where (``limit`` of ``inventory``), dry or not, who and why."""

    kind: ClassVar[str] = "run"
    playbook: ClassVar[str] = ""
    limit: str | None = None
    inventory: Path | None = None
    check: bool = False
    actor: str | None = None
    reason: str | None = None  # why the run happens (an operator's note, a drift verdict), kept in run_start
    origin: str = "cli"  # cli | console | ansible-playbook | drift | ...

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        raise NotImplementedError

    # -- shared checks ---------------------------------------------------------------------------------------

    def inventory_path(self, settings: Settings) -> Path:
        return Path(self.inventory or settings.fleet.inventory)

    def target_hosts(self, settings: Settings) -> tuple[str, ...]:
        """The nodes ``limit`` selects; refused when it selects none (NodeNotFound for an unknown term)."""
        return tuple(n.name for n in self.target_nodes(settings))

    def target_nodes(self, settings: Settings) -> list[Node]:
        """The inventory's nodes ``limit`` selects (see :meth:`target_hosts`)."""
        from modelfleet.core.fleet import Inventory

        inventory = self.inventory_path(settings)
        if not inventory.exists():
            raise UsageError(f"inventory {inventory} does not exist",
                             hint="run `modelfleet sim up`, or set fleet.inventory / pass --inventory")
        inv = Inventory.load(inventory, default_agent_port=settings.fleet.agent_port)
        nodes = list(inv.select(self.limit))
        if not nodes:
            raise UsageError(f"--limit {self.limit!r} selects no node of {inventory}",
                             hint="name a group or node of the inventory (modelfleet sim status lists them)")
        return nodes

    def _common_details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"origin": self.origin, "check": self.check, "limit": self.limit}
        if self.reason:
            out["reason"] = self.reason
        return out

    def _prepared(self, settings: Settings, *, run_id: str, summary: str, hosts: tuple[str, ...],
                  extra_vars: Mapping[str, Any], details: Mapping[str, Any] | None = None,
                  **fields: Any) -> PreparedRun:
        summary += " (check mode)" if self.check else ""
        return PreparedRun(request=self, run_id=run_id, kind=self.kind, summary=summary, hosts=hosts,
                           inventory=self.inventory_path(settings), playbook=self.playbook,
                           extra_vars=dict(extra_vars), details={**self._common_details(), **(details or {})},
                           **fields)


def _nodes(n: int) -> str:
    return f"{n} node{'s' if n != 1 else ''}"


@dataclass(frozen=True, kw_only=True)
class ProvisionRequest(RunRequest):
    """``playbooks/provision.yml``: runtime, agent venv and the release key's public half on every node."""

    kind: ClassVar[str] = "provision"
    playbook: ClassVar[str] = "provision.yml"
    new_signing_key: bool = False  # allow creating a signing key when the fleet already trusts another one

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        from modelfleet.core.deploy import ensure_signing_key, provision_extra_vars

        hosts = self.target_hosts(settings)
        key = ensure_signing_key(settings, replace_trusted=self.new_signing_key, progress=progress or quiet,
                                 dry_run=self.check)
        return self._prepared(settings, run_id=run_id, summary=f"provision {_nodes(len(hosts))}", hosts=hosts,
                              extra_vars=provision_extra_vars(settings, run_id),
                              details={"signing_key": key.key_id, "signing_key_created": key.created})


@dataclass(frozen=True, kw_only=True)
class DeployRequest(RunRequest):
    """``playbooks/deploy.yml``: pin ``ref`` once, bundle and sign it once, check governance for the environments
    of the targeted nodes (refused: GovernanceError, exit 1, nothing written), roll it out in waves."""

    kind: ClassVar[str] = "deploy"
    playbook: ClassVar[str] = "deploy.yml"
    ref: str
    waves: str | None = None
    max_fail: int | None = None
    revert_on_abort: bool = False
    release: Release | None = None  # pinned and bundled already (the console's preview)
    expect_digest: str | None = None  # refuse when the reference no longer pins to this digest
    source: str | None = None  # push | s3 (None: artifacts.source)
    break_glass: str | None = None  # ops only: deploy to protected environments without approvals, with this reason

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        from modelfleet.core.deploy import DeployOptions, deploy_extra_vars, normalize_ref, prepare_release
        from modelfleet.core.reference import parse_ref

        ref = normalize_ref(self.ref)
        parse_ref(ref)  # a malformed reference fails before anything else
        options = DeployOptions.from_settings(settings, limit=self.limit, waves=self.waves, max_fail=self.max_fail,
                                              check=self.check, revert_on_abort=self.revert_on_abort,
                                              inventory=self.inventory_path(settings))
        nodes = self.target_nodes(settings)
        hosts = tuple(n.name for n in nodes)
        release = self.release or prepare_release(settings, ref, progress=progress)
        if self.expect_digest and release.digest != self.expect_digest:
            raise UsageError(f"{ref} now pins to digest {release.digest[:12]}, not {self.expect_digest[:12]} as "
                             "previewed", hint="preview again to pin the version that runs now")
        from modelfleet.core.deploy import release_summary
        from modelfleet.runners.deploy_governance import CLEARANCE_FILE, govern_deploy

        governance = govern_deploy(settings, release, nodes, break_glass=self.break_glass, check=self.check,
                                   limit=self.limit)
        for note in governance.notes:
            (progress or quiet)(note)
        details = {**release_summary(release), "waves": list(options.waves),
                   "max_fail_percentage": options.max_fail_percentage, "revert_on_abort": options.revert_on_abort,
                   "governance": governance.details()}
        extra_vars = deploy_extra_vars(release, options, run_id)
        extra_vars.update(governance.extra_vars(Path(settings.state_dir) / "runs" / run_id / CLEARANCE_FILE))
        store = self._artifact_store(settings, release, progress or quiet)
        if store is not None:
            extra_vars.update(store[0])
            details.update(store[1])
        return self._prepared(
            settings, run_id=run_id, summary=f"deploy {release.model}/{release.version} ({release.digest[:12]}) to "
            f"{_nodes(len(hosts))}", hosts=hosts, extra_vars=extra_vars,
            details=details, model=release.model, version=release.version, digest=release.digest,
            release=release, warnings=release.warnings, governance=governance,
            files={CLEARANCE_FILE: governance.documents_json()} if governance.clearances else {})


    def _artifact_store(self, settings: Settings, release: Release,
                        say: Progress) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """With ``source`` s3: the bundle uploaded once (content-addressed; nothing in check mode) and the role's
        variables for nodes to pull it through a presigned URL. None for a push deploy."""
        from modelfleet.core.errors import ConfigError

        a = settings.artifacts
        source = self.source or a.source
        if source == "push":
            return None
        if source != "s3":
            where = "--source" if self.source else settings.origin_of("artifacts.source")
            raise ConfigError(f"{where}: artifact source {source!r} is not push or s3",
                              hint="push: ansible copies the bundle to each node; s3: nodes pull it from a bucket")
        if not a.s3_bucket:
            raise ConfigError("a deploy with source s3 needs a bucket: artifacts.s3_bucket is empty",
                              hint="set s3_bucket in [artifacts] of modelfleet.toml or MODELFLEET_ARTIFACTS_S3_BUCKET "
                                   "(`modelfleet infra output --env aws` names the artifact store's bucket)")
        from modelfleet.core.artifact_store import S3Location, StoredBundle, bundle_key, upload_bundle

        location = S3Location(a.s3_bucket, a.s3_prefix, a.s3_endpoint_url or None, a.s3_region or None)
        if self.check:
            key = bundle_key(location.prefix, release.bundle_sha256, release.bundle.name)
            stored = StoredBundle(location, key, release.bundle_sha256, release.bundle.stat().st_size, uploaded=False)
        else:
            stored = upload_bundle(release.bundle, location, sha256=release.bundle_sha256)
            say(f"bundle {'uploaded to' if stored.uploaded else 'already in'} {stored.url}")
        return (stored.extra_vars(a.presign_expires_s),
                {"source": "s3", "artifact_url": stored.url, "uploaded": stored.uploaded})


@dataclass(frozen=True, kw_only=True)
class RollbackRequest(RunRequest):
    """``playbooks/rollback.yml``: ``model`` back to each node's previous release, or to version ``to``."""

    kind: ClassVar[str] = "rollback"
    playbook: ClassVar[str] = "rollback.yml"
    model: str
    to: str | None = None

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        from modelfleet.core.deploy import rollback_extra_vars
        from modelfleet.core.reference import validate_model_name

        validate_model_name(self.model)
        if self.to is not None and not str(self.to).isdigit():
            raise UsageError(f"--to {self.to!r} is not a version number", hint="e.g. --to 2")
        hosts = self.target_hosts(settings)
        self._known(settings, hosts)
        to = None if self.to is None else str(self.to)
        where = f"version {to}" if to else "the previous release"
        return self._prepared(
            settings, run_id=run_id, summary=f"roll {self.model} back to {where} on {_nodes(len(hosts))}",
            hosts=hosts, extra_vars=rollback_extra_vars(self.model, to, run_id),
            details={"to": to or "previous"}, model=self.model, version=to)

    def _known(self, settings: Settings, hosts: tuple[str, ...]) -> None:
        """Refuse a model (or ``--to`` version) that neither the ledger nor the registry knows: a rollback of
        it could only do nothing, or write events about a model that never ran."""
        from modelfleet.core.ledger import Ledger
        from modelfleet.core.placement import PLACING_ACTIONS, models_known

        with Ledger(settings.ledger.url) as ledger:
            events = [e for e in ledger.events(model=self.model) if e.action in PLACING_ACTIONS]
        placed = models_known(events, hosts).get(self.model, set())
        if placed and (self.to is None or str(self.to) in placed):
            return
        try:
            versions: set[str] | None = self._registry_versions(settings)
        except ModelNotFound:
            if not placed:
                raise UsageError(f"no model {self.model!r}: the ledger records no deploy of it on these nodes and "
                                 "the registry does not know it", hint="check the name: modelfleet registry list"
                                 ) from None
            versions = set()  # gone from the registry; the ledger still knows where it ran
        except ModelfleetError:
            versions = None  # the registry is unreachable: a rollback must still work from what the nodes hold
        if versions is None:
            if not placed:
                raise UsageError(f"the ledger records no deploy of {self.model} on these nodes and the registry "
                                 "cannot be asked", hint="check the name and the registry (registry.tracking_uri)")
            return
        if self.to is not None and str(self.to) not in versions:
            # neither the registry nor the ledger (for these nodes) knows it: no node can hold it, the run could
            # only fail on every node (or do nothing)
            ran = f"; the ledger records {', '.join(sorted(placed, key=int))} on these nodes" if placed else ""
            raise UsageError(f"{self.model} has no version {self.to}: the registry has "
                             f"{', '.join(sorted(versions, key=int)) or 'none'}{ran}",
                             hint="pick a version that ran on these nodes: modelfleet describe model " + self.model)

    def _registry_versions(self, settings: Settings) -> set[str]:
        from modelfleet.core.registry import Registry

        try:
            return {str(v.version) for v in Registry(settings).list_versions(self.model)}
        except VersionNotFound:
            return set()


@dataclass(frozen=True, kw_only=True)
class HealthCheckRequest(RunRequest):
    """``playbooks/healthcheck.yml``: read-only health, version and latency of every agent."""

    kind: ClassVar[str] = "healthcheck"
    playbook: ClassVar[str] = "healthcheck.yml"

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        hosts = self.target_hosts(settings)
        return self._prepared(settings, run_id=run_id, summary=f"health-check {_nodes(len(hosts))}",
                              hosts=hosts,
                              extra_vars={"modelfleet_run_id": run_id})


@dataclass(frozen=True, kw_only=True)
class UnlockRequest(RunRequest):
    """``playbooks/unlock.yml``: remove a model's deploy lock on the named nodes when its holder is gone."""

    kind: ClassVar[str] = "unlock"
    playbook: ClassVar[str] = "unlock.yml"
    model: str
    force: bool = False

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        from modelfleet.core.reference import validate_model_name

        validate_model_name(self.model)
        if not self.limit:
            raise UsageError("unlock needs the node(s): --node NAME", hint="e.g. modelfleet unlock credit-risk "
                             "--node edge-cpu-01")
        hosts = self.target_hosts(settings)
        return self._prepared(settings, run_id=run_id, summary=f"unlock {self.model} on {_nodes(len(hosts))}",
                              hosts=hosts,
                              extra_vars={"model_release_model": self.model, "modelfleet_run_id": run_id,
                                          "model_release_unlock_force": self.force},
                              details={"force": self.force}, model=self.model)


@dataclass(frozen=True, kw_only=True)
class ReconcileRequest(RunRequest):
    """``playbooks/reconcile.yml``: read back what each node holds for ``model`` (``current``, its journal) and
    record, per node, whether the ledger agrees, or which run put the node where it is when a run lost it (its
    node went dark after switching, its controller was killed): ``node_reconcile`` events, read by
    core/placement.py. Changes nothing on the nodes."""

    kind: ClassVar[str] = "reconcile"
    playbook: ClassVar[str] = "reconcile.yml"
    model: str

    def prepare(self, settings: Settings, *, run_id: str, progress: Progress | None = None) -> PreparedRun:
        from modelfleet.core.reference import validate_model_name

        validate_model_name(self.model)
        hosts = self.target_hosts(settings)
        return self._prepared(settings, run_id=run_id,
                              summary=f"reconcile the ledger's {self.model} with {_nodes(len(hosts))}", hosts=hosts,
                              extra_vars={"model_release_model": self.model, "modelfleet_run_id": run_id},
                              model=self.model)


REQUEST_TYPES: tuple[type[RunRequest], ...] = (ProvisionRequest, DeployRequest, RollbackRequest,
                                                HealthCheckRequest, UnlockRequest, ReconcileRequest)
