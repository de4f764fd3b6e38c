"""Agent configuration: one TOML file per agent (rendered by the model_agent Ansible role).

::

    [server]
    address = "127.0.10.1"        # required in practice; the default is 127.0.0.1, never a wildcard
    port = 8080
    allow_wildcard = false        # must be true to bind 0.0.0.0 / :: on purpose
    max_batch_rows = 4096         # rows the agent coalesces from concurrent requests into one predict call

    [model]
    name = "credit-risk"          # used when a release has no manifest.json
    version = ""                  # idem (else MLmodel's run/model id, else "unknown")
    current = "/opt/modelfleet/models/credit-risk/current"
    group_column = "applicant_group"   # optional; the release profile's group column wins

    [auth]
    token_file = "/opt/modelfleet/etc/credit-risk.token"        # optional: /invocations needs this bearer token
    admin_token_file = "/opt/modelfleet/etc/admin.token"        # optional: without it admin actions are refused

    [limits]
    max_body_bytes = 8388608      # larger bodies get 413
    max_rows = 10000              # more rows get 413
    request_timeout_s = 10.0      # a body not received within this time gets 408

    [log]
    path = "/opt/modelfleet/log/agent-credit-risk.log"   # optional; stderr when absent
    level = "INFO"

    [stats]
    snapshot_interval_s = 60.0    # the agent keeps a snapshot of its counters this often ...
    snapshots = 60                # ... this many of them: GET /stats?window=SECONDS returns one as "base"

Token files hold the token on one line; they are re-read on every reload so tokens can be rotated with a SIGHUP.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.core.errors import ConfigError

WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass
class AgentConfig:
    address: str = "127.0.0.1"
    port: int = 8080
    allow_wildcard: bool = False
    max_batch_rows: int = 4096
    model_name: str | None = None
    model_version: str | None = None
    current: Path | None = None
    group_column: str | None = None
    token_file: Path | None = None
    admin_token_file: Path | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_rows: int = 10_000
    request_timeout_s: float = 10.0
    log_path: Path | None = None
    log_level: str = "INFO"
    snapshot_interval_s: float = 60.0
    snapshots: int = 60
    source: str = "<defaults>"

    def validate(self) -> None:
        where = self.source
        if self.address in WILDCARDS and not self.allow_wildcard:
            raise ConfigError(
                f"{where}: [server] address {self.address!r} listens on every interface",
                hint="set the node's own address, or allow_wildcard = true if that is really intended",
            )
        try:
            ipaddress.ip_address(self.address)
        except ValueError as exc:
            raise ConfigError(f"{where}: [server] address {self.address!r} is not an IP address") from exc
        if not 0 < self.port < 65536:
            raise ConfigError(f"{where}: [server] port {self.port} is out of range 1-65535")
        for key, value in (("max_body_bytes", self.max_body_bytes), ("max_rows", self.max_rows),
                           ("max_batch_rows", self.max_batch_rows)):
            if value <= 0:
                raise ConfigError(f"{where}: {key} must be positive (got {value})")
        if self.request_timeout_s <= 0:
            raise ConfigError(f"{where}: [limits] request_timeout_s must be positive")
        if self.snapshot_interval_s <= 0 or self.snapshots < 1:
            raise ConfigError(f"{where}: [stats] snapshot_interval_s must be positive and snapshots at least 1")


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}: {key} must be {getattr(kind, '__name__', kind)}, not a boolean")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: {key} must be {name} (got {type(value).__name__})")
    return value


def load_config(path: Path) -> AgentConfig:
    """Read and validate an agent TOML file; errors name the key and the file."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"agent config {path} does not exist", hint="pass --config FILE") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"agent config {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"agent config {path} is not valid TOML: {exc}") from exc
    known = {"server", "model", "auth", "limits", "log", "stats"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; known: {sorted(known)}")
    cfg = AgentConfig(source=str(path))
    base = path.parent
    server = data.get("server", {})
    model = data.get("model", {})
    auth = data.get("auth", {})
    limits = data.get("limits", {})
    log = data.get("log", {})
    stats = data.get("stats", {})

    def p(v: str | None) -> Path | None:
        return None if not v else (base / v if not Path(v).is_absolute() else Path(v))

    w = f"{path} [server]"
    if (v := _get(server, "address", str, w)) is not None:
        cfg.address = v
    if (v := _get(server, "port", int, w)) is not None:
        cfg.port = v
    if (v := _get(server, "allow_wildcard", bool, w)) is not None:
        cfg.allow_wildcard = v
    if (v := _get(server, "max_batch_rows", int, w)) is not None:
        cfg.max_batch_rows = v
    w = f"{path} [model]"
    cfg.model_name = _get(model, "name", str, w) or None
    cfg.model_version = _get(model, "version", (str, int), w) or None
    if cfg.model_version is not None:
        cfg.model_version = str(cfg.model_version)
    cfg.current = p(_get(model, "current", str, w))
    cfg.group_column = _get(model, "group_column", str, w) or None
    w = f"{path} [auth]"
    cfg.token_file = p(_get(auth, "token_file", str, w))
    cfg.admin_token_file = p(_get(auth, "admin_token_file", str, w))
    w = f"{path} [limits]"
    if (v := _get(limits, "max_body_bytes", int, w)) is not None:
        cfg.max_body_bytes = v
    if (v := _get(limits, "max_rows", int, w)) is not None:
        cfg.max_rows = v
    if (v := _get(limits, "request_timeout_s", (int, float), w)) is not None:
        cfg.request_timeout_s = float(v)
    w = f"{path} [log]"
    cfg.log_path = p(_get(log, "path", str, w))
    cfg.log_level = (_get(log, "level", str, w) or "INFO").upper()
    w = f"{path} [stats]"
    if (v := _get(stats, "snapshot_interval_s", (int, float), w)) is not None:
        cfg.snapshot_interval_s = float(v)
    if (v := _get(stats, "snapshots", int, w)) is not None:
        cfg.snapshots = v
    cfg.validate()
    return cfg


def read_token(path: Path | None, what: str) -> str | None:
    """The token in ``path`` (first line, stripped), None when no file is configured."""
    if path is None:
        return None
    try:
        token = path.read_text().strip().splitlines()[0].strip() if path.read_text().strip() else ""
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}",
                          hint="check the file exists and the agent user may read it") from exc
    if len(token) < 8:
        raise ConfigError(f"{what} {path} holds no usable token (need at least 8 characters)")
    return token
