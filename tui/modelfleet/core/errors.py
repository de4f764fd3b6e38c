"""The one exception tree of modelfleet.

Every error that an operator can cause or fix is a :class:`ModelfleetError`. The CLI prints such
errors as one line on stderr (``modelfleet: <message>``, then ``  fix: <hint>`` when there is one)
and exits with the error's ``exit_code``; anything else is a bug and keeps its traceback.

::

    ModelfleetError                       exit 2 unless noted
    ├── UsageError                        bad arguments or references (``credit-risk@@x``)
    ├── ConfigError                       bad value in modelfleet.toml or MODELFLEET_* (names key + file)
    │   └── PolicyError                   bad policy file (gates, approvals, roles): names file, line and fix
    ├── IdentityError                     no private key, or a key no person in roles.yaml holds
    ├── RegistryError                     MLflow registry problems
    │   ├── RegistryUnavailable           tracking server unreachable / timed out
    │   ├── ModelNotFound                 unknown registered model
    │   ├── VersionNotFound               unknown version or alias
    │   └── ArtifactError                 download failed, digest mismatch, corrupt artifact
    ├── FleetError                        simulated fleet / inventory problems
    │   ├── NodeNotFound
    │   └── NodeUnreachable
    ├── BundleError                       release bundle invalid, bad signature, checksum mismatch
    ├── ArtifactStoreError                S3 artifact store: no bucket, no credentials, upload refused
    ├── LedgerError                       ledger storage problems
    │   └── LedgerIntegrityError          hash chain broken (exit 1)
    ├── RunError                          an ansible / terraform run could not start
    └── CheckFailed                       a check ran and failed (gate, health, drift, verify) (exit 1)
        └── GovernanceError               not cleared: gate not passed, approvals missing, approval refused
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNDECIDED = 3  # a check ran but had too little data to decide (drift: INSUFFICIENT_DATA)


class ModelfleetError(Exception):
    """Base of every expected error. ``hint`` tells the operator how to fix it."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ModelfleetError):
    """Bad command-line arguments or a malformed reference."""


class ConfigError(ModelfleetError):
    """A configuration value is missing, malformed or out of range."""


class RegistryError(ModelfleetError):
    """The model registry refused or failed a request."""


class RegistryUnavailable(RegistryError):
    """The tracking server did not answer in time."""


class ModelNotFound(RegistryError):
    """No registered model has that name."""


class VersionNotFound(RegistryError):
    """The model has no such version or alias."""


class ArtifactError(RegistryError):
    """An artifact could not be downloaded, or its content does not match its digest."""


class PolicyError(ConfigError):
    """A policy file (gates, approvals, roles) is malformed; the message names the file and line."""


class IdentityError(ModelfleetError):
    """The user holds no private key, or one that no person in the roles file holds."""


class FleetError(ModelfleetError):
    """The fleet (simulated or from inventory) is not in the state a command needs."""


class NodeNotFound(FleetError):
    """The inventory has no node of that name."""


class NodeUnreachable(FleetError):
    """A node did not answer."""


class BundleError(ModelfleetError):
    """A release bundle is malformed, tampered with, or signed by an unknown key."""


class ArtifactStoreError(ModelfleetError):
    """The S3 artifact store refused a request (missing bucket or credentials, access denied, bad endpoint)."""


class LedgerError(ModelfleetError):
    """The deployment ledger could not be read or written."""


class LedgerIntegrityError(LedgerError):
    """The ledger's hash chain does not verify."""

    exit_code = EXIT_CHECK_FAILED


class RunError(ModelfleetError):
    """An Ansible or Terraform run could not be started or was refused."""


class CheckFailed(ModelfleetError):
    """A check ran to completion and its verdict is 'failed'."""

    exit_code = EXIT_CHECK_FAILED


class GovernanceError(CheckFailed):
    """Governance refused: a gate not passed, approvals missing or expired, an approval not allowed.

    ``missing`` lists what is missing (one short phrase each) for front ends that show it before a deploy."""

    def __init__(self, message: str, *, hint: str | None = None, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.missing = missing
