"""The controller side of a deploy: pin once, bundle once, the release signing key, the playbooks' variables.

Data flow (docs: DESIGN.md, "Data flow of a deploy"; the run itself is started by runners/pipeline.py)::

    release = prepare_release(settings, "credit-risk@champion")   # pin -> probe -> signed bundle (cached)
    options = DeployOptions.from_settings(settings, limit="edge_cpu", waves="1,25%,100%")
    extra = deploy_extra_vars(release, options, run_id)            # what playbooks/deploy.yml reads

Pinning resolves the reference once (a moved alias later changes nothing) and fetches the artifact into the
content-addressed cache. The probe comes from the model's input example, else the first rows of the version's
reference sample; its expected answer from loading the model on the controller. A version with neither still
deploys, gated on ``/health`` only, with a warning in the run output and in the ledger. Works for any registered
MLflow model. MLflow is imported lazily, by the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.core.config import parse_waves
from modelfleet.core.errors import ArtifactError, BundleError, ModelfleetError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from modelfleet.core.config import Settings
    from modelfleet.core.fairness import GroupThresholds
    from modelfleet.core.registry import PinnedVersion, Registry

Progress = Callable[[str], None]
PROBE_ROWS = 3
NO_PROBE_WARNING = ("{ref} ({model}/{version}) has no input example and no reference sample: the deploy is gated "
                    "on /health only (no probe answer is checked)")


def quiet(_: str) -> None:
    """A Progress that says nothing."""


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
    thresholds_sha256: str | None = None  # the per-group thresholds the release carries (None: none)

    @property
    def release_name(self) -> str:
        """The node's release folder name (core/release_names.py)."""
        from modelfleet.core.release_names import release_name

        return release_name(self.version, self.digest, self.thresholds_sha256)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "model": self.model, "version": self.version, "digest": self.digest,
            "bundle": str(self.bundle), "sha256": self.bundle_sha256, "public_key": str(self.public_key),
            "release": self.release_name, "probe": self.probe_source, "cached": self.bundle_cached,
            "warnings": list(self.warnings), "thresholds_sha256": self.thresholds_sha256,
        }


def normalize_ref(text: str) -> str:
    """``name@7`` (a number after @, as plain playbook runs write it) means version 7: ``name/7``."""
    name, sep, rest = text.strip().partition("@")
    if sep and rest.isdigit():
        return f"{name}/{rest}"
    return text.strip()


def _probe(registry: Registry, pinned: PinnedVersion, say: Progress,
           thresholds: GroupThresholds | None) -> tuple[dict[str, Any] | None, str]:
    from modelfleet.core.bundle import make_probe

    probe = make_probe(pinned.path, rows=PROBE_ROWS, thresholds=thresholds)
    if probe is not None:
        return probe, "input_example"
    try:
        sample = registry.load_reference_sample(pinned.name, pinned.version)
    except (ArtifactError, OSError, ValueError) as exc:
        say(f"no reference sample for {pinned.name}/{pinned.version}: {exc}")
        return None, "none"
    probe = make_probe(pinned.path, sample=sample, rows=PROBE_ROWS, thresholds=thresholds)
    return (probe, "reference_sample") if probe is not None else (None, "none")


def prepare_release(
    settings: Settings,
    ref: str,
    *,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> Release:
    """Pin ``ref`` once, build (or reuse) its signed bundle with a probe case, and return the release.

    Refused (BundleError) when the controller cannot load the version to compute the probe's expected answer:
    the nodes could not load it either. A cached bundle that does not verify is rebuilt, and the progress says
    so; one built without a probe is rebuilt when a probe can now be made."""
    from modelfleet.core.bundle import build_bundle, find_cached_bundle
    from modelfleet.core.registry import Registry
    from modelfleet.core.release_profile import has_reference_sample, reference_profile
    from modelfleet.core.signing import key_paths

    say = progress or quiet
    registry = registry or Registry(settings)
    text = normalize_ref(ref)
    pinned = registry.pin(text)
    say(f"pinned {text} -> {pinned.name}/{pinned.version} digest {pinned.digest12}"
        + (" (cached artifact)" if pinned.cached else ""))
    warnings: list[str] = []
    key = release_key(settings, progress=say)
    # the per-group thresholds attached to the version (modelfleet fairness --attach) are part of the release:
    # read from the tags as they were when the version was pinned
    from modelfleet.core.evaluation import attached_thresholds

    thresholds = attached_thresholds(pinned)
    if thresholds is not None:
        say(f"thresholds {thresholds.sha256[:12]} on {thresholds.column} are part of this release")
    # A bundle already built for this pinned version carries its probe: computing the probe's expected answer
    # means loading the model on the controller (seconds), so the cache is looked at first.
    bundle, damaged = find_cached_bundle(settings.state_dir, pinned.name, pinned.version, pinned.digest,
                                         key.public_key(), thresholds_sha256=thresholds.sha256 if thresholds else None)
    if damaged:
        say(f"WARNING: {damaged}: rebuilding it")
        warnings.append(f"{damaged}; rebuilt")
    if bundle is not None and bundle.manifest.profile is None and has_reference_sample(registry, pinned):
        # built before releases carried their reference profile: the agents would count nothing
        say(f"the cached bundle {bundle.path.name} has no reference profile: rebuilding it")
        bundle = None
    profile_warnings: list[str] = []
    probe: dict[str, Any] | None = bundle.manifest.probe if bundle is not None else None
    source = str(probe.get("source") or "cached") if probe else "none"
    if probe is None:
        try:
            probe, source = _probe(registry, pinned, say, thresholds)
        except BundleError as exc:  # the model would not score its own example on the controller
            raise BundleError(
                f"{text} ({pinned.name}/{pinned.version}) cannot be loaded on the controller to compute its probe "
                f"answer: {exc.message}; the nodes could not load it either, so nothing was signed or shipped",
                hint="fix the registered model (its artifact is missing or broken), or deploy another version",
            ) from None
        if bundle is not None and probe is not None:
            say(f"the cached bundle {bundle.path.name} has no probe and one can be made now: rebuilding it")
        if bundle is None or probe is not None:
            profile, profile_warnings = reference_profile(registry, pinned, say, thresholds=thresholds)
            bundle = build_bundle(
                model=pinned.name, version=pinned.version, digest=pinned.digest, artifact_dir=pinned.path,
                state_dir=settings.state_dir, private_key=key,
                probe_request=probe["request"] if probe else None,
                probe_expected=probe["expected"] if probe else None, probe_source=source if probe else None,
                thresholds=thresholds, profile=profile, force=True,
            )
    assert bundle is not None
    if probe is None:
        warnings.append(NO_PROBE_WARNING.format(ref=text, model=pinned.name, version=pinned.version))
    warnings.extend(profile_warnings)
    say(f"bundle {bundle.path.name} sha256 {bundle.sha256[:12]}" + (" (cached)" if bundle.cached else " (built)"))
    for warning in warnings:
        if not warning.endswith("; rebuilt"):
            say(f"WARNING: {warning}")
    return Release(
        ref=text, model=pinned.name, version=str(pinned.version), digest=pinned.digest, bundle=bundle.path,
        bundle_sha256=bundle.sha256, public_key=key_paths(settings.state_dir)[1], probe_source=source,
        bundle_cached=bundle.cached, warnings=tuple(warnings), thresholds_sha256=bundle.manifest.thresholds_sha256,
    )


@dataclass(frozen=True)
class KeyInfo:
    """The release signing key a run uses: its id, and whether this run created it."""

    key_id: str | None
    created: bool = False


def trusted_key(settings: Settings) -> tuple[str, str] | None:
    """(key id, run id) of the release key the fleet was last provisioned with, per the ledger (or None)."""
    from modelfleet.core.ledger import Ledger

    with Ledger(settings.ledger.url) as ledger:
        for ev in reversed(ledger.events(action="run_start")):
            key = ev.details.get("signing_key")
            if ev.details.get("kind") == "provision" and isinstance(key, str) and not ev.details.get("check"):
                return key, ev.run_id or "?"
    return None


def _missing_key_error(settings: Settings, trusted: tuple[str, str]) -> BundleError:
    from modelfleet.core.signing import key_paths

    private, _ = key_paths(settings.state_dir)
    return BundleError(
        f"the release signing key {private} is missing, and the fleet trusts key {trusted[0]} (provisioned by run "
        f"{trusted[1]}): a new key would make every node refuse every bundle",
        hint=f"restore {private.parent} from a backup, or run `modelfleet provision --new-signing-key` to make "
        "the nodes trust a new key")


def _foreign_key_error(settings: Settings, found: str, trusted: tuple[str, str]) -> BundleError:
    from modelfleet.core.signing import key_paths

    private, _ = key_paths(settings.state_dir)
    return BundleError(
        f"the release signing key {private} is key {found}, but the fleet trusts key {trusted[0]} (provisioned by "
        f"run {trusted[1]}): every node would refuse its bundles; nothing was signed or shipped",
        hint=f"restore the trusted key into {private.parent} from a backup, or run `modelfleet provision "
        "--new-signing-key` to make the nodes trust this one")


def release_key(settings: Settings, *, progress: Progress | None = None) -> Ed25519PrivateKey:
    """The controller's release signing key for a deploy. Never created here: when it is missing, the error
    says whether the fleet trusts a key that was lost (restore it) or was never provisioned (provision); a key
    other than the one the fleet was last provisioned with is refused before anything is signed."""
    from modelfleet.core.signing import key_id, key_paths, load_signing_key

    key = load_signing_key(settings.state_dir)
    trusted = trusted_key(settings)
    if key is not None:
        if trusted is not None and key_id(key.public_key()) != trusted[0]:
            raise _foreign_key_error(settings, key_id(key.public_key()), trusted)
        return key
    if trusted is not None:
        raise _missing_key_error(settings, trusted)
    raise BundleError(f"no release signing key at {key_paths(settings.state_dir)[0]}",
                      hint="run `modelfleet provision` first: it creates the key and gives the nodes its public half")


def ensure_signing_key(settings: Settings, *, replace_trusted: bool = False, dry_run: bool = False,
                       progress: Progress | None = None) -> KeyInfo:
    """The release key for a provisioning run, created when missing. Refused when the ledger says the fleet
    trusts a key that is now missing, unless ``replace_trusted`` (``--new-signing-key``)."""
    from modelfleet.core.signing import key_id, key_paths, load_or_create_signing_key, load_signing_key

    say = progress or quiet
    key = load_signing_key(settings.state_dir)
    if key is not None:
        return KeyInfo(key_id(key.public_key()))
    trusted = trusted_key(settings)
    if trusted is not None and not replace_trusted:
        raise _missing_key_error(settings, trusted)
    if dry_run:
        say(f"check mode: a new release signing key would be created at {key_paths(settings.state_dir)[0]}")
        return KeyInfo(None)
    key = load_or_create_signing_key(settings.state_dir)
    new_id = key_id(key.public_key())
    say(f"created release signing key {new_id} at {key_paths(settings.state_dir)[0]}"
        + (f" (replacing the lost key {trusted[0]}: this provisioning makes the nodes trust the new one)"
           if trusted else ""))
    return KeyInfo(new_id, created=True)


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
    from modelfleet.core.signing import key_paths

    return {
        "modelfleet_state_dir": str(settings.state_dir),
        "modelfleet_release_public_key": str(key_paths(settings.state_dir)[1]),
        "modelfleet_run_id": run_id,
    }


def release_summary(release: Release) -> dict[str, Any]:
    """run_start details for a deploy: what was pinned and bundled, and any warning."""
    return {"ref": release.ref, "bundle": release.bundle.name, "bundle_sha256": release.bundle_sha256,
            "probe": release.probe_source, "warnings": list(release.warnings)}


__all__ = [
    "DeployOptions",
    "KeyInfo",
    "ModelfleetError",
    "Release",
    "deploy_extra_vars",
    "ensure_signing_key",
    "normalize_ref",
    "prepare_release",
    "provision_extra_vars",
    "release_key",
    "release_summary",
    "rollback_extra_vars",
]
