"""The controller side of a deploy: pin once, bundle once, the playbook's variables, the run's ledger records.

Data flow (docs: DESIGN.md, "Data flow of a deploy")::

    release = prepare_release(settings, "credit-risk@champion")   # pin -> probe -> signed bundle (cached)
    options = DeployOptions.from_settings(settings, limit="edge_cpu", waves="1,25%,100%")
    extra = deploy_extra_vars(release, options, run_id)            # what playbooks/deploy.yml reads
    recorder = RunRecorder(ledger, run_id=..., kind="deploy", ...)
    recorder.start(...); ...run the playbook...; recorder.end(result)

Pinning resolves the reference once (a moved alias later changes nothing) and fetches the artifact into the
content-addressed cache. The probe comes from the model's input example, else the first rows of the version's
reference sample; its expected answer from loading the model on the controller. A version with neither still
deploys, gated on ``/health`` only, with a warning in the run output and in the ledger. Works for any registered
MLflow model. Pure apart from the registry and the ledger passed in (MLflow is imported lazily by them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.config import parse_waves
from modelfleet.core.errors import ArtifactError, BundleError, ModelfleetError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.bundle import Bundle
    from modelfleet.core.config import Settings
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.registry import PinnedVersion, Registry

Progress = Callable[[str], None]
PROBE_ROWS = 3
NO_PROBE_WARNING = ("{ref} ({model}/{version}) has no input example and no reference sample: the deploy is gated "
                    "on /health only (no probe answer is checked)")


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Release:
    """A pinned version and its signed bundle, ready to roll out."""

    ref: str
    model: str
    version: str
    digest: str
    bundle: Path
    bundle_sha256: str
    public_key: Path
    probe_source: str  # "input_example" | "reference_sample" | "none"
    bundle_cached: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def release_name(self) -> str:
        return f"{self.version}-{self.digest[:12]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "model": self.model, "version": self.version, "digest": self.digest,
            "bundle": str(self.bundle), "sha256": self.bundle_sha256, "public_key": str(self.public_key),
            "release": self.release_name, "probe": self.probe_source, "cached": self.bundle_cached,
            "warnings": list(self.warnings),
        }


def normalize_ref(text: str) -> str:
    """``name@7`` (a number after @, as plain playbook runs write it) means version 7: ``name/7``."""
    name, sep, rest = text.strip().partition("@")
    if sep and rest.isdigit():
        return f"{name}/{rest}"
    return text.strip()


def _probe(registry: Registry, pinned: PinnedVersion, say: Progress) -> tuple[dict[str, Any] | None, str]:
    from modelfleet.core.bundle import make_probe

    probe = make_probe(pinned.path, rows=PROBE_ROWS)
    if probe is not None:
        return probe, "input_example"
    try:
        sample = registry.load_reference_sample(pinned.name, pinned.version)
    except (ArtifactError, OSError, ValueError) as exc:
        say(f"no reference sample for {pinned.name}/{pinned.version}: {exc}")
        return None, "none"
    probe = make_probe(pinned.path, sample=sample, rows=PROBE_ROWS)
    return (probe, "reference_sample") if probe is not None else (None, "none")


def prepare_release(
    settings: Settings,
    ref: str,
    *,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> Release:
    """Pin ``ref`` once, build (or reuse) its signed bundle with a probe case, and return the release."""
    from modelfleet.core.bundle import build_bundle, cached_bundle
    from modelfleet.core.registry import Registry
    from modelfleet.core.signing import key_paths, load_or_create_signing_key

    say = progress or _quiet
    registry = registry or Registry(settings)
    text = normalize_ref(ref)
    pinned = registry.pin(text)
    say(f"pinned {text} -> {pinned.name}/{pinned.version} digest {pinned.digest12}"
        + (" (cached artifact)" if pinned.cached else ""))
    warnings: list[str] = []
    key = load_or_create_signing_key(settings.state_dir)
    # A bundle already built for this pinned version carries its probe: computing the probe's expected answer
    # means loading the model on the controller (seconds), so the cache is looked at first.
    bundle: Bundle | None = cached_bundle(settings.state_dir, pinned.name, pinned.version, pinned.digest,
                                          key.public_key())
    if bundle is not None:
        probe = bundle.manifest.probe
        source = str(probe.get("source") or "cached") if probe else "none"
    else:
        try:
            probe, source = _probe(registry, pinned, say)
        except BundleError as exc:  # the model would not score its own example on the controller
            probe, source = None, "none"
            warnings.append(f"{text}: no probe: {exc.message}")
        bundle = build_bundle(
            model=pinned.name, version=pinned.version, digest=pinned.digest, artifact_dir=pinned.path,
            state_dir=settings.state_dir, private_key=key,
            probe_request=probe["request"] if probe else None,
            probe_expected=probe["expected"] if probe else None, probe_source=source if probe else None,
        )
    if probe is None and not warnings:
        warnings.append(NO_PROBE_WARNING.format(ref=text, model=pinned.name, version=pinned.version))
    say(f"bundle {bundle.path.name} sha256 {bundle.sha256[:12]}" + (" (cached)" if bundle.cached else " (built)"))
    for warning in warnings:
        say(f"WARNING: {warning}")
    return Release(
        ref=text, model=pinned.name, version=str(pinned.version), digest=pinned.digest, bundle=bundle.path,
        bundle_sha256=bundle.sha256, public_key=key_paths(settings.state_dir)[1], probe_source=source,
        bundle_cached=bundle.cached, warnings=tuple(warnings),
    )


# -- options and the playbook's variables ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeployOptions:
    inventory: Path
    limit: str | None = None
    waves: list[int | str] = field(default_factory=lambda: [1, "25%", "100%"])
    max_fail_percentage: int = 20
    check: bool = False
    revert_on_abort: bool = False
    keep_releases: int = 3

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        limit: str | None = None,
        waves: str | None = None,
        max_fail: int | None = None,
        check: bool = False,
        revert_on_abort: bool = False,
        inventory: Path | None = None,
    ) -> DeployOptions:
        """Options from the command line, defaults from ``[deploy]``; bad values raise UsageError/ConfigError."""
        if max_fail is not None and not 0 <= max_fail <= 100:
            raise UsageError(f"--max-fail {max_fail} must be a percentage between 0 and 100",
                             hint="e.g. --max-fail 20 stops the rollout when more than 20% of a wave fails")
        return cls(
            inventory=Path(inventory or settings.fleet.inventory),
            limit=limit or None,
            waves=parse_waves(waves) if waves is not None else parse_waves(settings.deploy.waves,
                                                                            origin="deploy.waves"),
            max_fail_percentage=settings.deploy.max_fail_percentage if max_fail is None else max_fail,
            check=check,
            revert_on_abort=revert_on_abort,
            keep_releases=settings.deploy.keep_releases,
        )


def deploy_extra_vars(release: Release, options: DeployOptions, run_id: str) -> dict[str, Any]:
    """The extra variables of ``playbooks/deploy.yml`` (names as the model_release role reads them)."""
    return {
        "model_release_model": release.model,
        "model_release_version": release.version,
        "model_release_digest": release.digest,
        "model_release_bundle": str(release.bundle),
        "model_release_bundle_sha256": release.bundle_sha256,
        "model_release_public_key": str(release.public_key),
        "modelfleet_release_public_key": str(release.public_key),
        "model_release_keep": options.keep_releases,
        "modelfleet_waves": list(options.waves),
        "modelfleet_max_fail_percentage": options.max_fail_percentage,
        "modelfleet_revert_on_abort": options.revert_on_abort,
        "modelfleet_run_id": run_id,
    }


def rollback_extra_vars(model: str, to: str | None, run_id: str) -> dict[str, Any]:
    """The extra variables of ``playbooks/rollback.yml``."""
    return {"model_release_model": model, "model_release_rollback_to": to or "previous", "modelfleet_run_id": run_id}


def provision_extra_vars(settings: Settings, run_id: str) -> dict[str, Any]:
    """The extra variables of ``playbooks/provision.yml``: where the wheelhouse and the release key are."""
    from modelfleet.core.signing import key_paths, load_or_create_signing_key

    load_or_create_signing_key(settings.state_dir)  # nodes get the public half; create it before provisioning
    return {
        "modelfleet_state_dir": str(settings.state_dir),
        "modelfleet_release_public_key": str(key_paths(settings.state_dir)[1]),
        "modelfleet_run_id": run_id,
    }


# -- ledger records of a run the CLI or console drives ---------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What the run's end event says: per-host outcomes and how the run ended."""

    status: str  # ansible-runner status: successful, failed, canceled, timeout, error
    hosts: Mapping[str, str]  # host -> ok | changed | failed | unreachable | rolled_back | skipped | pending
    rc: int | None = None
    duration_s: float | None = None
    batches: Sequence[Sequence[str]] = ()
    error: str | None = None

    @property
    def outcome(self) -> str:
        """The run_end outcome: ok, failed, or incomplete (canceled / could not finish)."""
        if self.status in ("canceled", "timeout", "error"):
            return "incomplete"
        bad = {"failed", "unreachable", "rolled_back"}
        if self.status != "successful" or any(v in bad for v in self.hosts.values()):
            return "failed"
        return "ok"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for value in self.hosts.values():
            out[value] = out.get(value, 0) + 1
        return out


class RunRecorder:
    """Writes a run's ``run_start`` and ``run_end`` (the callback plugin writes the per-node events)."""

    def __init__(self, ledger: Ledger, *, run_id: str, kind: str, actor: str, target: str | None,
                 model: str | None = None, version: str | None = None, digest: str | None = None) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self.kind = kind
        self.actor = actor
        self.target = target or "all"
        self.model = model
        self.version = version
        self.digest = digest

    def _append(self, action: str, outcome: str, details: Mapping[str, Any]) -> None:
        self.ledger.append(action, actor=self.actor, model=self.model, version=self.version, digest=self.digest,
                           target=self.target, run_id=self.run_id, outcome=outcome, details=details)

    def start(self, **details: Any) -> None:
        self._append("run_start", "started", {"kind": self.kind, "source": "modelfleet", **details})

    def end(self, result: RunOutcome, **details: Any) -> str:
        outcome = result.outcome
        body = {"kind": self.kind, "status": result.status, "rc": result.rc, "outcomes": result.counts(),
                "batches": [len(b) for b in result.batches],
                "duration_s": round(result.duration_s, 3) if result.duration_s is not None else None, **details}
        if result.error:
            body["error"] = result.error[:500]
        self._append("run_end", outcome, body)
        return outcome


def controller_identity() -> dict[str, Any]:
    """Who drives a run: this host and process (recorded in run_start to recognise runs that died)."""
    import os
    import socket

    return {"controller": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_runs(
    ledger: Ledger,
    model: str,
    *,
    controller: str | None = None,
    pid_alive: Callable[[int], bool] = _pid_alive,
) -> tuple[list[str], list[str]]:
    """Incomplete runs of ``model``: (runs whose controller process on this host is gone, the other ones).

    A run killed mid-rollout leaves its per-model deploy lock on the nodes it was updating. When every
    incomplete run of the model is known dead, the next deploy may break those locks; when any might still be
    running (alive here, or driven from another controller), it must not.
    """
    import socket

    controller = controller or socket.gethostname()
    dead: list[str] = []
    other: list[str] = []
    for run in ledger.runs(model=model):
        if run.outcome != "incomplete" or run.ended is not None:
            continue
        start = ledger.events(run_id=run.run_id, action="run_start", limit=1)
        details = start[0].details if start else {}
        pid = details.get("pid")
        if details.get("controller") == controller and isinstance(pid, int) and not pid_alive(pid):
            dead.append(run.run_id)
        else:
            other.append(run.run_id)
    return dead, other


def release_summary(release: Release) -> dict[str, Any]:
    """run_start details for a deploy: what was pinned and bundled, and any warning."""
    return {"ref": release.ref, "bundle": release.bundle.name, "bundle_sha256": release.bundle_sha256,
            "probe": release.probe_source, "warnings": list(release.warnings)}


__all__ = [
    "DeployOptions",
    "ModelfleetError",
    "Release",
    "RunOutcome",
    "RunRecorder",
    "controller_identity",
    "dead_runs",
    "deploy_extra_vars",
    "normalize_ref",
    "prepare_release",
    "provision_extra_vars",
    "release_summary",
    "rollback_extra_vars",
]
