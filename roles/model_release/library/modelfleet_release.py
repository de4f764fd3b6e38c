#!/usr/bin/python
# modelfleet: the node-side step of the model_release role.
"""Ansible module ``modelfleet_release``: prepare, deploy, roll back or revert one model release on a node.

Each action is one call on the node, so a deploy costs a handful of tasks per node instead of dozens; the
role keeps the controller-side parts (pinning, the push, the agent's config, waves and the failure budget).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: modelfleet_release
short_description: Prepare, deploy, roll back or revert one model release on an edge node
description:
  - The node-side step of the model_release role; every action is one call on the node.
  - C(prepare) first checks governance, before anything else and also in check mode - the node's own trust file
    and environment (C(<root>/etc/governance/trust.json), C(environment), installed at provisioning) decide
    whether the release (O(digest), O(thresholds_sha256)) needs a clearance here, and the node's venv runs
    C(python -m modelfleet.governance_verify) on the O(clearance); a refusal (outcome C(refused)) changes
    nothing on the node. Then it reads the model's state on the node (C(current), C(previous), whether the
    release is unpacked, free disk) and refuses while another run holds the per-model deploy lock, naming that
    run. Unless the release is already current it checks free disk and takes the lock for this run (not in
    check mode).
  - C(deploy) verifies the pushed bundle (signature and every checksum, with the node venv's
    C(python -m modelfleet.release_verify); in a protected environment also the clearance, on the verified
    manifest, before unpacking) and unpacks it into C(releases/<release>/), switches
    C(current) by an atomic rename (C(previous) keeps the old target), reloads or starts the agent and runs the
    functional health gate. On any failure after the switch it switches back, reloads, checks the old release
    answers and drops the failed release. Then it keeps the last O(keep) releases, appends a line to
    C(log/deployments.jsonl) and releases the lock. With O(reload=false) (the model's first release, whose agent
    is installed after the switch) it stops after the switch; C(gate) finishes the deploy.
  - C(gate) runs the health gate on the switched release and finishes the deploy (or recovers) as above.
  - C(recover) undoes a deploy that failed outside this module (switched or not), journals it and unlocks.
  - C(rollback) switches to the previous release or a named version still on the node, under the lock, gated,
    and switches back if that release does not answer.
  - C(revert) returns the node to the release that was current before this run (the failure budget was spent).
  - C(lock_state) reads who holds the model's deploy lock (read only).
  - C(observe) reads what the node holds for the model (read only) - C(current), C(previous), the lock's holder
    and the model's latest lines of C(log/deployments.jsonl) - returned as RV(observed). A deploy journals a
    C(switch) line before it moves C(current) and every line names the C(current) after its step, so the
    controller can tell which run put the node where it is, also when that run was lost (node dark, controller
    killed) and the ledger never heard its outcome.
  - C(unlock) removes the model's deploy lock when its holder is known to be gone (O(ended_runs), O(holder_gone))
    or when forced, and writes the removal to C(log/deployments.jsonl); otherwise it fails naming the holder.
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [prepare, deploy, gate, recover, rollback, revert, lock_state, unlock, observe]
  root:
    description: The node folder modelfleet owns (modelfleet_root).
    type: path
    required: true
  model:
    description: Model name.
    type: str
    required: true
  node:
    description: Inventory name of the node, for messages and the journal.
    type: str
    default: ""
  run_id:
    description: Run id recorded in the lock and the journal.
    type: str
    default: ""
  version:
    description: Pinned version (deploy).
    type: str
    default: ""
  digest:
    description: Pinned artifact digest, sha256 hex (deploy).
    type: str
    default: ""
  release:
    description: Release folder name C(<version>-<digest12>), or C(<version>-<digest12>-t<thresholds8>) for a
      release with per-group thresholds.
    type: str
    default: ""
  thresholds_sha256:
    description: sha256 of the release's per-group thresholds (empty for none); what approvals bind besides the
      digest (prepare, deploy).
    type: str
    default: ""
  environment:
    description: The node's environment as the inventory names it (prepare). The node refuses a deploy when it
      differs from the environment it was provisioned with (C(<root>/etc/governance/environment)). Omitted, only
      the provisioned one counts.
    type: str
  clearance:
    description: What travels with the deploy to a protected environment - one C(modelfleet-clearance/1)
      document or a list of them, one per environment (prepare, deploy). Only the one for the node's environment
      counts, verified against the node's own trust file.
    type: raw
  bundle:
    description: Node path of the pushed or pulled bundle; empty when the release is already unpacked.
    type: path
  python:
    description: Interpreter that has the modelfleet package (default the node venv's).
    type: path
  public_key:
    description: Key the release signature is checked with (default C(<root>/etc/release.pub)).
    type: path
  holder:
    description: What the lock records about this run (run_id, action, version, controller, pid, started).
    type: dict
    default: {}
  ended_runs:
    description: Run ids the controller knows have ended (or whose controller process is gone). A lock one of them
      holds is broken (prepare, deploy, rollback, unlock), written to C(log/deployments.jsonl) and returned as
      RV(broke_lock).
    type: list
    elements: str
    default: []
  lock_run_id:
    description: The run id the caller saw holding the lock (unlock); the lock is removed only if that run still
      holds it.
    type: str
    default: ""
  holder_gone:
    description: The caller checked that the lock holder's controller process is gone (unlock).
    type: bool
    default: false
  force:
    description: Remove the lock whoever holds it (unlock). Dangerous - a live run loses its protection.
    type: bool
    default: false
  needed_bytes:
    description: Free disk the release needs under O(root) (prepare).
    type: int
    default: 0
  service_manager:
    description: Init that runs the agent.
    type: str
    default: systemd
    choices: [systemd, supervisord]
  supervisorctl:
    description: supervisorctl command (supervisord).
    type: str
    default: supervisorctl
  supervisor_conf:
    description: supervisord configuration file (supervisord).
    type: str
    default: ""
  program:
    description: Program or unit name of the model's agent (default C(modelfleet-agent-<model>)).
    type: str
  reload:
    description: Reload or start the agent after the switch (deploy, gate). Off for a first release whose agent
      is installed after the switch.
    type: bool
    default: true
  reload_method:
    description: C(signal) (SIGHUP through the init) or C(http) (POST /admin/reload with the admin token).
    type: str
    default: signal
    choices: [signal, http]
  agent_address:
    description: Address the model's agent listens on.
    type: str
    default: 127.0.0.1
  agent_port:
    description: Port of the model's agent; 0 reads the port recorded on the node (C(<root>/etc/agents/ports.json)).
    type: int
    default: 0
  probe:
    description: Probe override C({request, expected}); empty uses the release manifest's probe.
    type: dict
    default: {}
  gate_latency_ms:
    description: Latency budget of the probe, milliseconds.
    type: float
    default: 500
  gate_wait_s:
    description: How long the gate tries before it fails, seconds.
    type: float
    default: 16
  gate_backoff_s:
    description: First pause between gate attempts, seconds; doubles up to O(gate_max_backoff_s).
    type: float
    default: 0.25
  gate_max_backoff_s:
    description: Longest pause between gate attempts, seconds.
    type: float
    default: 1.0
  gate_timeout_s:
    description: Timeout of one HTTP request of the gate, seconds.
    type: float
    default: 2.0
  keep:
    description: Releases kept per model (current and previous always stay).
    type: int
    default: 3
  old_link:
    description: What C(current) pointed at before this run (gate, recover, revert).
    type: str
    default: ""
  old_previous:
    description: What C(previous) pointed at before this run (gate, recover, revert).
    type: str
    default: ""
  switched:
    description: Whether this run switched C(current) (recover).
    type: bool
    default: false
  switched_at:
    description: When this run switched C(current), epoch seconds (gate, recover).
    type: float
  error:
    description: Why the deploy failed (recover).
    type: str
    default: ""
  rollback_to:
    description: C(previous), or a version whose release is still on the node (rollback).
    type: str
    default: previous
  requires:
    description: The bundle's C(requires) (C(arch) list, C(accelerator)); checked against the node (prepare).
    type: dict
    default: {}
  node_class:
    description: Declared class of the node (cpu, gpu, arm).
    type: str
    default: cpu
  hardware_check:
    description: Check the real architecture; when off (simulated fleet) an arm-class node counts as aarch64.
    type: bool
    default: true
author: modelfleet
"""

EXAMPLES = r"""
- name: Take the lock and read the node's state
  modelfleet_release:
    action: prepare
    root: /opt/modelfleet
    model: credit-risk
    release: 7-0123456789ab
    run_id: deploy-20260101T000000Z-42
    needed_bytes: 104857600
  register: state

- name: Verify, unpack, switch, reload and gate
  modelfleet_release:
    action: deploy
    root: /opt/modelfleet
    model: credit-risk
    version: "7"
    digest: 0123456789ab...
    release: 7-0123456789ab
    bundle: /opt/modelfleet/run/incoming/credit-risk-7-0123456789ab.tar.gz
    agent_address: 127.0.10.1
    service_manager: systemd
"""

RETURN = r"""
outcome:
  description:
    - One word from the role's vocabulary (the role's README, "Outcomes").
    - prepare, deploy, gate, recover - prepared, switched, unchanged, deployed, rolled_back (the new release
      failed its gate and the old one is back), refused (the release never reached C(current)), locked.
    - rollback - rolled_back, already_current, nothing_to_roll_back, version_absent, model_absent, locked,
      rollback_failed.
    - revert - unchanged, reverted, revert_unhealthy.
    - failed - any action, an unexpected error.
  type: str
  returned: always
version:
  description: The version the node serves after the call (rollback).
  type: str
  returned: rollback
release:
  description: The release the node serves after the call (rollback).
  type: str
  returned: rollback
current:
  description: Target of C(current) after the call (C(releases/<name>)).
  type: str
  returned: always
previous:
  description: Target of C(current) before the call (deploy, rollback, revert).
  type: str
  returned: changed
previous_link:
  description: Target of C(previous) (prepare).
  type: str
  returned: success
is_current:
  description: The release is unpacked and C(current) points at it (prepare).
  type: bool
  returned: success
present:
  description: The release is already unpacked on the node (prepare).
  type: bool
  returned: success
lock_acquired:
  description: This run holds the per-model deploy lock (prepare).
  type: bool
  returned: success
lock_holder:
  description: What the lock records about its holder (run_id, action, version, controller, pid, started); null
    when the model is not locked (lock_state, unlock, and every refusal with outcome C(locked)).
  type: dict
  returned: when relevant
broke_lock:
  description: The lock this call removed - C(run_id) of its holder, C(holder) (all it recorded), C(reason),
    C(node), C(model), C(by_run_id), C(time). Also a line of C(log/deployments.jsonl) (action C(break_lock)).
  type: dict
  returned: when a lock was broken
agent_refused:
  description: The agent refused the release the gate waited for (it did not load, or did not answer its own
    probe) - C(release) and the agent's C(reason). The gate ends at once, and the message carries the reason.
  type: dict
  returned: when the agent refused the release
governance:
  description: How governance cleared the release on this node (prepare) - C(mode) (C(approvals),
    C(break_glass), C(unprotected)), C(environment), C(people); on a refusal C(ok) false and C(error).
  type: dict
  returned: prepare
observed:
  description: What the node holds for the model (observe) - C(current) and C(previous) (release names, empty
    when absent), C(lock_holder) (or null) and C(journal), the model's latest journal lines, oldest first.
  type: dict
  returned: observe
would_break_lock:
  description: In check mode, the lock that would be broken.
  type: dict
  returned: check mode, when a lock would be broken
modelfleet:
  description: The step's record (stage, times, gate verdicts), also written to C(log/deployments.jsonl).
  type: dict
  returned: always
"""

import json  # noqa: E402
import os  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.modelfleet_release_gate import Gate, call  # noqa: E402
from ansible.module_utils.modelfleet_release_node import (  # noqa: E402
    AgentService,
    NodeModel,
    ServiceError,
    describe_holder,
    split_release,
)
from ansible.module_utils.modelfleet_release_session import to_completion  # noqa: E402


# What a line of log/deployments.jsonl holds (the module's result carries the gate verdicts too).
JOURNAL_FIELDS = ("time", "action", "node", "model", "version", "digest", "release", "previous", "current",
                  "outcome", "run_id", "switched_at", "gate_failed_at", "rolled_back_at", "latency_ms", "broke_lock_of", "error")


#: how many of the model's latest journal lines ``observe`` returns
JOURNAL_OBSERVED = 50


class Failed(Exception):
    """The step failed; ``fields`` go into the module's result."""

    def __init__(self, msg: str, **fields: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.fields = fields


class Step:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        p = module.params
        self.p = p
        self.node = NodeModel(p["root"], p["model"])
        self.name = p["release"]
        self.program = p["program"] or "modelfleet-agent-" + p["model"]
        self.service = AgentService(lambda cmd: module.run_command(list(cmd)), p["service_manager"], self.program,
                                    p["supervisorctl"], p["supervisor_conf"])
        self.record: dict[str, Any] = {"node": p["node"], "model": p["model"], "run_id": p["run_id"]}
        self.extra: dict[str, Any] = {}  # what every result of this call carries (broke_lock)
        self.check = module.check_mode

    # -- pieces ---------------------------------------------------------------------------------------------
    def where(self) -> str:
        return "%s on %s" % (self.p["model"], self.p["node"] or "this node")

    def locked_msg(self, holder: dict[str, Any]) -> str:
        return ("%s is locked by %s; wait for it to finish. If that run is gone, remove the lock with `modelfleet "
                "unlock %s --node %s` (or ansible-playbook playbooks/unlock.yml -e model_release_model=%s --limit %s)"
                % (self.where(), describe_holder(holder), self.p["model"], self.node_name(), self.p["model"],
                   self.node_name()))

    def ended(self, holder: dict[str, Any] | None) -> bool:
        """The lock's holder is a run the controller knows has ended."""
        return holder is not None and str(holder.get("run_id")) in set(self.p["ended_runs"])

    def break_lock(self, holder: dict[str, Any], reason: str) -> None:
        """Remove the lock ``holder`` holds (not in check mode): journal it and return it as ``broke_lock``."""
        if self.check:
            self.extra["would_break_lock"] = {"run_id": holder.get("run_id"), "holder": holder, "reason": reason}
            return
        if not self.node.release_lock(str(holder.get("run_id"))):
            return  # gone already, or taken by another run meanwhile: take_lock will see it
        broke = {"run_id": holder.get("run_id"), "holder": holder, "reason": reason, "node": self.p["node"],
                 "model": self.p["model"], "by_run_id": self.p["run_id"],
                 "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        self.node.journal({"time": broke["time"], "action": "break_lock", "outcome": "lock_broken",
                           "node": self.p["node"], "model": self.p["model"], "run_id": self.p["run_id"],
                           "broke_lock_of": holder.get("run_id"), "lock_holder": holder, "error": reason})
        self.record["broke_lock_of"] = holder.get("run_id")
        self.extra["broke_lock"] = broke

    def take_lock(self) -> bool:
        """Hold the lock for this run (breaking one an ended run left). True when this call took it."""
        holder = self.node.lock_holder()
        if holder is not None and holder.get("run_id") == self.p["run_id"]:
            return False
        if self.ended(holder):
            assert holder is not None
            self.break_lock(holder, "run %s has ended (model_release_ended_runs)" % holder.get("run_id"))
        other = self.node.take_lock(dict(self.p["holder"], run_id=self.p["run_id"]))
        if other is not None:
            raise Failed(self.locked_msg(other), outcome="locked", lock_holder=other)
        return True

    def unlock(self) -> None:
        self.node.release_lock(self.p["run_id"])

    def remove_bundle(self) -> None:
        bundle = self.p["bundle"]
        if bundle and os.path.isfile(bundle):
            os.unlink(bundle)

    def python(self) -> str:
        return self.p["python"] or os.path.join(self.p["root"], "agent", "venv", "bin", "python")

    def governance(self) -> tuple[str, str, bool]:
        """(trust file, this node's environment, protected) as provisioning installed them; Failed(refused) when
        the node has none, or the inventory now names another environment than the one it was provisioned with."""
        p, gdir = self.p, os.path.join(self.p["root"], "etc", "governance")
        trust_path, env_path = os.path.join(gdir, "trust.json"), os.path.join(gdir, "environment")
        provision = ("provision it (playbooks/provision.yml, or `modelfleet provision`), which installs the trust "
                     "file and the node's environment")
        try:
            with open(trust_path, encoding="utf-8") as fh:
                trust = json.load(fh)
            with open(env_path, encoding="utf-8") as fh:
                environment = fh.read().strip()
        except FileNotFoundError as exc:
            raise Failed("%s has no %s, so it cannot tell whether this deploy is allowed; %s"
                         % (self.node_name(), exc.filename, provision), outcome="refused") from None
        except (OSError, ValueError) as exc:
            raise Failed("%s: the governance files under %s cannot be read (%s); %s"
                         % (self.node_name(), gdir, exc, provision), outcome="refused") from None
        if p["environment"] is not None and p["environment"] != environment:
            raise Failed("%s was provisioned for environment %r but the inventory names %r; provision it again so "
                         "it verifies deploys for %r" % (self.node_name(), environment, p["environment"],
                                                         p["environment"]), outcome="refused")
        envs = trust.get("environments") if isinstance(trust, dict) else None
        require = ((envs or {}).get(environment) or {}).get("require") if environment else None
        return trust_path, environment, bool(require)

    def check_governance(self) -> dict[str, Any]:
        """Refuse (outcome refused) a release this node's environment does not clear; nothing is written."""
        p = self.p
        trust_path, environment, protected = self.governance()
        if not protected:
            return {"ok": True, "mode": "unprotected", "environment": environment}
        cmd = [self.python(), "-m", "modelfleet.governance_verify", "--trust", trust_path, "--environment",
               environment, "--digest", p["digest"], "--clearance", "-"]
        if p["thresholds_sha256"]:
            cmd += ["--thresholds-sha256", p["thresholds_sha256"]]
        verdict, reason = self.run_verifier(cmd, json.dumps(p["clearance"]))
        if reason:
            ref = "%s/%s" % (p["model"], p["version"])
            raise Failed("deploy of %s refused on %s (environment %s): %s; deploy it with `modelfleet deploy` once "
                         "the gate passed and the approvals are in, or pass the clearance (modelfleet clearance %s "
                         "--env %s -o clearance.json; -e modelfleet_clearance=clearance.json)"
                         % (ref, self.node_name(), environment, reason, ref, environment),
                         outcome="refused", governance={"ok": False, "environment": environment, "error": reason})
        return verdict

    def run_verifier(self, cmd: list[str], data: str | None) -> tuple[dict[str, Any], str]:
        """Run a node-side verifier (``python -m modelfleet.<verifier>``) that prints one JSON line; its verdict
        and, when it refused or failed, why (empty when it passed)."""
        rc, out, err = self.module.run_command(cmd, data=data)
        try:
            verdict = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except ValueError:
            verdict = {}
        if rc == 0 and verdict.get("ok"):
            return verdict, ""
        return verdict, (verdict.get("error") or (err or out).strip()[-600:]
                         or "%s exited %s" % (cmd[2] if len(cmd) > 2 else cmd[0], rc))

    def verify(self, name: str, bundle: str | None, governed: bool = False) -> dict[str, Any]:
        """Signature and every checksum (and the unpack, from a bundle); with ``governed``, the clearance for this
        node's environment too, on the verified manifest, before unpacking. Raises Failed(outcome=refused)."""
        key = self.p["public_key"] or os.path.join(self.p["root"], "etc", "release.pub")
        cmd = [self.python(), "-m", "modelfleet.release_verify", "--public-key", key]
        if bundle:
            cmd += ["--bundle", bundle, "--dest", self.node.release_path(name)]
        else:
            cmd += ["--release-dir", self.node.release_path(name)]
        data = None
        if governed:
            trust_path, environment, protected = self.governance()
            if protected:
                cmd += ["--trust", trust_path, "--environment", environment, "--clearance", "-"]
                data = json.dumps(self.p["clearance"])
        verified, reason = self.run_verifier(cmd, data)
        if reason and verified.get("damaged") and not bundle:
            reason += "; " + self.remove_damaged(name)
        if reason:
            raise Failed("release %s refused on %s: %s" % (name, self.p["node"] or "the node", reason),
                         outcome="refused")
        return verified

    def remove_damaged(self, name: str) -> str:
        """An unpacked release that no longer verifies is removed (never the one ``current`` serves), so that the
        next deploy sends the bundle again instead of being refused by the same damaged copy for good. A
        ``previous`` link to it goes too: a rollback to a damaged copy would be refused anyway."""
        if self.node.link("current") == "releases/" + name:
            return "kept the damaged copy (current points at it): deploy another version, then this one again"
        if self.node.link("previous") == "releases/" + name:
            self.node.remove_link("previous")
        shutil.rmtree(self.node.release_path(name), ignore_errors=True)
        return "the damaged copy was removed: the next deploy sends the bundle again"

    def agent_url(self) -> str:
        """Base URL of the model's agent: the given port, else the one recorded on the node."""
        port = self.p["agent_port"]
        if not port:
            ports_file = os.path.join(self.p["root"], "etc", "agents", "ports.json")
            try:
                with open(ports_file, encoding="utf-8") as fh:
                    port = int(json.load(fh)[self.p["model"]])
            except (OSError, ValueError, KeyError, TypeError):
                raise Failed("no port is recorded for %s in %s; run the model_agent role (a deploy does) or pass "
                             "agent_port" % (self.where(), ports_file)) from None
        address = self.p["agent_address"]
        return "http://%s:%s" % ("[%s]" % address if ":" in address else address, port)

    def reload_agent(self) -> str:
        if self.p["reload_method"] == "http" and self.service.state() == "running":
            token_file = os.path.join(self.p["root"], "etc", "agents", self.p["model"] + ".admin-token")
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
            status, answer, _ = call(self.agent_url() + "/admin/reload", b"{}",
                                     {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
                                     max(self.p["gate_timeout_s"], 30.0))
            if status not in (200, 202):
                raise ServiceError("POST /admin/reload answered %s: %s" % (status, answer))
            return "reloaded"
        return self.service.reload_or_start()

    def gate(self, name: str, version: str, digest: str, probe: dict[str, Any] | None) -> dict[str, Any]:
        if not probe:
            try:
                with open(os.path.join(self.node.release_path(name), "manifest.json"), encoding="utf-8") as fh:
                    probe = json.load(fh).get("probe")
            except (OSError, ValueError):
                probe = None
        verdict = Gate(self.agent_url(), version=version, digest=digest, probe=probe, release=name,
                       latency_ms=self.p["gate_latency_ms"], wait_s=self.p["gate_wait_s"],
                       backoff_s=self.p["gate_backoff_s"], max_backoff_s=self.p["gate_max_backoff_s"],
                       timeout_s=self.p["gate_timeout_s"]).run()
        if verdict.get("refused"):  # the agent's own words, for the ledger and the CLI
            self.extra.setdefault("agent_refused", {"release": name, "reason": verdict["agent_reason"]})
        return verdict

    def journal(self, action: str, outcome: str, **fields: Any) -> None:
        """One line in the node's deployments.jsonl (the step's record without the gate details). ``current`` is
        the release ``current`` points at after the step (what the controller reconciles a lost run with)."""
        self.record.update(fields)
        self.record.update(action=action, outcome=outcome,
                           time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        if "current" not in fields:
            self.record["current"] = os.path.basename(self.node.link("current"))
        if not self.check:
            self.node.journal({k: v for k, v in self.record.items() if k in JOURNAL_FIELDS})

    def result(self, changed: bool, outcome: str, **extra: Any) -> dict[str, Any]:
        self.record["outcome"] = outcome
        out = {"changed": changed, "outcome": outcome, "current": self.node.link("current"),
               "modelfleet": dict(self.record)}
        out.update(self.extra)
        out.update(extra)
        return out

    def role_facts(self, updated: bool, outcome: str, old_link: str, old_previous: str) -> dict[str, Any]:
        """Facts the model_release role keeps per host: what this run did, and what a revert of it needs (the
        budget's revert reads them through hostvars from another host of the batch)."""
        keys = ("root", "model", "node", "run_id", "release", "service_manager", "supervisorctl", "supervisor_conf",
                "reload_method", "agent_address", "agent_port", "gate_latency_ms", "gate_wait_s", "gate_backoff_s",
                "gate_max_backoff_s", "gate_timeout_s")
        node = {k: self.p[k] for k in keys}
        node.update(old_link=old_link, old_previous=old_previous)
        return {"model_release_updated": updated, "model_release_outcome": outcome,
                "model_release_old_link": old_link, "model_release_node": node}

    # -- the way back ---------------------------------------------------------------------------------------
    def switch_back(self, name: str, old_link: str, old_previous: str) -> dict[str, Any]:
        """``current`` back to ``old_link`` (or removed, first release), agent reloaded, the old release checked."""
        back: dict[str, Any] = {}
        self.record["gate_failed_at"] = time.time()
        if old_link:
            self.node.set_link("current", old_link)
            self.node.restore_link("previous", old_previous)
            try:
                back["agent"] = self.reload_agent()
            except ServiceError as exc:
                back["agent_error"] = str(exc)
            old_name = os.path.basename(old_link)
            version, digest12 = split_release(old_name)
            verdict = self.gate(old_name, version, digest12, None)
            back["old_gate"] = verdict
            back["old_answers"] = bool(verdict.get("ok"))
        else:
            self.service.stop()
            self.node.remove_link("current")
            self.node.restore_link("previous", old_previous)
            back["old_answers"] = True
        if back["old_answers"]:
            self.record["rolled_back_at"] = time.time()
        if old_link != "releases/" + name:
            self.node.drop_release(name)
        return back

    # -- actions --------------------------------------------------------------------------------------------
    def node_arch(self) -> str:
        arch = platform.machine()
        if not self.p["hardware_check"]:
            arch = {"arm": "aarch64"}.get(self.p["node_class"], arch)
        return arch

    def check_requires(self) -> None:
        """The bundle's required architecture and accelerator against this node."""
        p, requires = self.p, self.p["requires"] or {}
        archs = requires.get("arch") or ["x86_64", "aarch64"]
        arch = self.node_arch()
        if arch not in archs:
            raise Failed("%s %s supports %s; %s is %s (%s); leave this node out of the target group"
                         % (p["model"], p["version"], ", ".join(archs), p["node"] or "this node", arch,
                            p["node_class"]), outcome="refused")
        accelerator = requires.get("accelerator")
        if accelerator and not (accelerator == "nvidia" and p["node_class"] == "gpu"):
            raise Failed("%s %s needs a %s accelerator; %s is a %s node; target edge_gpu instead"
                         % (p["model"], p["version"], accelerator, p["node"] or "this node", p["node_class"]),
                         outcome="refused")

    def prepare(self) -> dict[str, Any]:
        self.extra["governance"] = self.check_governance()
        self.check_requires()
        cur, prev = self.node.link("current"), self.node.link("previous")
        present = self.node.has_release(self.name)
        is_current = bool(self.name) and cur == "releases/" + self.name and present
        holder = self.node.lock_holder()
        lock_acquired = holder is not None and holder.get("run_id") == self.p["run_id"]
        if holder is not None and not lock_acquired:
            if not self.ended(holder):
                raise Failed(self.locked_msg(holder), outcome="locked", lock_holder=holder)
            # broken even when the release is already current, so the node is free for the next run
            self.break_lock(holder, "run %s has ended (model_release_ended_runs)" % holder.get("run_id"))
        free = self.node.free_bytes()
        if not is_current:
            if free < self.p["needed_bytes"]:
                raise Failed("%s has %d MiB free under %s; the release needs %d MiB (model_release_disk_factor x "
                             "bundle + model_release_disk_margin_mb); prune releases or lower model_release_keep"
                             % (self.p["node"] or "the node", free // 1048576, self.p["root"],
                                self.p["needed_bytes"] // 1048576), outcome="refused")
            if not self.check:
                lock_acquired = self.take_lock() or lock_acquired
        extra: dict[str, Any] = {}
        if is_current:  # the deploy ends here: say so in the role's fact
            extra["ansible_facts"] = {"model_release_outcome": "unchanged", "model_release_updated": False}
        return self.result(False, "unchanged" if is_current else "prepared", previous_link=prev, present=present,
                           is_current=is_current, lock_acquired=lock_acquired, free_bytes=free,
                           arch=self.node_arch(), **extra)

    def deploy(self) -> dict[str, Any]:
        p, name, new = self.p, self.name, "releases/" + self.name
        cur, prev = self.node.link("current"), self.node.link("previous")
        self.record.update(version=p["version"], digest=p["digest"], release=name,
                           previous=os.path.basename(cur))
        if cur == new and self.node.has_release(name):
            self.unlock()
            return self.result(False, "unchanged", previous=cur)
        diff = {"before": {"current": cur, "previous": prev},
                "after": {"current": new, "previous": cur if cur != new else prev}}
        if self.check:
            return self.result(True, "deployed", previous=cur, diff=diff,
                               ansible_facts=self.role_facts(False, "deployed", cur, prev))
        self.take_lock()
        try:
            verified = self.verify(name, p["bundle"] if not self.node.has_release(name) else None, governed=True)
            pinned = {"model": p["model"], "version": p["version"], "digest": p["digest"], "release": name}
            got = {k: str(verified.get(k)) for k in pinned}
            if got != pinned:
                raise Failed("the verified release on %s is %s, not %s" % (p["node"], got, pinned),
                             outcome="refused")
        except Failed as exc:
            self.remove_bundle()
            self.journal("deploy", "refused", error=exc.msg)
            self.unlock()
            raise
        self.remove_bundle()
        return self.finished(lambda: self.switch(cur, prev, diff))

    def switch(self, cur: str, prev: str, diff: dict[str, Any]) -> dict[str, Any]:
        """``current`` to the release, then (unless its agent is installed later) reload, gate, journal, unlock."""
        name, new = self.name, "releases/" + self.name
        self.record["switched_at"] = time.time()
        # Write-ahead: the journal names this run before `current` moves, so a run lost from here on (its node
        # dark, its controller killed) can still be told apart from a change nobody recorded (action observe).
        self.journal("switch", "switching", current=name, error="")
        self.node.set_link("current", new)
        if cur and cur != new:
            self.node.set_link("previous", cur)
        if not self.p["reload"]:
            return self.result(True, "switched", previous=cur, diff=diff, stage="switched")
        return self.finish(cur, prev, diff=diff, reload=True)

    def finished(self, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``work()`` (a switch and what must follow it) run to its end whatever happens to the controller, in a
        process of its own session (module_utils/modelfleet_release_session.py says why); its result, or what it
        raised, here. The step's record and extras come back with it."""
        def child() -> dict[str, Any]:
            out: dict[str, Any] = {}
            try:
                out["result"] = work()
            except Failed as exc:
                out["failed"] = [exc.msg, exc.fields]
            except ServiceError as exc:
                out["service_error"] = str(exc)
            except OSError as exc:
                out["os_error"] = str(exc)
            out.update(record=self.record, extra=self.extra, name=self.name)
            return out

        payload = to_completion(child)
        self.record.clear()
        self.record.update(payload["record"])
        self.extra.update(payload["extra"])
        self.name = payload["name"]
        if "failed" in payload:
            msg, fields = payload["failed"]
            raise Failed(msg, **fields)
        if "service_error" in payload:
            raise ServiceError(payload["service_error"])
        if "os_error" in payload:
            raise OSError(payload["os_error"])
        return dict(payload["result"])

    def finish(self, old_link: str, old_previous: str, diff: dict[str, Any] | None = None,
               reload: bool = True) -> dict[str, Any]:
        """After the switch: reload, gate; keep the last releases, journal, unlock; or switch back."""
        p, name = self.p, self.name
        extra: dict[str, Any] = {"previous": old_link}
        if diff:
            extra["diff"] = diff
        try:
            if reload:
                self.record["agent"] = self.reload_agent()
            verdict = self.gate(name, p["version"], p["digest"], p["probe"])
            self.record["gate"] = verdict
            if verdict.get("latency_ms") is not None:
                self.record["latency_ms"] = verdict["latency_ms"]
            if not verdict.get("ok"):
                raise Failed("health gate failed on %s for %s %s: %s" % (p["node"] or "the node", p["model"],
                                                                          p["version"], verdict.get("reason")))
        except (Failed, ServiceError, OSError) as exc:
            error = exc.msg if isinstance(exc, Failed) else str(exc)
            back = self.switch_back(name, old_link, old_previous)
            self.record.update(back)
            if not back["old_answers"]:
                error += "; after switching back, the old release %s does not answer: %s" % (
                    os.path.basename(old_link), back.get("old_gate", {}).get("reason"))
            self.journal("deploy", "rolled_back", error=error)
            self.unlock()
            raise Failed(error, outcome="rolled_back", recovered=True, modelfleet_rolled_back=True,
                         changed=True, **extra) from None
        removed = self.node.prune(p["keep"], ["releases/" + name, old_link])
        if removed:
            self.record["pruned"] = removed
        self.journal("deploy", "deployed", error="")
        self.unlock()
        facts = self.role_facts(True, "deployed", old_link, old_previous)
        return self.result(True, "deployed", ansible_facts=facts, **extra)

    def continue_deploy(self) -> None:
        """The record of a deploy that an earlier call of this run switched (gate, recover)."""
        p = self.p
        self.record.update(version=p["version"], digest=p["digest"], release=self.name,
                           previous=os.path.basename(p["old_link"]))
        if p["switched_at"] is not None:
            self.record["switched_at"] = p["switched_at"]

    def gate_action(self) -> dict[str, Any]:
        p = self.p
        self.continue_deploy()
        if self.check:
            return self.result(False, "deployed")
        if self.node.link("current") != "releases/" + self.name:
            raise Failed("%s: current is %r, not releases/%s; deploy it first" % (self.where(),
                                                                                    self.node.link("current"),
                                                                                    self.name))
        return self.finish(p["old_link"], p["old_previous"], reload=p["reload"])

    def recover(self) -> dict[str, Any]:
        p = self.p
        self.continue_deploy()
        if self.check:
            return self.result(False, "refused")
        self.remove_bundle()
        if p["switched"] and self.node.link("current") == "releases/" + self.name:
            back = self.switch_back(self.name, p["old_link"], p["old_previous"])
            self.record.update(back)
            self.journal("deploy", "rolled_back", error=p["error"])
            self.unlock()
            return self.result(True, "rolled_back", modelfleet_rolled_back=True, **back)
        self.journal("deploy", "refused", error=p["error"])
        self.unlock()
        return self.result(False, "refused")

    def rollback(self) -> dict[str, Any]:
        if not os.path.isdir(self.node.model_dir):
            # checked before the lock, so a model the node never had leaves no trace on it
            raise Failed("nothing to roll back to: %s has never been deployed on %s (no %s); check the model's "
                         "name, or deploy it first" % (self.p["model"], self.node_name(), self.node.model_dir),
                         outcome="model_absent", **self.now_on())
        if self.check:
            holder = self.node.lock_holder()
            if holder is not None and holder.get("run_id") != self.p["run_id"]:
                if not self.ended(holder):
                    raise Failed(self.locked_msg(holder), outcome="locked", lock_holder=holder, **self.now_on())
                self.break_lock(holder, "run %s has ended (model_release_ended_runs)" % holder.get("run_id"))
            return self._rollback()
        try:
            took = self.take_lock()
        except Failed as exc:
            exc.fields.update(self.now_on())
            raise
        try:
            return self._rollback()
        finally:
            if took:
                self.unlock()

    def node_name(self) -> str:
        return self.p["node"] or "this node"

    def now_on(self) -> dict[str, str]:
        """What the node serves now: ``release`` and ``version`` (empty when nothing is current)."""
        release = os.path.basename(self.node.link("current"))
        return {"release": release, "version": split_release(release)[0] if release else ""}

    def rollback_target(self, cur: str, prev: str) -> str:
        """The release to roll back to; Failed (nothing_to_roll_back, version_absent) when there is none."""
        p, where = self.p, self.node_name()
        releases = sorted(self.node.releases())
        there = ", ".join(releases) or "none"
        if p["rollback_to"] != "previous":
            target = next((n for n in releases if split_release(n)[0] == p["rollback_to"]
                           and (not p["digest"] or split_release(n)[1] == p["digest"][:12])), "")
            if not target:
                raise Failed("version %s of %s is not on %s; releases there: %s" % (p["rollback_to"], p["model"],
                                                                                   where, there),
                             outcome="version_absent", **self.now_on())
            return target
        if prev and self.node.has_release(os.path.basename(prev)) and prev != cur:
            return os.path.basename(prev)
        others = [n for n in releases if "releases/" + n != cur]
        if not others:
            only = ("only release %s" % releases[0]) if releases else "no release"
            raise Failed("nothing to roll back to: %s has %s on %s" % (p["model"], only, where),
                         outcome="nothing_to_roll_back", **self.now_on())
        raise Failed("nothing to roll back to: %s has no previous release on %s (current %s; releases there: "
                     "%s); name one with model_release_rollback_to=<version>"
                     % (p["model"], where, os.path.basename(cur) or "none", there),
                     outcome="nothing_to_roll_back", **self.now_on())

    def _rollback(self) -> dict[str, Any]:
        p = self.p
        cur, prev = self.node.link("current"), self.node.link("previous")
        target = self.rollback_target(cur, prev)
        version, digest12 = split_release(target)
        self.name = target
        self.record.update(version=version, digest=digest12, release=target, previous=os.path.basename(cur))
        new = "releases/" + target
        if cur == new:
            return self.result(False, "already_current", previous=cur, release=target, version=version,
                               msg="%s is already on %s on %s" % (p["model"], target, self.node_name()))
        diff = {"before": {"current": cur, "previous": prev}, "after": {"current": new, "previous": cur}}
        if self.check:
            return self.result(True, "rolled_back", previous=cur, release=target, version=version, diff=diff)
        try:
            self.verify(target, None)
        except Failed as exc:
            self.journal("rollback", "rollback_failed", error=exc.msg)
            raise Failed(exc.msg, outcome="rollback_failed", target=target, **self.now_on()) from None
        return self.finished(lambda: self.switch_to_target(target, cur, prev, diff))

    def switch_to_target(self, target: str, cur: str, prev: str, diff: dict[str, Any]) -> dict[str, Any]:
        """A rollback's switch to ``target``, reload and gate; undone when the gate fails."""
        p, new = self.p, "releases/" + target
        version, digest12 = split_release(target)
        self.record["switched_at"] = time.time()
        self.journal("switch", "switching", current=target, error="")  # write-ahead, as a deploy's
        self.node.set_link("current", new)
        if cur:
            self.node.set_link("previous", cur)
        try:
            self.record["agent"] = self.reload_agent()
            verdict = self.gate(target, version, digest12, p["probe"])
            self.record["gate"] = verdict
            if not verdict.get("ok"):
                raise Failed("release %s does not answer: %s" % (target, verdict.get("reason")))
        except (Failed, ServiceError, OSError) as exc:
            error = exc.msg if isinstance(exc, Failed) else str(exc)
            self.node.restore_link("current", cur)
            self.node.restore_link("previous", prev)
            try:
                self.reload_agent()
            except ServiceError as again:
                error += "; reloading the release it had failed too: %s" % again
            self.journal("rollback", "rollback_failed", error=error)
            raise Failed("rollback of %s failed and was undone: %s" % (self.where(), error),
                         outcome="rollback_failed", target=target, changed=True, **self.now_on()) from None
        self.journal("rollback", "rolled_back", error="")
        return self.result(True, "rolled_back", previous=cur, release=target, version=version, diff=diff)

    def observe(self) -> dict[str, Any]:
        """What the node holds for the model, read only: ``current``, ``previous``, the lock's holder and the
        model's latest journal lines (the controller reconciles the ledger of a run it lost with them)."""
        return self.result(False, "observed", observed={
            "current": os.path.basename(self.node.link("current")),
            "previous": os.path.basename(self.node.link("previous")),
            "lock_holder": self.node.lock_holder(),
            "journal": self.node.journal_tail(JOURNAL_OBSERVED)})

    def lock_state(self) -> dict[str, Any]:
        return self.result(False, "locked" if self.node.lock_holder() else "no_lock",
                           lock_holder=self.node.lock_holder())

    def unlock_action(self) -> dict[str, Any]:
        """Remove the lock when its holder is known to be gone, or when forced; else fail naming the holder."""
        p = self.p
        holder = self.node.lock_holder()
        if holder is None:
            return self.result(False, "no_lock", lock_holder=None, msg="%s is not locked" % self.where())
        run_id = str(holder.get("run_id"))
        if p["lock_run_id"] and run_id != p["lock_run_id"]:
            raise Failed("the lock of %s changed while it was checked: it is now held by %s; run unlock again"
                         % (self.where(), describe_holder(holder)), outcome="locked", lock_holder=holder)
        if self.ended(holder):
            reason = "run %s has ended (model_release_ended_runs)" % run_id
        elif p["holder_gone"]:
            reason = "the controller process of run %s is gone (%s, pid %s)" % (run_id, holder.get("controller"),
                                                                               holder.get("pid"))
        elif p["force"]:
            reason = "forced (model_release_unlock_force=true)"
        else:
            raise Failed("%s is locked by %s, which is not known to have ended; wait for it to finish. If you are "
                         "sure it is gone, run unlock from the controller that ran it, or pass "
                         "-e model_release_unlock_force=true (dangerous: a run that is still going loses its lock)"
                         % (self.where(), describe_holder(holder)), outcome="locked", lock_holder=holder)
        self.break_lock(holder, reason)
        if self.check:
            return self.result(True, "unlocked", lock_holder=holder,
                               diff={"before": {"lock": holder}, "after": {"lock": None}})
        return self.result(True, "unlocked", lock_holder=holder,
                           msg="removed the lock of %s held by %s: %s" % (self.where(), describe_holder(holder),
                                                                          reason))

    def revert(self) -> dict[str, Any]:
        p = self.p
        old = p["old_link"]
        cur = self.node.link("current")
        version, digest12 = split_release(old)
        self.record.update(version=version, digest=digest12, release=os.path.basename(old),
                           previous=os.path.basename(cur))
        if not old or cur == old:
            return self.result(False, "unchanged", previous=cur)
        if self.check:
            return self.result(True, "reverted", previous=cur,
                               diff={"before": {"current": cur}, "after": {"current": old}})
        return self.finished(lambda: self.switch_back_to_old(old, cur, version, digest12))

    def switch_back_to_old(self, old: str, cur: str, version: str, digest12: str) -> dict[str, Any]:
        """A revert's switch back to ``old``, reload and gate."""
        self.node.set_link("current", old)
        self.node.restore_link("previous", self.p["old_previous"])
        error = ""
        try:
            self.record["agent"] = self.reload_agent()
        except ServiceError as exc:
            error = str(exc)
        verdict = self.gate(os.path.basename(old), version, digest12, None)
        self.record["gate"] = verdict
        ok = bool(verdict.get("ok")) and not error
        if ok:
            self.record["rolled_back_at"] = time.time()
        self.journal("revert_on_abort", "reverted" if ok else "revert_unhealthy",
                     error=error or ("" if ok else str(verdict.get("reason"))))
        return self.result(True, "reverted" if ok else "revert_unhealthy", previous=cur,
                           modelfleet_rolled_back=True)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True,
                        choices=["prepare", "deploy", "gate", "recover", "rollback", "revert", "lock_state",
                                 "unlock", "observe"]),
            root=dict(type="path", required=True),
            model=dict(type="str", required=True),
            node=dict(type="str", default=""),
            run_id=dict(type="str", default=""),
            version=dict(type="str", default=""),
            digest=dict(type="str", default=""),
            release=dict(type="str", default=""),
            thresholds_sha256=dict(type="str", default=""),
            environment=dict(type="str"),
            clearance=dict(type="raw"),
            bundle=dict(type="path"),
            python=dict(type="path"),
            public_key=dict(type="path"),
            holder=dict(type="dict", default={}),
            ended_runs=dict(type="list", elements="str", default=[]),
            lock_run_id=dict(type="str", default=""),
            holder_gone=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            needed_bytes=dict(type="int", default=0),
            service_manager=dict(type="str", default="systemd", choices=["systemd", "supervisord"]),
            supervisorctl=dict(type="str", default="supervisorctl"),
            supervisor_conf=dict(type="str", default=""),
            program=dict(type="str"),
            reload=dict(type="bool", default=True),
            reload_method=dict(type="str", default="signal", choices=["signal", "http"]),
            agent_address=dict(type="str", default="127.0.0.1"),
            agent_port=dict(type="int", default=0),
            probe=dict(type="dict", default={}),
            gate_latency_ms=dict(type="float", default=500.0),
            gate_wait_s=dict(type="float", default=16.0),
            gate_backoff_s=dict(type="float", default=0.25),
            gate_max_backoff_s=dict(type="float", default=1.0),
            gate_timeout_s=dict(type="float", default=2.0),
            keep=dict(type="int", default=3),
            old_link=dict(type="str", default=""),
            old_previous=dict(type="str", default=""),
            switched=dict(type="bool", default=False),
            switched_at=dict(type="float"),
            error=dict(type="str", default=""),
            rollback_to=dict(type="str", default="previous"),
            requires=dict(type="dict", default={}),
            node_class=dict(type="str", default="cpu"),
            hardware_check=dict(type="bool", default=True),
        ),
        required_if=[("action", "deploy", ["version", "digest", "release"]),
                     ("action", "gate", ["version", "digest", "release"]),
                     ("action", "prepare", ["release"])],
        supports_check_mode=True,
    )
    step = Step(module)
    actions = {"prepare": step.prepare, "deploy": step.deploy, "gate": step.gate_action, "recover": step.recover,
               "rollback": step.rollback, "revert": step.revert, "lock_state": step.lock_state,
               "unlock": step.unlock_action, "observe": step.observe}
    try:
        result = actions[module.params["action"]]()
    except Failed as exc:
        fields = dict(exc.fields)
        changed = bool(fields.pop("changed", False))
        outcome = fields.pop("outcome", "failed")
        module.fail_json(msg=exc.msg, **step.result(changed, outcome, error=exc.msg, **fields))
    except (ServiceError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (step.where(), exc), **step.result(False, "failed", error=str(exc)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
