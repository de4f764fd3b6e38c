"""Reaching a node the way Ansible does: ``ssh`` with the inventory's connection variables and ansible.cfg's
``[ssh_connection]`` settings, so ``modelfleet logs`` and the console's ``l`` and ``s`` open nothing new on a node
(its sshd, its user, its key) and share Ansible's control sockets (``control_path``).

What goes into the command, in Ansible's own order (``ansible.plugins.connection.ssh``): ansible.cfg's
``ssh_args``, the port, the private key, the user, ``ConnectTimeout``, the inventory's ``ansible_ssh_common_args``
and ``ansible_ssh_extra_args``, then ``ControlPath``. ``ANSIBLE_SSH_ARGS``, ``ANSIBLE_SSH_CONTROL_PATH``,
``ANSIBLE_SSH_CONTROL_PATH_DIR`` and ``ANSIBLE_TIMEOUT`` override ansible.cfg as they do for Ansible.

The agent's log on a node is ``<modelfleet_root>/log/agent-<model>.log`` (``[log] path`` in the agent config the
``model_agent`` role writes).

Pure apart from reading ansible.cfg: commands are built here and run by :mod:`modelfleet.runners.node_ssh` (a
stream) or by the caller (a shell).
"""

from __future__ import annotations

import configparser
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelfleet.core.errors import FleetError, UsageError
from modelfleet.core.fleet import Node

DEFAULT_SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=60s"  # Ansible's default ssh_args
DEFAULT_CONTROL_PATH_DIR = "~/.ansible/cp"
DEFAULT_TIMEOUT_S = 10
DEFAULT_LINES = 100
NO_LOG_EXIT = 3  # the remote script's exit code when the node has no agent log to show


@dataclass(frozen=True)
class SshConfig:
    """ansible.cfg's ``[ssh_connection]`` (and ``[defaults] timeout``) as Ansible would use them."""

    ssh_args: tuple[str, ...] = tuple(shlex.split(DEFAULT_SSH_ARGS))
    control_path: str | None = None  # expanded; None: no ControlPath option (ssh's own default)
    timeout_s: int = DEFAULT_TIMEOUT_S

    @classmethod
    def from_ansible_cfg(cls, path: Path | None, env: Mapping[str, str] | None = None) -> SshConfig:
        env = os.environ if env is None else env
        cfg = configparser.RawConfigParser(inline_comment_prefixes=None)
        if path is not None and Path(path).is_file():
            try:
                cfg.read(path, encoding="utf-8")
            except configparser.Error as exc:
                raise FleetError(f"{path}: unreadable ({exc.__class__.__name__})",
                                 hint="fix ansible.cfg (Ansible cannot read it either)") from exc

        def get(section: str, key: str, var: str, default: str | None) -> str | None:
            if env.get(var):
                return env[var]
            return cfg.get(section, key) if cfg.has_option(section, key) else default

        args = get("ssh_connection", "ssh_args", "ANSIBLE_SSH_ARGS", DEFAULT_SSH_ARGS) or ""
        directory = os.path.expanduser(get("ssh_connection", "control_path_dir", "ANSIBLE_SSH_CONTROL_PATH_DIR",
                                           DEFAULT_CONTROL_PATH_DIR) or DEFAULT_CONTROL_PATH_DIR)
        control = get("ssh_connection", "control_path", "ANSIBLE_SSH_CONTROL_PATH", None)
        if control is not None:
            control = os.path.expanduser(control.replace("%(directory)s", directory).replace("%%", "%"))
        try:
            timeout = int(get("defaults", "timeout", "ANSIBLE_TIMEOUT", str(DEFAULT_TIMEOUT_S)) or DEFAULT_TIMEOUT_S)
        except ValueError:
            timeout = DEFAULT_TIMEOUT_S
        return cls(tuple(shlex.split(args)), control, timeout)


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one node: host, port, user, key and extra args from its inventory variables."""

    node: str
    host: str
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    extra_args: tuple[str, ...] = ()

    @classmethod
    def of(cls, node: Node) -> SshTarget:
        v = node.vars

        def var(*names: str) -> str | None:
            for name in names:
                value = v.get(name)
                if value is None or value == "":
                    continue
                text = str(value)
                if "{{" in text or "{%" in text:
                    raise FleetError(f"node {node.name}: {name} is a Jinja template ({text!r})",
                                     hint=f"give {node.name} a literal {name} in the inventory; only Ansible can "
                                          "evaluate templates")
                return text
            return None

        connection = var("ansible_connection") or "ssh"
        if connection not in ("ssh", "smart", "paramiko", "paramiko_ssh"):
            raise FleetError(f"node {node.name} is reached with ansible_connection={connection}, not ssh",
                             hint="logs and shells go through ssh; use the node's own tools for this connection")
        port_text = var("ansible_port", "ansible_ssh_port")
        try:
            port = int(port_text) if port_text is not None else None
        except ValueError:
            raise FleetError(f"node {node.name}: ansible_port = {port_text!r} is not a port number",
                             hint="set ansible_port to a number between 1 and 65535") from None
        extra: list[str] = []
        for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            text = var(name)
            if text:
                extra += shlex.split(text)
        key = var("ansible_ssh_private_key_file", "ansible_private_key_file")
        return cls(node=node.name, host=var("ansible_host", "ansible_ssh_host") or node.name, port=port,
                   user=var("ansible_user", "ansible_ssh_user", "ansible_ssh_user"),
                   key_file=os.path.expanduser(key) if key else None, extra_args=tuple(extra))

    def command(self, config: SshConfig, remote: str | None = None, *, interactive: bool = False) -> list[str]:
        """``ssh ... HOST [REMOTE]``. ``interactive``: a terminal and prompts allowed (a shell); otherwise no
        terminal and no prompt (BatchMode: a stream fails at once instead of waiting for a password)."""
        cmd = ["ssh", *config.ssh_args]
        if self.port is not None:
            cmd += ["-o", f"Port={self.port}"]
        if self.key_file:
            cmd += ["-o", f"IdentityFile={self.key_file}"]
        if self.user:
            cmd += ["-o", f"User={self.user}"]
        cmd += ["-o", f"ConnectTimeout={config.timeout_s}", *self.extra_args]
        if config.control_path:
            cmd += ["-o", f"ControlPath={config.control_path}"]
        cmd += ["-t"] if interactive else ["-T", "-o", "BatchMode=yes"]
        cmd.append(self.host)
        if remote is not None:
            cmd.append(remote)
        return cmd


def agent_log_path(node: Node, model: str) -> str:
    """The agent's log file of ``model`` on ``node`` (a path on the node)."""
    return f"{node.root.rstrip('/')}/log/agent-{model}.log"


def agent_log_script(node: Node, *, model: str | None, lines: int = DEFAULT_LINES, follow: bool = False) -> str:
    """The remote shell line that prints (``follow``: and follows) the agent log(s) on ``node``: one model's, or
    every model's (``tail`` heads each file with its name). Exits ``NO_LOG_EXIT`` with a message on stderr when
    there is nothing to show, naming the models that do have a log there."""
    if lines < 0:
        raise UsageError(f"--lines {lines} must be 0 or more")
    if model is not None and (not model or "/" in model or model.startswith(".")):
        raise UsageError(f"{model!r} is not a model name", hint="give a registered model's name, e.g. credit-risk")
    log_dir = f"{node.root.rstrip('/')}/log"
    tail = f"tail -n {lines}" + (" -F" if follow else "")
    if model is not None:
        return (f"m={shlex.quote(model)}; f={shlex.quote(agent_log_path(node, model))}; d={shlex.quote(log_dir)}; "
                f"if [ ! -r \"$f\" ]; then {_LOGGED_MODELS}; echo \"no agent log for $m at $f; models with a log "
                f"there: ${{models:-none}}\" >&2; exit {NO_LOG_EXIT}; fi; exec {tail} \"$f\"")
    return (f"d={shlex.quote(log_dir)}; cd \"$d\" 2>/dev/null && set -- $(ls agent-*.log 2>/dev/null | "
            f"grep -v '[.]out[.]log$'); if [ $# -eq 0 ]; then echo \"no agent log under $d: no model deployed "
            f"there yet\" >&2; exit {NO_LOG_EXIT}; fi; exec {tail} \"$@\"")


# the models with an agent log in $d, comma-separated, in $models
_LOGGED_MODELS = ("models=$(cd \"$d\" 2>/dev/null && ls agent-*.log 2>/dev/null | grep -v '[.]out[.]log$' "
                  "| sed 's/^agent-//; s/[.]log$//' | tr '\\n' ' ' | sed 's/ *$//; s/ /, /g')")


def shell_script(node: Node) -> str:
    """The remote line of an interactive shell: the login shell, started in the node's modelfleet root when it
    exists (where releases, logs and config live)."""
    root = shlex.quote(node.root)
    return f"cd {root} 2>/dev/null; exec \"${{SHELL:-/bin/sh}}\" -l"
