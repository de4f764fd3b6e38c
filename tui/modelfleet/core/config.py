"""Typed settings with embedded defaults, a project file and ``MODELFLEET_*`` overrides.

Lookup order, later wins:

1. the defaults embedded below (one machine, no set-up: SQLite registry and ledger under ``.modelfleet/``);
2. ``modelfleet.toml`` (``MODELFLEET_CONFIG`` names another file; otherwise the nearest one found from the
   working directory upwards);
3. environment variables ``MODELFLEET_<SECTION>_<KEY>``, e.g. ``MODELFLEET_REGISTRY_TRACKING_URI``.

Relative paths (and ``sqlite:///relative`` URIs) are resolved against the project directory: the folder that
holds the config file, or the working directory when there is none. A bad value raises :class:`ConfigError`
naming the key, where it came from (the variable or the file that set it: :attr:`Settings.origins`) and what is
allowed.

Every other ``MODELFLEET_*`` variable the tree reads is listed in :data:`OTHER_VARIABLES`; any name outside both
lists is reported by :func:`unknown_variables` (a misspelling gets "did you mean ..."). See that function for why
this is a warning and not an error.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from modelfleet.core.errors import ConfigError

CONFIG_FILE_NAME = "modelfleet.toml"
ENV_PREFIX = "MODELFLEET_"
DEFAULTS_ORIGIN = "embedded defaults"

# MODELFLEET_* variables that are not configuration keys, with what reads them. A test greps the tree for every
# MODELFLEET_ name in use and fails on one that is neither a key nor listed here: add new ones here.
OTHER_VARIABLES: dict[str, str] = {
    "MODELFLEET_CONFIG": "the configuration file to read instead of the nearest modelfleet.toml",
    "MODELFLEET_ACTOR": "who the ledger records as the actor of a run (default: user@host)",
    "MODELFLEET_ANSIBLE_ROOT": "the checkout whose playbooks/ and roles/ runs use",
    "MODELFLEET_WHEELHOUSE_DIR": "the controller's wheelhouse root (edge_runtime role, molecule, tests)",
    "MODELFLEET_MOLECULE_DIR": "a molecule scenario's state folder (default /tmp)",
    "MODELFLEET_RELEASE_PUBLIC_KEY": "the release public key for plain ansible-playbook runs (roles)",
    "MODELFLEET_GOVERNANCE_TRUST": "the trust file edge_runtime installs for plain ansible-playbook runs (roles)",
    "MODELFLEET_RUN_ID": "set by modelfleet for ansible-playbook and its ledger callback",
    "MODELFLEET_RUN_KIND": "set by modelfleet for ansible-playbook and its ledger callback",
    "MODELFLEET_LEDGER_RUN_OWNER": "set by modelfleet for ansible-playbook and its ledger callback",
    "MODELFLEET_CONTROLLER_PID": "set by modelfleet for ansible-playbook (controller watch)",
    "MODELFLEET_HOLD_FILE": "set by modelfleet for ansible-playbook's ledger callback (a held run waits on it)",
    "MODELFLEET_NODE": "set by the simulated fleet for the processes of a node",
    "MODELFLEET_NODE_CLASS": "set by the simulated fleet for the processes of a node",
    "MODELFLEET_NODE_ROOT": "set by the simulated fleet for the processes of a node",
    "MODELFLEET_TEST_SIGNAL_LOG": "tests/conftest.py: where a signalled pytest-xdist worker notes who sent it",
}


@dataclass(frozen=True)
class PathsSettings:
    state_dir: Path = Path(".modelfleet")


@dataclass(frozen=True)
class RegistrySettings:
    tracking_uri: str = "sqlite:///.modelfleet/mlflow.db"
    registry_uri: str = ""  # empty: same as tracking_uri
    artifact_root: Path = Path(".modelfleet/mlartifacts")
    cache_dir: Path = Path(".modelfleet/cache")
    timeout_s: float = 5.0
    page_size: int = 200


@dataclass(frozen=True)
class LedgerSettings:
    url: str = "sqlite:///.modelfleet/ledger.db"


@dataclass(frozen=True)
class FleetSettings:
    inventory: Path = Path(".modelfleet/sim/inventory.yml")
    agent_port: int = 8080
    probe_timeout_s: float = 2.0
    probe_concurrency: int = 32


@dataclass(frozen=True)
class SimSettings:
    nodes: str = "cpu=3,gpu=1,arm=2"
    address_prefix: str = "127.0.10"
    ssh_port: int = 2222


@dataclass(frozen=True)
class DeploySettings:
    waves: str = "1,25%,100%"
    max_fail_percentage: int = 20
    keep_releases: int = 3


@dataclass(frozen=True)
class InfraSettings:
    engine: str = "auto"  # auto | terraform | tofu | embedded | path of a terraform/tofu binary
    terraform_dir: Path = Path("terraform")  # holds envs/<name>/ and modules/
    cancel_grace_s: float = 120.0  # after a cancel, how long Terraform may finish what it has started


@dataclass(frozen=True)
class ArtifactsSettings:
    source: str = "push"  # push (ansible copies the bundle to each node) | s3 (nodes pull it by presigned URL)
    s3_bucket: str = ""
    s3_prefix: str = "bundles/"
    s3_endpoint_url: str = ""  # empty: AWS; MinIO or another S3 API server otherwise
    s3_region: str = ""
    presign_expires_s: int = 900  # how long a node's download link is valid


@dataclass(frozen=True)
class ConsoleSettings:
    refresh_s: float = 5.0
    read_only: bool = False
    slo_p50_ms: float = 20.0
    slo_p95_ms: float = 50.0
    slo_p99_ms: float = 100.0
    stale_after_s: float = 30.0
    # binding id -> keys, e.g. {"fleet": "f2", "filter": "slash,ctrl+f"}; ids are listed by the console's help
    keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GovernanceSettings:
    # gates.yaml, approvals.yaml and roles.yaml (docs/governance.md)
    policy_dir: Path = Path("policy")
    # the private key that says who you are; empty: $XDG_CONFIG_HOME/modelfleet/identity (~/.config/...)
    identity: str = ""


@dataclass(frozen=True)
class MonitorSettings:
    """Drift and latency monitoring (docs/monitoring.md); per-model and per-feature overrides go in
    ``policy_file`` or in ``[monitor.models.<model>]`` tables here (same keys, see core/monitor_policy.py)."""

    source: str = "agents"  # agents (scrape /stats directly) | prometheus (its HTTP API)
    prometheus_url: str = "http://127.0.0.1:9090"
    window: str = "15m"
    alpha: float = 0.005
    min_rows: int = 30
    dataset_drift_share: float = 0.5
    min_group_rows: int = 30
    min_rate_shift: float = 0.05
    min_requests: int = 50
    policy_file: Path = Path("policy/monitoring.yaml")
    webhook_url: str = ""
    action: str = "notify"
    cooldown: str = "1h"
    interval_s: float = 30.0
    models: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    source: str
    paths: PathsSettings = field(default_factory=PathsSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    infra: InfraSettings = field(default_factory=InfraSettings)
    artifacts: ArtifactsSettings = field(default_factory=ArtifactsSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    governance: GovernanceSettings = field(default_factory=GovernanceSettings)
    # "section.key" -> where its value came from: a MODELFLEET_* variable or the config file; keys left at their
    # embedded default are absent (see origin_of)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def origin_of(self, key: str) -> str:
        """Where ``section.key`` was set: ``MODELFLEET_...``, the config file's path, or ``embedded defaults``."""
        return self.origins.get(key, DEFAULTS_ORIGIN)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)

    @property
    def state_dir(self) -> Path:
        return self.paths.state_dir

    @property
    def effective_registry_uri(self) -> str:
        return self.registry.registry_uri or self.registry.tracking_uri


SECTIONS: dict[str, type] = {
    "paths": PathsSettings,
    "registry": RegistrySettings,
    "ledger": LedgerSettings,
    "fleet": FleetSettings,
    "sim": SimSettings,
    "deploy": DeploySettings,
    "infra": InfraSettings,
    "artifacts": ArtifactsSettings,
    "console": ConsoleSettings,
    "governance": GovernanceSettings,
    "monitor": MonitorSettings,
}

# Positive-number keys: a zero or negative value is refused.
_POSITIVE = {
    "registry.timeout_s", "registry.page_size", "fleet.agent_port", "fleet.probe_timeout_s",
    "fleet.probe_concurrency", "sim.ssh_port", "deploy.keep_releases", "console.refresh_s",
    "console.slo_p50_ms", "console.slo_p95_ms", "console.slo_p99_ms", "console.stale_after_s",
    "infra.cancel_grace_s", "artifacts.presign_expires_s",
    "monitor.alpha", "monitor.min_rows", "monitor.dataset_drift_share", "monitor.min_group_rows",
    "monitor.min_rate_shift", "monitor.min_requests", "monitor.interval_s",
}
_PORTS = {"fleet.agent_port", "sim.ssh_port"}


def find_config_file(start: Path | None = None) -> Path | None:
    """The file named by MODELFLEET_CONFIG, else the nearest modelfleet.toml from ``start`` upwards."""
    named = os.environ.get(ENV_PREFIX + "CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"MODELFLEET_CONFIG names {path}, which is not a file",
                hint="point MODELFLEET_CONFIG at an existing modelfleet.toml or unset it",
            )
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def _coerce(key: str, raw: Any, default: Any, origin: str) -> Any:
    """Turn ``raw`` into the type of ``default``; raise ConfigError naming key and origin."""

    def bad(allowed: str) -> ConfigError:
        return ConfigError(f"{origin}: {key} = {raw!r} is not valid; expected {allowed}", hint=_fix(key, origin))

    if key == "monitor.models":  # per-model tables, checked by core/monitor_policy.py
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise bad("tables [monitor.models.<model>] with the keys of a model policy")
        return dict(raw)
    if isinstance(default, dict):
        if isinstance(raw, str):  # environment form: "fleet=f2;filter=slash,ctrl+f"
            pairs = [p.split("=", 1) for p in raw.split(";") if p.strip()]
            if not all(len(p) == 2 for p in pairs):
                raise bad("a list of id=keys pairs separated by ';'")
            raw = {k.strip(): v.strip() for k, v in pairs}
        if not isinstance(raw, dict) or not all(isinstance(v, str) and v for v in raw.values()):
            raise bad("a table of binding id = \"keys\" strings")
        return dict(raw)
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        raise bad("true or false")
    if isinstance(default, int):
        if isinstance(raw, bool):
            raise bad("an integer")
        try:
            value: Any = int(raw) if not isinstance(raw, float) or raw.is_integer() else None
        except (TypeError, ValueError):
            value = None
        if value is None:
            raise bad("an integer")
    elif isinstance(default, float):
        if isinstance(raw, bool):
            raise bad("a number")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad("a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("a finite number")
    elif isinstance(default, Path):
        if not isinstance(raw, str) or not raw.strip():
            raise bad("a non-empty path string")
        value = Path(raw).expanduser()
    else:
        if not isinstance(raw, str):
            raise bad("a string")
        value = raw
    if key in _POSITIVE and value <= 0:
        raise bad("a number greater than 0")
    if key in _PORTS and not 1 <= value <= 65535:
        raise bad("a TCP port between 1 and 65535")
    return value


def _fix(key: str, origin: str, example: str = "") -> str:
    """The ``fix:`` line for a bad value of ``key`` that came from ``origin``."""
    where = f"fix or unset {origin}" if origin.startswith(ENV_PREFIX) else f"fix {key} in {origin}"
    return f"{where}{'; ' + example if example else ''}"


def _resolve_paths(section: Any, project_dir: Path) -> Any:
    changes: dict[str, Any] = {}
    for f in fields(section):
        value = getattr(section, f.name)
        if isinstance(value, Path) and not value.is_absolute():
            changes[f.name] = (project_dir / value).resolve()
        elif isinstance(value, str) and value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
            rel = value[len("sqlite:///"):]
            if rel and rel != ":memory:":
                changes[f.name] = "sqlite:///" + str((project_dir / rel).resolve())
    return replace(section, **changes) if changes else section


def load_settings(
    config_file: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build the effective settings. Raises ConfigError for any bad file or value."""
    env = dict(os.environ) if env is None else env
    path = config_file if config_file is not None else find_config_file(cwd)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}", hint=f"fix the syntax in {path}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    project_dir = path.parent if path is not None else (cwd or Path.cwd()).resolve()
    origin_file = str(path) if path is not None else DEFAULTS_ORIGIN
    origins: dict[str, str] = {}

    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        defaults = cls()
        given = data.pop(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{origin_file}: [{name}] must be a table", hint=f"write [{name}] as a TOML table")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(
                f"{origin_file}: unknown key {name}.{unknown[0]}; allowed: {', '.join(sorted(known))}",
                hint=f"remove or rename {name}.{unknown[0]}",
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"{name}.{f.name}"
            env_name = f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
            default = getattr(defaults, f.name)
            if env_name in env:
                values[f.name] = _coerce(key, env[env_name], default, env_name)
                origins[key] = env_name
            elif f.name in given:
                values[f.name] = _coerce(key, given[f.name], default, origin_file)
                origins[key] = origin_file
        sections[name] = _resolve_paths(cls(**values), project_dir)
    if data:
        extra = sorted(data)[0]
        raise ConfigError(
            f"{origin_file}: unknown section [{extra}]; allowed: {', '.join(SECTIONS)}",
            hint=f"remove or rename [{extra}]",
        )
    _check_cross_field(sections, origins)
    return Settings(project_dir=project_dir, source=origin_file, origins=origins, **sections)


def _check_cross_field(sections: dict[str, Any], origins: Mapping[str, str]) -> None:
    """Checks that span a key's value and a rule; each error names the variable or file that set the key."""

    def origin(*keys: str) -> str:
        return " and ".join(dict.fromkeys(origins.get(k, DEFAULTS_ORIGIN) for k in keys))

    console: ConsoleSettings = sections["console"]
    if not console.slo_p50_ms <= console.slo_p95_ms <= console.slo_p99_ms:
        slos = ("console.slo_p50_ms", "console.slo_p95_ms", "console.slo_p99_ms")
        set_by = [k for k in slos if k in origins] or list(slos)
        raise ConfigError(
            f"{origin(*set_by)}: console SLOs must satisfy slo_p50_ms <= slo_p95_ms <= slo_p99_ms "
            f"(they are {console.slo_p50_ms:g}, {console.slo_p95_ms:g}, {console.slo_p99_ms:g})",
            hint=_fix(set_by[0], origin(*set_by), "order the three latency objectives"),
        )
    deploy: DeploySettings = sections["deploy"]
    if not 0 <= deploy.max_fail_percentage <= 100:
        where = origin("deploy.max_fail_percentage")
        raise ConfigError(
            f"{where}: deploy.max_fail_percentage = {deploy.max_fail_percentage} must be between 0 and 100",
            hint=_fix("deploy.max_fail_percentage", where, "a percentage of hosts that may fail per batch"),
        )
    where = origin("deploy.waves")
    parse_waves(deploy.waves, origin=f"{where}: deploy.waves",
                hint=_fix("deploy.waves", where, 'waves look like "1,25%,100%"'))
    monitor: MonitorSettings = sections["monitor"]
    if monitor.source not in ("agents", "prometheus"):
        where = origin("monitor.source")
        raise ConfigError(f"{where}: monitor.source = {monitor.source!r} must be agents or prometheus",
                          hint=_fix("monitor.source", where, 'source = "agents" (scrape the agents) or "prometheus"'))
    for key in ("window", "cooldown"):
        parse_duration(getattr(monitor, key), origin=f"{origin('monitor.' + key)}: monitor.{key}")
    for key in ("alpha", "dataset_drift_share", "min_rate_shift"):
        if not 0 < getattr(monitor, key) < 1:
            where = origin(f"monitor.{key}")
            raise ConfigError(f"{where}: monitor.{key} = {getattr(monitor, key)} must be between 0 and 1",
                              hint=_fix(f"monitor.{key}", where, "a fraction such as 0.05"))
    from modelfleet.core.monitor_policy import check_models

    check_models(monitor.models, origin=f"{origin('monitor.models')}: [monitor.models]")
    prefix = sections["sim"].address_prefix.split(".")
    if len(prefix) != 3 or prefix[0] != "127" or not all(p.isdigit() and 0 <= int(p) <= 255 for p in prefix):
        where = origin("sim.address_prefix")
        raise ConfigError(
            f"{where}: sim.address_prefix = {sections['sim'].address_prefix!r} must be three octets in 127.0.0.0/8",
            hint=_fix("sim.address_prefix", where, 'use a loopback prefix such as "127.0.10"'),
        )


def parse_waves(text: str, *, origin: str = "--waves", hint: str = 'write waves like "1,25%,100%"') -> list[int | str]:
    """Parse ``"1,25%,100%"`` into Ansible's ``serial`` list ``[1, "25%", "100%"]``."""
    waves: list[int | str] = []
    for part in (p.strip() for p in text.split(",")):
        if part.endswith("%") and part[:-1].isdigit() and 0 < int(part[:-1]) <= 100:
            waves.append(part)
        elif part.isdigit() and int(part) > 0:
            waves.append(int(part))
        else:
            raise ConfigError(
                f"{origin}: wave {part!r} in {text!r} is not a positive count or a percentage 1-100%", hint=hint)
    if not waves:
        raise ConfigError(f"{origin}: no waves given", hint=hint)
    return waves


def config_variables() -> dict[str, str]:
    """Every ``MODELFLEET_<SECTION>_<KEY>`` variable -> its ``section.key``."""
    return {f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}": f"{name}.{f.name}"
            for name, cls in SECTIONS.items() for f in fields(cls)}


@dataclass(frozen=True)
class UnknownVariable:
    """A ``MODELFLEET_*`` variable that nothing reads, with the known name it most resembles (if any)."""

    name: str
    suggestion: str | None = None

    @property
    def message(self) -> str:
        guess = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{self.name} is not a modelfleet variable and is ignored{guess}"

    @property
    def hint(self) -> str:
        if self.suggestion:
            return f"rename it to {self.suggestion}, or unset {self.name}"
        return f"unset {self.name}; the variables are MODELFLEET_<SECTION>_<KEY> for the keys of modelfleet.toml"


def unknown_variables(env: Mapping[str, str] | None = None) -> list[UnknownVariable]:
    """``MODELFLEET_*`` names in ``env`` that are neither a configuration key nor one of :data:`OTHER_VARIABLES`.

    A warning, not an error (the CLI prints each on stderr and goes on), because the environment is ambient:
    it is inherited by every process (CI jobs, ansible-playbook and its callback, agents under a supervisor) and
    outlives checkouts, so it routinely holds a variable for another version of modelfleet or for a script of
    the operator's own. Refusing to run over such a leftover would stop read-only commands and scripts that
    never needed the value, whereas an unknown key in modelfleet.toml, the project's own file, is an error.
    A bad *value* of a known variable stays an error (exit 2): that is a setting the operator meant to make.
    """
    env = os.environ if env is None else env
    known = [*config_variables(), *OTHER_VARIABLES]
    out: list[UnknownVariable] = []
    for name in sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in known):
        # compare what follows the prefix: the shared "MODELFLEET_" would make any two names look alike
        close = difflib.get_close_matches(name[len(ENV_PREFIX):], [k[len(ENV_PREFIX):] for k in known], n=1,
                                          cutoff=0.75)
        out.append(UnknownVariable(name, ENV_PREFIX + close[0] if close else None))
    return out


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float, *, origin: str = "duration") -> float:
    """Seconds from ``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` or a bare number of seconds; ConfigError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip().lower()
        unit = _DURATION_UNITS.get(raw[-1:]) if raw else None
        number = raw[:-1] if unit is not None else raw
        try:
            value = float(number) * (unit or 1.0)
        except ValueError:
            value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{origin}: {text!r} is not a duration",
                          hint="write a positive number with s, m, h or d, e.g. 15m or 1h")
    return value
