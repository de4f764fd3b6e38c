# modelfleet: one model's files and agent on an edge node (standard library only; runs on the node).
"""The node side of a model release: links, releases, the deploy lock, the journal and the agent's service.

Layout under the node root (``modelfleet_root``)::

    models/<model>/releases/<name>/                 unpacked, verified releases: <version>-<digest12>, or
                                                    <version>-<digest12>-t<thresholds8> with per-group thresholds
    etc/governance/trust.json, environment          what deploys are verified against (provisioning installs them)
    models/<model>/current, previous                symlinks (relative: releases/<name>)
    run/<model>.deploy.lock                         JSON of the run holding the model (O_EXCL)
    log/deployments.jsonl                           one JSON line per change of the model on this node

Every link change is an atomic rename of a new symlink over the old one: a reader sees the old target or the
new one, never a missing link.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any, Callable, Sequence

# The controller's rule (tui/modelfleet/core/release_names.py; tests/unit/test_release_names.py keeps them equal).
RELEASE_NAME = re.compile(r"^(?P<version>.+?)-(?P<digest12>[0-9a-f]{12})(?:-t(?P<thresholds8>[0-9a-f]{8}))?$")


def split_release(name: str) -> tuple[str, str]:
    """``"7-0123456789ab"`` or ``"7-0123456789ab-t89abcdef"`` -> ``("7", "0123456789ab")``; a name without a
    digest gives ``(name, "")``."""
    m = RELEASE_NAME.match(os.path.basename(name))
    return (m.group("version"), m.group("digest12")) if m else (os.path.basename(name), "")


class NodeModel:
    """One model's folders on a node."""

    def __init__(self, root: str, model: str) -> None:
        self.root = root
        self.model = model
        self.model_dir = os.path.join(root, "models", model)
        self.releases_dir = os.path.join(self.model_dir, "releases")
        self.lock_path = os.path.join(root, "run", model + ".deploy.lock")
        self.journal_path = os.path.join(root, "log", "deployments.jsonl")

    # -- links and releases ---------------------------------------------------------------------------------
    def link(self, name: str) -> str:
        """Target of ``current`` or ``previous`` as written (``releases/<name>``), or ``""``."""
        try:
            return os.readlink(os.path.join(self.model_dir, name))
        except OSError:
            return ""

    def release_path(self, name: str) -> str:
        return os.path.join(self.releases_dir, name)

    def has_release(self, name: str) -> bool:
        return bool(name) and os.path.isdir(self.release_path(name))

    def releases(self) -> list[str]:
        """Release folder names, newest first (by modification time)."""
        try:
            names = [n for n in os.listdir(self.releases_dir) if os.path.isdir(self.release_path(n))]
        except OSError:
            return []
        return sorted(names, key=lambda n: os.stat(self.release_path(n)).st_mtime, reverse=True)

    def set_link(self, name: str, target: str) -> None:
        """Point ``name`` at ``target`` by renaming a new symlink over it (atomic)."""
        os.makedirs(self.model_dir, exist_ok=True)
        path = os.path.join(self.model_dir, name)
        tmp = os.path.join(self.model_dir, ".%s.%d.tmp" % (name, os.getpid()))
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)

    def remove_link(self, name: str) -> None:
        path = os.path.join(self.model_dir, name)
        if os.path.islink(path):
            os.unlink(path)

    def restore_link(self, name: str, target: str) -> None:
        """Put ``name`` back to ``target``; an empty target means there was no link."""
        if target:
            self.set_link(name, target)
        else:
            self.remove_link(name)

    def drop_release(self, name: str) -> None:
        path = self.release_path(name)
        if name and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)

    def prune(self, keep: int, protect: Sequence[str]) -> list[str]:
        """Remove all but the newest ``keep`` releases; ``protect`` (names) always stay. Returns what went."""
        protected = {os.path.basename(p) for p in protect if p}
        removed = []
        for name in self.releases()[max(keep, 0):]:
            if name not in protected:
                self.drop_release(name)
                removed.append(name)
        return removed

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    # -- the per-model deploy lock --------------------------------------------------------------------------
    def lock_holder(self) -> dict[str, Any] | None:
        """The lock's holder, ``None`` when there is no lock."""
        try:
            with open(self.lock_path, encoding="utf-8") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(raw)
        except ValueError:
            holder = None
        return holder if isinstance(holder, dict) else {"run_id": "?", "raw": raw.strip()[:200]}

    def take_lock(self, holder: dict[str, Any]) -> dict[str, Any] | None:
        """Create the lock (O_EXCL) for ``holder``. ``None`` when taken, else whoever holds it."""
        os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return self.lock_holder() or {"run_id": "?"}
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(holder, sort_keys=True) + "\n")
        return None

    def release_lock(self, run_id: str) -> bool:
        """Remove the lock when ``run_id`` holds it (this run's own, or one being broken). True when removed."""
        holder = self.lock_holder()
        if holder is None or holder.get("run_id") != run_id:
            return False
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            return False
        return True


    # -- journal --------------------------------------------------------------------------------------------
    def journal(self, record: dict[str, Any]) -> None:
        """Append one line to log/deployments.jsonl (created 0640)."""
        os.makedirs(os.path.dirname(self.journal_path), exist_ok=True)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")


    def journal_tail(self, limit: int, max_bytes: int = 1 << 20) -> list[dict[str, Any]]:
        """The model's latest ``limit`` journal lines, oldest first (read from the file's last ``max_bytes``)."""
        try:
            with open(self.journal_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                data = fh.read()
        except OSError:
            return []
        lines = data.decode("utf-8", "replace").splitlines()
        if size > max_bytes:
            lines = lines[1:]  # the first line read may be cut
        out: list[dict[str, Any]] = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("model") == self.model:
                out.append(record)
        return out[-limit:]


def describe_holder(holder: dict[str, Any]) -> str:
    return "run %s (%s of version %s from controller %s, pid %s, since %s)" % (
        holder.get("run_id", "?"), holder.get("action", "deploy"), holder.get("version", "?"),
        holder.get("controller", "?"), holder.get("pid", "?"), holder.get("started", "?"))


Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]


class AgentService:
    """The model's agent under supervisord (the simulated fleet) or systemd (real nodes)."""

    def __init__(self, run: Runner, manager: str, program: str, supervisorctl: str = "supervisorctl",
                 supervisor_conf: str = "", settle_s: float = 15.0) -> None:
        self.run = run
        self.manager = manager
        self.program = program
        self.supervisorctl = supervisorctl
        self.supervisor_conf = supervisor_conf
        self.settle_s = settle_s  # how long a program supervisord is already starting may take to be up

    def _ctl(self, *args: str) -> tuple[int, str, str]:
        cmd = [self.supervisorctl] + (["-c", self.supervisor_conf] if self.supervisor_conf else []) + list(args)
        return self.run(cmd)

    def state(self) -> str:
        """``running``, ``starting`` (supervisord is bringing it up: STARTING, or BACKOFF between tries),
        ``stopped`` or ``absent`` (no program/unit installed for the model)."""
        if self.manager == "supervisord":
            _, out, err = self._ctl("status", self.program)
            text = out + err
            if "no such process" in text.lower() or "no such group" in text.lower():
                return "absent"
            if "RUNNING" in text:
                return "running"
            return "starting" if "STARTING" in text or "BACKOFF" in text else "stopped"
        _, out, _ = self.run(["systemctl", "show", "--property=LoadState,ActiveState", self.program + ".service"])
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if props.get("LoadState") in ("not-found", ""):
            return "absent"
        return "running" if props.get("ActiveState") in ("active", "reloading") else "stopped"

    def _checked(self, what: str, result: tuple[int, str, str]) -> None:
        rc, out, err = result
        if rc != 0 or "ERROR" in out:
            raise ServiceError("%s %s failed (rc %s): %s" % (what, self.program, rc, (out + err).strip()[:300]))

    def reload_or_start(self) -> str:
        """SIGHUP a running agent (it loads what ``current`` points at); start a stopped one. The action taken."""
        state = self.state()
        if state == "absent":
            raise ServiceError("no %s for %s on this node; run the model_agent role (deploy installs it)"
                               % ("supervisord program" if self.manager == "supervisord" else "systemd unit",
                                  self.program))
        if self.manager == "supervisord":
            if state == "running":
                self._checked("signal HUP", self._ctl("signal", "HUP", self.program))
                return "reloaded"
            if state == "stopped":
                started = self._ctl("start", self.program)
                if "already started" not in started[1] + started[2]:
                    self._checked("start", started)
                    return "started"
            # supervisord is already bringing it up (after `update`, a crash, or a start that raced ours; `start`
            # then answers "ERROR (already started)", with rc 0): it may have read `current` before the switch, so
            # once it runs it gets the HUP that makes it load what `current` points at now
            return self._reload_when_up()
        verb = "reload" if state == "running" else "start"
        self._checked("systemctl " + verb, self.run(["systemctl", verb, self.program + ".service"]))
        return "reloaded" if verb == "reload" else "started"

    def _reload_when_up(self) -> str:
        deadline = time.monotonic() + self.settle_s
        while self.state() != "running":
            if time.monotonic() > deadline:
                return "starting"  # still not up (BACKOFF): the health gate says what the agent does
            time.sleep(0.2)
        self._checked("signal HUP", self._ctl("signal", "HUP", self.program))
        return "reloaded"

    def stop(self) -> None:
        """Stop the agent (whatever it is doing: running, starting, backing off)."""
        if self.state() != "absent":
            if self.manager == "supervisord":
                self._ctl("stop", self.program)
            else:
                self.run(["systemctl", "stop", self.program + ".service"])


class ServiceError(Exception):
    """The agent could not be reloaded, started or stopped."""
