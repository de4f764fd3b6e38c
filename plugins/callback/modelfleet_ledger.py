# modelfleet: record playbook runs in the deployment ledger (enabled in the repository's ansible.cfg).
"""Ansible callback plugin ``modelfleet_ledger``.

Records, in the modelfleet ledger, the start of a run (unless the modelfleet CLI or console already did), one
outcome event per node (``node_<kind>``: ok, changed, failed, unreachable, rolled_back, skipped) and the end
of the run, so that a plain ``ansible-playbook playbooks/deploy.yml -e ...`` is logged like a CLI run.

Node events are written when a node is done: at the end of its batch when the rollout play is the playbook's
last play, as soon as the node failed, and at the end of the run for the rest. A ledger that cannot be
reached never fails the playbook: the plugin warns loudly, stops writing, and lists what it could not record.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: modelfleet_ledger
type: notification
short_description: record runs and per-node outcomes in the modelfleet deployment ledger
description:
  - Appends run_start, one node_<kind> event per node and run_end to the modelfleet ledger.
  - Never fails a playbook; when the ledger cannot be written it warns and lists the unrecorded events.
requirements:
  - the modelfleet package in the controller's Python environment
options:
  ledger_url:
    description: Ledger database URL; default the ledger.url of the nearest modelfleet.toml (or built-in default).
    env:
      - name: MODELFLEET_LEDGER_URL
    ini:
      - section: modelfleet_ledger
        key: ledger_url
  run_id:
    description: Run id of the events (the extra var modelfleet_run_id wins); generated when unset.
    env:
      - name: MODELFLEET_RUN_ID
  actor:
    description: Who runs the playbook; default the login name.
    env:
      - name: MODELFLEET_ACTOR
  kind:
    description: Kind of run (deploy, rollback, provision, ...); default the playbook's file name.
    env:
      - name: MODELFLEET_RUN_KIND
  run_owner:
    description: C(caller) when the modelfleet CLI/console writes run_start/run_end itself, else C(callback).
    env:
      - name: MODELFLEET_LEDGER_RUN_OWNER
    default: callback
"""

BAD = ("failed", "unreachable", "rolled_back")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "modelfleet_ledger"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ledger: Any = None
        self._disabled_reason: str | None = None
        self._unrecorded: list[str] = []
        self._run_id: str | None = None
        self._kind = "playbook"
        self._playbook = ""
        self._plays: list[str] = []
        self._play_uuid: str | None = None
        self._batch = 0
        self._batch_hosts: list[str] = []
        self._hosts: dict[str, dict[str, Any]] = {}
        self._flushed: dict[str, str] = {}  # host -> outcome recorded
        self._release: dict[str, Any] = {}
        self._started = False
        self._own_run = False
        self._check = False
        self._limit: str | None = None
        self._inventory: list[str] = []
        # Started by modelfleet (CLI or console)? Then end this playbook if that controller dies.
        with contextlib.suppress(Exception):
            from modelfleet.runners.controller_watch import start_controller_watch

            start_controller_watch()

    # -- options and the ledger ------------------------------------------------------------------------------

    def _opt(self, name: str) -> Any:
        try:
            return self.get_option(name)
        except (KeyError, AttributeError):
            return os.environ.get(f"MODELFLEET_{name.upper()}")

    def _open_ledger(self) -> Any:
        if self._ledger is not None or self._disabled_reason:
            return self._ledger
        try:
            from modelfleet.core.ledger import Ledger

            url = self._opt("ledger_url")
            if not url:
                from modelfleet.core.config import find_config_file, load_settings

                start = os.path.dirname(os.path.abspath(self._playbook)) if self._playbook else None
                config = find_config_file() or (find_config_file(_path(start)) if start else None)
                url = load_settings(config_file=config).ledger.url
            ledger = Ledger(url)
            ledger.ensure_schema()
            self._ledger = ledger
        except Exception as exc:
            self._disable(f"cannot open the ledger: {exc}")
        return self._ledger

    def _disable(self, reason: str) -> None:
        self._disabled_reason = reason
        self._display.warning(
            f"modelfleet_ledger: {reason}. This run is NOT being recorded in the deployment ledger; "
            "fix ledger.url (MODELFLEET_LEDGER_URL) and record it again."
        )

    def _append(self, action: str, **fields: Any) -> None:
        summary = f"{action} node={fields.get('node') or '-'} outcome={fields.get('outcome') or '-'}"
        ledger = self._open_ledger()
        if ledger is None:
            self._unrecorded.append(summary)
            return
        version = fields.pop("version", None) or self._release.get("version")
        try:
            ledger.append(action, actor=self._actor(), model=self._release.get("model"), version=version,
                          digest=None if fields.get("outcome") == "rolled_back" else self._release.get("digest"),
                          target=self._target(), run_id=self._run_id, **fields)
        except Exception as exc:
            self._unrecorded.append(summary)
            self._disable(f"cannot write to the ledger: {exc}")

    def _actor(self) -> str:
        actor = self._opt("actor")
        if actor:
            return str(actor)
        try:
            import getpass

            return getpass.getuser()
        except Exception:
            return "unknown"

    def _target(self) -> str:
        return self._limit or "all"

    # -- playbook events -------------------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = str(getattr(playbook, "_file_name", "") or "")
        base = os.path.basename(self._playbook)
        self._kind = str(self._opt("kind") or os.path.splitext(base)[0] or "playbook")
        try:
            self._plays = [str(p._uuid).split("_")[0] for p in playbook.get_plays()]
        except Exception:
            self._plays = []
        try:
            from ansible import context

            args = context.CLIARGS
            self._check = bool(args.get("check"))
            self._limit = args.get("subset") or None
            self._inventory = [str(i) for i in (args.get("inventory") or ())]
        except Exception:
            pass

    def v2_playbook_on_play_start(self, play: Any) -> None:
        uuid = str(play._uuid).split("_")[0]
        if not self._started:
            self._started = True
            self._begin(play)
        same_play = uuid == self._play_uuid
        # The previous batch is over: its failed nodes are final, and so is every node of it when the play
        # is the playbook's last (serial batches of the rollout play).
        last = bool(self._plays) and self._play_uuid == self._plays[-1]
        self._flush(self._batch_hosts if (same_play and last) else [], bad_only=not (same_play and last))
        self._batch = self._batch + 1 if same_play else 1
        self._play_uuid = uuid
        self._batch_hosts = []

    def _begin(self, play: Any) -> None:
        extra: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            extra = dict(play.get_variable_manager().extra_vars)
        self._release = {
            "model": _str(extra.get("model_release_model")),
            "version": _str(extra.get("model_release_version")),
            "digest": _str(extra.get("model_release_digest")),
        }
        self._run_id = _str(extra.get("modelfleet_run_id")) or _str(self._opt("run_id")) or _new_run_id()
        owner = str(self._opt("run_owner") or "callback")
        if owner == "caller":
            return
        ledger = self._open_ledger()
        if ledger is not None:
            try:
                if ledger.events(run_id=self._run_id, action="run_start", limit=1):
                    return
            except Exception as exc:
                self._disable(f"cannot read the ledger: {exc}")
        self._own_run = True
        import socket

        details = {"kind": self._kind, "playbook": os.path.basename(self._playbook), "source": "ansible-playbook",
                   "check": self._check, "limit": self._limit, "inventory": self._inventory,
                   "controller": socket.gethostname(), "pid": os.getpid()}
        self._append("run_start", outcome="started", details=details)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        for host, entry in self._hosts.items():
            failures = int(getattr(stats, "failures", {}).get(host, 0))
            dark = int(getattr(stats, "dark", {}).get(host, 0))
            entry["rescued"] = int(getattr(stats, "rescued", {}).get(host, 0))
            entry["failing"] = bool(failures or dark)
            entry["failed"] = max(entry["failed"], failures)
        custom = getattr(stats, "custom", {}) or {}
        rolled = (custom.get("_run") or {}).get("modelfleet_rolled_back") if isinstance(custom, dict) else None
        for host in rolled if isinstance(rolled, list) else []:
            if host in self._hosts:
                self._hosts[host]["rolled_back"] = True
        self._flush(list(self._hosts), bad_only=False)
        if self._own_run:
            counts: dict[str, int] = {}
            for entry in self._hosts.values():
                counts[_outcome(entry)] = counts.get(_outcome(entry), 0) + 1
            outcome = "failed" if any(counts.get(b) for b in BAD) else "ok"
            self._append("run_end", outcome=outcome,
                         details={"kind": self._kind, "hosts": len(self._hosts), "outcomes": counts,
                                  "check": self._check})
        if self._unrecorded:
            self._display.warning(
                "modelfleet_ledger: these events were NOT recorded: " + "; ".join(self._unrecorded[:50])
                + (f" (+{len(self._unrecorded) - 50} more)" if len(self._unrecorded) > 50 else "")
            )

    # -- host results ----------------------------------------------------------------------------------------

    def _entry(self, result: Any) -> dict[str, Any] | None:
        host = result._host
        name = host.get_name()
        if name == "localhost" or getattr(host, "implicit", False):
            return None
        if name not in self._batch_hosts:
            self._batch_hosts.append(name)
        entry = self._hosts.get(name)
        if entry is None:
            hv: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                hv = dict(host.get_vars())
            entry = {"batch": self._batch, "ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0,
                     "rescued": 0, "rolled_back": False, "failing": False, "message": None, "task": None,
                     "agent_port": None, "facts": {}, "ansible_host": _str(hv.get("ansible_host") or name),
                     "address": _str(hv.get("modelfleet_agent_address") or hv.get("ansible_host") or name)}
            self._hosts[name] = entry
        with contextlib.suppress(Exception):
            entry["task"] = result._task.get_name()
        return entry

    def _note(self, result: Any, key: str) -> None:
        try:
            entry = self._entry(result)
            if entry is None:
                return
            entry[key] += 1
            # a failure followed by more results was rescued; the host is failed when its latest result failed
            entry["failing"] = key in ("failed", "unreachable") or entry["unreachable"] > 0
            res = result._result if isinstance(result._result, dict) else {}
            from modelfleet.runners.events import agent_port_of, delegated_address, delegated_host, is_rollback_result

            if key in ("ok", "changed", "failed") and is_rollback_result(entry["task"], res, bool(res.get("changed"))):
                address = delegated_address(res)
                other = delegated_host(res) or next(
                    (h for h, e in self._hosts.items() if address and e["ansible_host"] == address), None)
                if other and other != result._host.get_name():
                    if other in self._hosts:
                        self._hosts[other]["rolled_back"] = True
                elif other or not address:  # not delegated, or delegated to itself
                    entry["rolled_back"] = True
            facts = res.get("ansible_facts")
            if isinstance(facts, dict):
                for key in ("model_release_old_link", "model_release_version", "model_release_outcome"):
                    if isinstance(facts.get(key), (str, int)) and (key in ("model_release_version",
                                                                           "model_release_outcome")
                                                                   or result._task.action.endswith("set_fact")):
                        entry["facts"][key] = str(facts[key])
            port = agent_port_of(res)
            if port is not None:
                entry["agent_port"] = port
            if key in ("failed", "unreachable") and not entry["message"]:
                msg = res.get("msg") or res.get("stderr") or ""
                entry["message"] = str(msg).strip().splitlines()[0][:500] if str(msg).strip() else None
        except Exception as exc:  # never break the playbook
            self._display.warning(f"modelfleet_ledger: could not note a result: {exc}")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._note(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._note(result, "ok" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._note(result, "unreachable")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._note(result, "skipped")

    # -- writing node events ---------------------------------------------------------------------------------

    def _flush(self, hosts: list[str], *, bad_only: bool) -> None:
        candidates = list(self._hosts) if bad_only else hosts
        for host in candidates:
            entry = self._hosts.get(host)
            if entry is None:
                continue
            outcome = _outcome(entry)
            if host in self._flushed:
                # recorded already; a node reverted later in the run (budget spent) gets its revert recorded
                if outcome != "rolled_back" or self._flushed[host] == "rolled_back":
                    continue
            elif bad_only and not entry["failing"]:
                continue
            self._flushed[host] = outcome
            details = {k: entry[k] for k in ("batch", "ok", "changed", "failed", "unreachable", "skipped",
                                             "rescued", "agent_port")}
            details.update(kind=self._kind, check=self._check, last_task=entry["task"], message=entry["message"])
            if entry["agent_port"]:
                details["agent_url"] = f"http://{entry['address']}:{entry['agent_port']}"
            facts = entry["facts"]
            version = None
            if self._kind == "rollback" and facts.get("model_release_version"):
                version = details["to_version"] = facts["model_release_version"]
            elif outcome == "rolled_back" and facts.get("model_release_old_link"):
                release = os.path.basename(facts["model_release_old_link"])
                details["to_release"] = release
                details["to_version"] = re.sub(r"-[0-9a-f]{12}$", "", release)
            if facts.get("model_release_outcome"):
                details["node_outcome"] = facts["model_release_outcome"]
            self._append(f"node_{self._kind}", node=host, outcome=outcome, details=details, version=version)


def _outcome(entry: dict[str, Any]) -> str:
    if entry["unreachable"]:
        return "unreachable"
    if entry["rolled_back"]:
        return "rolled_back"
    if entry["failing"]:
        return "failed"
    if entry["changed"]:
        return "changed"
    if entry["ok"]:
        return "ok"
    return "skipped"


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)


def _new_run_id() -> str:
    import secrets
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
