# modelfleet: record playbook runs in the deployment ledger (enabled in the repository's ansible.cfg).
"""Ansible callback plugin ``modelfleet_ledger``.

Records, in the modelfleet ledger, the start of a run (unless the modelfleet run pipeline already did), one
outcome event per node (``node_<kind>``, outcomes as ``modelfleet.runners.runstate`` defines them) and the end
of the run, so that a plain ``ansible-playbook playbooks/deploy.yml -e ...`` is logged like a CLI run. The
callback's arguments are turned into the same event dicts ansible-runner produces and folded by the same
``RunState`` the CLI and the console use; the events are written by the rules of ``modelfleet.runners.records``.

A reconcile run (playbooks/reconcile.yml) writes ``node_reconcile`` events: what each node holds for the model
against the ledger's placement (``modelfleet.runners.records.reconcile_event``). Node events are written when a
node is done: at the end of its batch when the rollout play is the playbook's
last play, when a batch ends with the node failed, and at the end of the run for the rest (hosts the run
targeted that never started are recorded as ``not_started``). A node recorded before it was reverted later in the
run is recorded again. A ledger that cannot be reached never fails the playbook: the plugin warns loudly, stops
writing, and lists what it could not record.
"""

from __future__ import annotations

import contextlib
import os
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
        self._play_name = ""
        self._batch_hosts: list[str] = []
        self._state: Any = None  # modelfleet.runners.runstate.RunState
        self._flushed: dict[str, str] = {}  # host -> outcome recorded
        self._release: dict[str, Any] = {}
        self._started = False
        self._own_run = False
        self._check = False
        self._limit: str | None = None
        self._inventory: list[str] = []
        self._counter = 0
        self._addresses: dict[str, str] = {}  # host -> where its agent answers (for the agent URL)
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
                          digest=None if fields.get("outcome") == "reverted" else self._release.get("digest"),
                          target=self._limit or "all", run_id=self._run_id, **fields)
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

    # -- the fold ----------------------------------------------------------------------------------------------

    def _feed(self, event: str, data: dict[str, Any]) -> None:
        if self._state is None:
            return
        from datetime import UTC, datetime

        self._counter += 1
        try:
            self._state.feed({"event": event, "counter": self._counter, "created": datetime.now(UTC).isoformat(),
                              "event_data": data})
        except Exception as exc:  # never break the playbook
            self._display.warning(f"modelfleet_ledger: could not fold an event: {exc}")

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

    def _wait_while_held(self) -> None:
        """The modelfleet run holds the playbook (its hold file exists) before its next play or serial wave:
        this callback runs in ansible-playbook's main loop before the play's hosts are started."""
        hold = os.environ.get("MODELFLEET_HOLD_FILE")
        if not hold or not os.path.exists(hold):
            return
        import time

        self._display.display("modelfleet: run held before its next wave (waiting for the operator)")
        while os.path.exists(hold):
            time.sleep(0.2)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._wait_while_held()
        uuid = str(play._uuid).split("_")[0]
        if not self._started:
            self._started = True
            self._begin(play)
        same_play = uuid == self._play_uuid
        if not same_play:
            self._target(play)
        # The previous batch is over: its failed nodes are final, and so is every node of it when the play
        # is the playbook's last (serial batches of the rollout play).
        last = bool(self._plays) and self._play_uuid == self._plays[-1]
        self._flush(self._batch_hosts if (same_play and last) else [], bad_only=not (same_play and last))
        self._play_uuid, self._play_name = uuid, str(play.get_name())
        self._batch_hosts = []
        self._feed("playbook_on_play_start", {"name": self._play_name, "uuid": uuid,
                                              "pattern": str(getattr(play, "hosts", ""))})

    def _target(self, play: Any) -> None:
        """The play's hosts (within --limit, all of its serial batches) are hosts the run targets."""
        if self._state is None:
            return
        with contextlib.suppress(Exception):
            inventory = play.get_variable_manager()._inventory
            hosts = inventory.get_hosts(play.hosts, ignore_restrictions=True)
            self._state.target(h.get_name() for h in hosts if not getattr(h, "implicit", False))

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
        # A plain run makes its id here; the playbooks read MODELFLEET_RUN_ID (roles/model_release/tasks/run.yml),
        # so the id on the nodes' locks and journals is the ledger's (tasks run in forks made after this point).
        os.environ.setdefault("MODELFLEET_RUN_ID", self._run_id)
        try:
            from modelfleet.runners.runstate import RunState

            self._state = RunState(self._run_id, kind=self._kind, keep_tasks=False)
        except Exception as exc:
            self._disable(f"cannot load modelfleet's run fold: {exc}")
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
        details = {"playbook": os.path.basename(self._playbook), "origin": "ansible-playbook", "check": self._check,
                   "limit": self._limit, "inventory": self._inventory}
        recorder = self._recorder()
        if recorder is not None:
            try:
                recorder.start(**details)
            except Exception as exc:
                self._unrecorded.append("run_start")
                self._disable(f"cannot write to the ledger: {exc}")

    def _recorder(self) -> Any:
        ledger = self._open_ledger()
        if ledger is None:
            return None
        from modelfleet.runners.records import RunIdentity, RunRecorder

        return RunRecorder(ledger, RunIdentity(self._run_id or "", self._kind, self._actor(), self._limit,
                                               self._release.get("model"), self._release.get("version"),
                                               self._release.get("digest")))

    def v2_playbook_on_stats(self, stats: Any) -> None:
        data = {key: dict(getattr(stats, attr, {}) or {}) for key, attr in (
            ("ok", "ok"), ("changed", "changed"), ("failures", "failures"), ("dark", "dark"),
            ("skipped", "skipped"), ("rescued", "rescued"), ("ignored", "ignored"), ("processed", "processed"))}
        custom = getattr(stats, "custom", {}) or {}
        data["artifact_data"] = dict(custom.get("_run") or {}) if isinstance(custom, dict) else {}
        self._feed("playbook_on_stats", data)
        bad = any(data["failures"].values()) or any(data["dark"].values())
        if self._state is not None:
            self._state.finish("failed" if bad else "successful", 2 if bad else 0)
        self._flush(list(self._state.hosts) if self._state is not None else [], bad_only=False)
        if self._own_run and self._state is not None:
            recorder = self._recorder()
            if recorder is not None:
                try:
                    recorder.end(self._state)
                except Exception as exc:
                    self._unrecorded.append("run_end")
                    self._disable(f"cannot write to the ledger: {exc}")
        if self._unrecorded:
            self._display.warning(
                "modelfleet_ledger: these events were NOT recorded: " + "; ".join(self._unrecorded[:50])
                + (f" (+{len(self._unrecorded) - 50} more)" if len(self._unrecorded) > 50 else "")
            )

    # -- host results ----------------------------------------------------------------------------------------

    def _result(self, event: str, result: Any, **extra: Any) -> None:
        try:
            host = result._host
            name = host.get_name()
            res = result._result if isinstance(result._result, dict) else {}
            self._pinned(res)
            if name != "localhost" and not getattr(host, "implicit", False) and name not in self._batch_hosts:
                self._batch_hosts.append(name)
                if name not in self._addresses:
                    hv: dict[str, Any] = {}
                    with contextlib.suppress(Exception):
                        hv = dict(host.get_vars())
                    self._addresses[name] = str(hv.get("modelfleet_agent_address") or hv.get("ansible_host") or name)
            task = result._task
            data = {"host": name, "task": task.get_name(), "task_action": getattr(task, "action", None),
                    "play": self._play_name, "play_uuid": self._play_uuid, "res": res, **extra}
            self._feed(event, data)
        except Exception as exc:  # never break the playbook
            self._display.warning(f"modelfleet_ledger: could not note a result: {exc}")

    def _pinned(self, res: dict[str, Any]) -> None:
        """A plain run that pins on the controller (deploy.yml without a bundle) names its release in a fact."""
        facts = res.get("ansible_facts")
        pinned = facts.get("modelfleet_pinned") if isinstance(facts, dict) else None
        if isinstance(pinned, dict):
            for key in ("version", "digest"):
                if not self._release.get(key) and pinned.get(key) not in (None, ""):
                    self._release[key] = str(pinned[key])

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result("runner_on_ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result("runner_on_failed", result, ignore_errors=ignore_errors)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result("runner_on_unreachable", result)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result("runner_on_skipped", result)

    # -- writing node events ---------------------------------------------------------------------------------

    def _flush(self, hosts: list[str], *, bad_only: bool) -> None:
        state = self._state
        if state is None:
            return
        from modelfleet.runners.records import node_event, reconcile_event

        candidates = list(state.hosts) if bad_only else hosts
        for host in candidates:
            hr = state.hosts.get(host)
            if hr is None:
                continue
            outcome = hr.outcome(self._kind, final=True).value
            if host in self._flushed:
                # recorded already; a node reverted later in the run (budget spent) gets its revert recorded
                if outcome != "reverted" or self._flushed[host] == "reverted":
                    continue
            elif bad_only and not hr.failing:
                continue
            elif not bad_only and not state.finished and not (hr.ok or hr.skipped or hr.failed or hr.unreachable):
                continue  # no result yet: recorded at the end of the run
            self._flushed[host] = outcome
            if self._kind == "reconcile":  # what the node holds, against the ledger (runners/records.py)
                try:
                    action, outcome, version, details = reconcile_event(self._open_ledger(), hr,
                                                                        model=self._release.get("model"),
                                                                        check=self._check)
                except Exception as exc:  # never break the playbook; the node's event says what went wrong
                    action, outcome, version, details = "node_reconcile", "failed", None, {
                        "kind": "reconcile", "check": self._check, "message": f"could not reconcile: {exc}"}
            else:
                action, outcome, version, details = node_event(self._kind, hr, check=self._check)
            if details.get("agent_port"):
                details["agent_url"] = f"http://{self._address(host)}:{details['agent_port']}"
            self._append(action, node=host, outcome=outcome, details=details, version=version)

    def _address(self, host: str) -> str:
        return self._addresses.get(host) or host


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)


def _new_run_id() -> str:
    import secrets
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
