"""ssh processes to a node, built by :mod:`modelfleet.core.node_access`: the agent's log as a stream of lines
(``modelfleet logs``, the console's ``l``) and the command line of an interactive shell (the console's ``s``).

A :class:`LogStream` is one ``ssh NODE 'tail -n N [-F] <agent log>'``: iterate it for lines as they arrive,
:meth:`LogStream.close` to stop (the remote ``tail`` ends with the ssh channel), :meth:`LogStream.error` for what
went wrong once it ended (the node unreachable, no log there). Nothing is opened on the node but an ssh session.
"""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from modelfleet.core.errors import FleetError, ModelfleetError, NodeUnreachable
from modelfleet.core.node_access import DEFAULT_LINES, NO_LOG_EXIT, SshConfig, SshTarget, agent_log_script, shell_script

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.fleet import Node

SSH_UNREACHABLE = 255  # ssh's own exit code for a connection that failed


def ssh_config(settings: Settings | None) -> SshConfig:
    """ansible.cfg of the playbooks this project runs (the runner's ``ANSIBLE_CONFIG``)."""
    from modelfleet.runners.ansible import find_ansible_root

    try:
        root: Path | None = find_ansible_root(settings)
    except ModelfleetError:
        root = None
    return SshConfig.from_ansible_cfg(root / "ansible.cfg" if root else None)


def log_command(node: Node, config: SshConfig, *, model: str | None, lines: int = DEFAULT_LINES,
                follow: bool = False) -> list[str]:
    return SshTarget.of(node).command(config, agent_log_script(node, model=model, lines=lines, follow=follow))


def shell_command(node: Node, config: SshConfig) -> list[str]:
    return SshTarget.of(node).command(config, shell_script(node), interactive=True)


class LogStream:
    """A running ``ssh ... tail`` of one node's agent log(s)."""

    STDERR_LINES = 20

    def __init__(self, node: str, cmd: list[str]) -> None:
        self.node = node
        self.cmd = cmd
        self.closed = False
        self._stderr: deque[str] = deque(maxlen=self.STDERR_LINES)
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
                                         start_new_session=True)
        except FileNotFoundError:
            raise FleetError("ssh is not installed on this machine",
                             hint="install the OpenSSH client (apt-get install openssh-client)") from None
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True, name=f"ssh-stderr-{node}")
        self._err_reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip():
                self._stderr.append(line.rstrip("\n"))

    def __iter__(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            yield line.rstrip("\n")

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout)
        self._err_reader.join(5)
        return rc

    def close(self) -> None:
        """Stop following: ends ssh (and with its channel the remote tail)."""
        self.closed = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def error(self) -> ModelfleetError | None:
        """Why the stream ended, once it has: None when it ended well (or was closed here)."""
        rc = self.proc.poll()
        if rc is None or rc == 0 or self.closed:
            return None
        self._err_reader.join(5)
        said = self._stderr[-1] if self._stderr else f"ssh exited {rc}"
        if rc == NO_LOG_EXIT:
            return FleetError(f"{self.node}: {said}", hint="name a model that has a log there (--model), or deploy "
                                                          "one first")
        if rc == SSH_UNREACHABLE:
            return NodeUnreachable(f"cannot reach {self.node} over ssh: {said}",
                                   hint=f"check that {self.node} is up and its inventory entry (ansible_host, "
                                        "ansible_port, ansible_user, key) is right; Ansible reaches it the same way")
        return FleetError(f"{self.node}: the log command ended with exit code {rc}: {said}",
                          hint="run the ssh command by hand to see more: " + " ".join(self.cmd[:3]) + " …")


def open_agent_log(settings: Settings, node: Node, *, model: str | None, lines: int = DEFAULT_LINES,
                   follow: bool = False) -> LogStream:
    """Start streaming ``node``'s agent log (``model``'s, or every model's)."""
    return LogStream(node.name, log_command(node, ssh_config(settings), model=model, lines=lines, follow=follow))
