"""Fixed, deterministic console data (same messages as the real workers post) for pilot and snapshot tests."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfleet.console.governance_services import (
    ApprovalRow,
    ApprovalsData,
    BreakGlassMark,
    GateMark,
    VersionGovernance,
    Who,
    _may_decide,
)
from modelfleet.console.infra_services import InfraEnvDetail, InfraEnvInfo, InfraInventory
from modelfleet.console.services import ConsoleServices, RunForm, RunInfo, VersionDetail
from modelfleet.core.approvals import ApprovalState, Signed
from modelfleet.core.config import Settings, load_settings
from modelfleet.core.errors import GovernanceError, ModelfleetError, NodeNotFound, RunError
from modelfleet.core.fleet import Inventory, Node, NodeClass
from modelfleet.core.fleet_status import NodeStatus, Release
from modelfleet.core.governance import RequestView
from modelfleet.core.infra import InfraNode, PlanSummary, ResourceChange, SavedPlan
from modelfleet.core.ledger import Event, VerifyResult, compute_hash
from modelfleet.core.monitor_view import MonitorView
from modelfleet.core.registry import ModelSummary, ModelVersionInfo
from modelfleet.runners.requests import PreparedRun
from modelfleet.runners.runstate import RunState, artifact_status, iter_artifact_events
from modelfleet.runners.terraform import InfraRunResult

NOW = 1_750_000_000.0  # fixed clock: 2025-06-15 15:06:40 UTC
T0 = datetime.fromtimestamp(NOW - 86400 * 3, UTC)


def _node(i: int, cls: NodeClass, env: str) -> Node:
    return Node(name=f"edge-{cls.value}-{i:02d}", address=f"127.0.10.{i}", node_class=cls,
                groups=("edge", cls.group, env))


NODES = [_node(1, NodeClass.CPU, "staging"), _node(2, NodeClass.CPU, "staging"), _node(3, NodeClass.CPU, "production"),
         _node(4, NodeClass.GPU, "production"), _node(5, NodeClass.ARM, "staging"), _node(6, NodeClass.ARM, "staging")]


def statuses() -> list[NodeStatus]:
    def row(n: Node, **kw: Any) -> NodeStatus:
        base: dict[str, Any] = dict(name=n.name, address=n.address, node_class=n.node_class.value,
                                    environment=n.environment, groups=n.groups, model="credit-risk", version="2",
                                    digest="ab12" * 16, uptime_s=3600.0, p50_ms=3.2, p95_ms=8.9, p99_ms=14.1,
                                    requests=12000, errors=3, error_rate=0.00025, rps=41.5, cpu=0.12,
                                    mem_bytes=182 * 2**20, host_mem_ratio=0.41, drift_available=True,
                                    last_seen=NOW - 1, age_s=1.0, probed_at=NOW, state="ok",
                                    history=(8.1, 8.4, 9.0, 8.7, 12.5, 8.9, 8.8, 9.1))
        base.update(kw)
        return NodeStatus(**base)

    return [
        row(NODES[0]),
        row(NODES[1], version="3", digest="cd34" * 16, p95_ms=61.0, p99_ms=120.0, state="slo",
            slo_breaches=("p95", "p99"), reason="over SLO: p95 61.0 > 50 ms, p99 120.0 > 100 ms"),
        row(NODES[2]),
        row(NODES[3], p50_ms=1.1, p95_ms=2.4, p99_ms=3.9, cpu=0.31),
        row(NODES[4], state="unreachable", reason="connection refused", last_seen=NOW - 12, age_s=12.0, rps=None,
            cpu=None),
        row(NODES[5], state="stale", reason="timed out", last_seen=NOW - 300, age_s=300.0, rps=None, cpu=None),
    ]


def _metrics(auc: float, acc: float) -> dict[str, float]:
    return {"auc": auc, "accuracy": acc, "log_loss": 0.41}


VERSIONS = [
    ModelVersionInfo("credit-risk", v, aliases, {"modelfleet.demo": f"v{v}"}, f"run{v:04d}", _metrics(auc, acc),
                     {"learner": learner, "max_depth": str(v + 2)}, T0.replace(hour=v), f"models:/m-{v}", "READY",
                     "")
    for v, aliases, auc, acc, learner in (
        (3, ("champion",), 0.912, 0.874, "gbm"), (2, ("challenger",), 0.897, 0.861, "forest"),
        (1, (), 0.861, 0.833, "logistic"))
]
MODELS = [ModelSummary("credit-risk", "Demo credit default classifier", 3, {"champion": 3, "challenger": 2},
                       {"modelfleet.demo": "credit-risk"}, T0, T0.replace(hour=5)),
          ModelSummary("fraud-score", "", 1, {}, {}, T0, T0)]


def events() -> list[Event]:
    out: list[Event] = []
    prev = "0" * 64
    specs = [
        ("ops", "run_start", "credit-risk", "2", None, "r1", "started", {"kind": "deploy"}),
        ("ansible", "node_deploy", "credit-risk", "2", "edge-cpu-01", "r1", "changed", {}),
        ("ansible", "node_deploy", "credit-risk", "2", "edge-cpu-02", "r1", "changed", {}),
        ("ansible", "node_deploy", "credit-risk", "2", "edge-cpu-03", "r1", "changed", {}),
        ("ops", "run_end", "credit-risk", "2", None, "r1", "ok", {"kind": "deploy"}),
        ("ops", "approve", "credit-risk", "3", None, None, "approved", {"role": "qa"}),
    ]
    for i, (actor, action, model, version, node, run, outcome, details) in enumerate(specs, start=1):
        rec: dict[str, Any] = {"seq": i, "ts": f"2025-06-1{i % 9}T10:00:00.000000Z", "actor": actor,
                               "action": action, "model": model, "version": version, "digest": None,
                               "target": "edge", "node": node, "run_id": run, "outcome": outcome,
                               "details": details, "prev_hash": prev}
        rec["hash"] = compute_hash(rec)
        prev = rec["hash"]
        out.append(Event(i, datetime(2025, 6, 10 + i, 10, 0, tzinfo=UTC), actor, action, model, version, None,
                         "edge", node, run, outcome, details, rec["prev_hash"], rec["hash"]))
    return out


def runner_events(hosts: list[str], *, fail: str | None = None) -> list[dict[str, Any]]:
    """A plausible ansible-runner event stream for a run over ``hosts``."""
    evs: list[dict[str, Any]] = [{"event": "playbook_on_start", "counter": 1, "stdout": ""}]
    c = 1
    for h in hosts:
        c += 1
        evs.append({"event": "playbook_on_play_start", "counter": c, "stdout": "\nPLAY [Check every agent] ****",
                    "event_data": {"play": "Check every agent", "play_uuid": "p1"}})
        for task in ("Agent answers /health", "Version is the expected one"):
            c += 1
            evs.append({"event": "playbook_on_task_start", "counter": c, "stdout": f"\nTASK [{task}] ****",
                        "event_data": {"task": task}})
            c += 1
            failed = h == fail and task.startswith("Version")
            evs.append({"event": "runner_on_failed" if failed else "runner_on_ok", "counter": c,
                        "stdout": f"{'fatal' if failed else 'ok'}: [{h}]",
                        "event_data": {"host": h, "task": task,
                                       "res": {"changed": False, "msg": "wrong version" if failed else "All good"}}})
    c += 1
    stats = {"ok": {h: 2 for h in hosts}, "failures": {fail: 1} if fail else {}, "changed": {}, "dark": {}}
    evs.append({"event": "playbook_on_stats", "counter": c, "stdout": "\nPLAY RECAP ****", "event_data": stats})
    return evs


ARM_NODE = 'terraform_data.node["edge-arm-01"]'
CPU_NODE = 'terraform_data.node["edge-cpu-01"]'
LOCAL_PLAN = PlanSummary((ResourceChange(ARM_NODE, "create", "terraform_data"),))


def saved_plan(env: str, run_id: str, summary: PlanSummary, *, destroy: bool = False) -> SavedPlan:
    return SavedPlan(env=env, run_id=run_id, plan_file=f"/state/runs/{run_id}/plan.tfplan",
                     digest="sha256:" + "ab" * 32,
                     engine={"kind": "binary", "name": "terraform", "path": "/usr/local/bin/terraform",
                             "label": "terraform (/usr/local/bin/terraform)"},
                     config_digest="sha256:" + "cd" * 32, destroy=destroy, created="2025-06-15T14:00:00+00:00",
                     actor="console:ops", summary=summary.to_dict())


def infra_nodes(*names: str) -> tuple[InfraNode, ...]:
    out = []
    for name in names:
        cls = NodeClass.ARM if "arm" in name else NodeClass.CPU
        out.append(InfraNode(name, f"127.0.10.{161 if cls is NodeClass.ARM else 1}", cls,
                             "aarch64" if cls is NodeClass.ARM else "x86_64", "staging", "ops", 2222))
    return tuple(out)


def infra_records(kind: str, changes: tuple[ResourceChange, ...]) -> list[dict[str, Any]]:
    """A plausible stream of a Terraform run's raw records (``{"step", "line"}``, as events.jsonl keeps them)."""
    step = "apply" if kind == "infra_apply" else "plan"
    out: list[dict[str, Any]] = [{"step": step, "line": {"type": "version", "@message": "Terraform 1.9.8"}}]
    for c in changes:
        resource = {"addr": c.address}
        if step == "plan":
            out.append({"step": step, "line": {"type": "planned_change", "@message": f"{c.address}: Plan to {c.action}",
                                               "change": {"resource": resource, "action": c.action}}})
        else:
            for phase in ("start", "complete"):
                out.append({"step": step, "line": {"type": f"apply_{phase}",
                                                   "@message": f"{c.address}: {phase}",
                                                   "hook": {"resource": resource, "action": c.action}}})
    adds = sum(1 for c in changes if c.action == "create")
    removes = sum(1 for c in changes if c.action == "delete")
    out.append({"step": step, "line": {"type": "change_summary", "@message": f"{step}: {adds} to add",
                                       "changes": {"operation": step, "add": adds, "change": 0, "remove": removes}}})
    return out


def _request(rid: str, version: int, env: str, seq: int, reason: str) -> Signed:
    return Signed({"format": "modelfleet-approval-request/1", "id": rid, "model": "credit-risk",
                   "version": str(version), "digest": f"{version:02d}" * 32, "environment": env,
                   "thresholds_sha256": None, "reason": reason, "by": "dana", "key_id": "da" * 8,
                   "issued_at": f"2025-06-1{seq}T09:00:00Z"}, "sig")


def _decision(rid: str, version: int, by: str, decision: str, reason: str = "") -> Signed:
    return Signed({"format": "modelfleet-approval/1", "request_id": rid, "model": "credit-risk",
                   "version": str(version), "digest": f"{version:02d}" * 32, "environment": "prod",
                   "thresholds_sha256": None, "decision": decision, "reason": reason, "by": by, "key_id": "ab" * 8,
                   "issued_at": "2025-06-15T10:00:00Z", "expires_at": "2025-06-16T10:00:00Z",
                   "gate": {"verdict": "passed"}}, "sig")


def request_views(decided: dict[str, list[Signed]] | None = None) -> list[RequestView]:
    """Three prod requests by dana: v3 (quinn approved as QA), v2 (gate failed), v1 (rejected by sam)."""
    decided = decided or {}
    specs = [("3a7c19e2", 3, 7, "quarterly retrain", [_decision("3a7c19e2", 3, "quinn", "approve")]),
             ("b2e4d6f8", 2, 8, "fairer thresholds", []),
             ("c0ffee01", 1, 6, "rollback candidate", [_decision("c0ffee01", 1, "sam", "reject", "too old")])]
    out = []
    for rid, version, seq, reason, decisions in specs:
        mine = tuple(decisions + decided.get(rid, []))
        approvers = {(d.record["by"], "qa" if d.record["by"] == "quinn" else "manager") for d in mine
                     if d.record["decision"] == "approve"}
        rejected = next((d.record["by"] for d in mine if d.record["decision"] == "reject"), None)
        missing = tuple(r for r in ("manager", "qa") if r not in {role for _, role in approvers})
        state = ApprovalState(not missing and rejected is None, tuple(sorted(approvers)), missing, (), rejected,
                              datetime(2025, 6, 16, 10, tzinfo=UTC) if approvers else None)
        status = "rejected" if rejected else "approved" if not missing else "pending"
        out.append(RequestView(_request(rid, version, "prod", seq, reason), seq, mine, state, status))
    return out


GATE_FAILED = "the gate failed for credit-risk/2 (020202020202) for prod (ledger #8: Equal opportunity (FPR gap))"


AGENT_LOG = [f"2025-06-15T15:0{i}:00+0000 INFO modelfleet.agent: {what}" for i, what in enumerate((
    "serving credit-risk version 2 (ab12ab12ab12) from releases/2-ab12ab12ab12 after start: ok",
    "GET /health 200", "POST /invocations 200 (2 rows)", "WARNING slow request: 61.0 ms", "GET /metrics 200"))]


class FakeLogStream:
    """A log stream like runners.node_ssh.LogStream: fixed lines, then (``follow``) more as ``push`` adds them,
    until closed. ``cmd`` is what the real one would run."""

    def __init__(self, node: str, lines: list[str], *, error: ModelfleetError | None = None) -> None:
        self.node = node
        self.cmd = ["ssh", node, "tail -n 200 -F ..."]
        self.closed = False
        self._lines: list[str] = list(lines)
        self._more = threading.Condition()
        self._error = error

    def push(self, line: str) -> None:
        with self._more:
            self._lines.append(line)
            self._more.notify_all()

    def __iter__(self) -> Iterator[str]:
        i = 0
        while True:
            with self._more:
                waited = 0
                while i >= len(self._lines) and not self.closed and self._error is None:
                    if waited > 200:  # (10 s: a test that failed before closing it must not hang the run)
                        return
                    self._more.wait(0.05)
                    waited += 1
                if self.closed or (self._error is not None and i >= len(self._lines)):
                    return
                line = self._lines[i]
            i += 1
            yield line

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def close(self) -> None:
        with self._more:
            self.closed = True
            self._more.notify_all()

    def error(self) -> ModelfleetError | None:
        return self._error


class FakeServices(ConsoleServices):
    """Fixed data, a fixed clock, and a launcher that plays runner events (optionally gated by an Event)."""

    def __init__(self, settings: Settings | None = None, *, gate: threading.Event | None = None,
                 fail_host: str | None = None, artifacts: Path | None = None) -> None:
        super().__init__(settings or load_settings(env={}, cwd=Path("/nonexistent-mf")), clock=lambda: NOW)
        self.gate = gate
        self.fail_host = fail_host
        self.launched: list[RunForm] = []
        self.prepared: list[PreparedRun] = []
        self.artifacts = artifacts
        self.canceled = threading.Event()
        self.saved_plans: dict[str, SavedPlan] = {"local": saved_plan("local", "20250615T140000Z-cccccc", LOCAL_PLAN)}
        self.in_state: dict[str, list[str]] = {"local": [CPU_NODE], "aws": []}
        self.decided: dict[str, list[Signed]] = {}
        self.who_am_i = Who("mona", ("manager",))
        self.extra_events: list[Event] = []  # appended to the ledger (tests of following it)
        self.streams: list[FakeLogStream] = []
        self.log_error: ModelfleetError | None = None
        self.shell = ["sh", "-c", "exit 0"]  # what `s` runs instead of ssh (tmux_app.py: a real shell)

    def context(self) -> dict[str, str]:
        return {"registry": "sqlite:///.modelfleet/mlflow.db", "inventory": ".modelfleet/sim/inventory.yml",
                "ledger": "sqlite:///.modelfleet/ledger.db"}

    def models(self) -> list[Any]:
        return list(MODELS)

    def versions(self, model: str) -> list[Any]:
        return list(VERSIONS) if model == "credit-risk" else []

    def version_detail(self, model: str, version: int) -> VersionDetail:
        return VersionDetail(digest=f"{version:02d}" * 32, digest_source="fixed",
                             signature={"inputs": [{"name": "income", "type": "double"}],
                                        "outputs": [{"type": "long"}]})

    def pin(self, model: str, ref: str | None) -> tuple[int, str]:
        version = int(ref) if ref and ref.isdigit() else 3
        return version, f"{version:02d}" * 32

    def inventory(self) -> Inventory:
        groups: dict[str, list[str]] = {"edge": [n.name for n in NODES]}
        for n in NODES:
            for g in n.groups:
                groups.setdefault(g, [])
                if n.name not in groups[g]:
                    groups[g].append(n.name)
        return Inventory(NODES, groups)

    def probe(self) -> list[NodeStatus]:
        return statuses()

    def monitor(self) -> MonitorView:
        """A monitoring pass computed by the real core code from synthetic counts (tests/console/monitor_data.py)."""
        from tests.console.monitor_data import monitor_view

        return monitor_view()

    def releases(self, node_name: str) -> list[Release] | None:
        if node_name not in {n.name for n in NODES}:
            raise NodeNotFound(node_name)
        return [Release("credit-risk", "1-aaaaaaaaaaaa", previous=True), Release("credit-risk", "2-bbbbbbbbbbbb",
                                                                                  current=True)]

    def ledger_events(self, filters: Mapping[str, str | None] | None = None, limit: int = 500) -> list[Any]:
        f = {k: v for k, v in (filters or {}).items() if v}
        return [e for e in [*events(), *self.extra_events] if all(getattr(e, k) == v for k, v in f.items())][-limit:]

    def ledger_verify(self) -> Any:
        return VerifyResult(True, 6, head_hash=events()[-1].hash)

    def placement_events(self, model: str) -> list[Any]:
        return [e for e in events() if e.model == model]

    def runs(self, limit: int = 200) -> list[RunInfo]:
        out = [RunInfo("20250614T100000Z-aaaaaa", "deploy", NOW - 86400, "ok", "credit-risk", "2", "edge", "ops")]
        if self.artifacts is not None:
            out.insert(0, RunInfo("20250615T090000Z-bbbbbb", "healthcheck", NOW - 3600, "failed", None, None,
                                  "edge", "ops", replayable=True))
        return out

    def replay(self, run: RunInfo) -> RunState:
        """The pipeline's replay, over the artifact folder this fake was given."""
        assert self.artifacts is not None
        state = RunState(run.run_id, kind=run.kind)
        for raw in iter_artifact_events(self.artifacts):
            state.feed(raw)
        status, rc = artifact_status(self.artifacts)
        state.finish(status, rc)
        return state

    def agent_log(self, node: str, model: str | None, *, lines: int = 200, follow: bool = True) -> Any:
        self.inventory().node(node)  # NodeNotFound as the real one
        stream = FakeLogStream(node, AGENT_LOG[-lines:], error=self.log_error)
        self.streams.append(stream)
        return stream

    def shell_command(self, node: str) -> list[str]:
        self.inventory().node(node)
        return list(self.shell)

    def new_run_id(self) -> str:
        return f"20250615T150640Z-{len(self.prepared):06d}"

    def prepare(self, form: RunForm, *, progress: Callable[[str], None] | None = None) -> PreparedRun:
        """What the pipeline's prepare returns, from fixed data: the target resolved, a deploy pinned."""
        form.validate()
        if form.kind == "deploy" and form.version is None and form.model:
            version, digest = self.pin(form.model, form.ref)
            form = RunForm(form.kind, model=form.model, ref=form.ref, target=form.target, waves=form.waves,
                           max_fail=form.max_fail, check=form.check, version=version, digest=digest)
        prepared = PreparedRun(request=form.to_request(self.actor), run_id=self.new_run_id(), kind=form.kind,
                               summary=f"{form.kind} on {form.target}", hosts=tuple(self.resolve_target(form.target)),
                               inventory=Path("inventory.yml"), playbook=f"{form.kind}.yml", extra_vars={},
                               model=form.model, version=None if form.version is None else str(form.version),
                               digest=form.digest)
        self.check_governance(prepared)  # the pipeline's prepare refuses an ungoverned deploy
        self.prepared.append(prepared)
        self._forms = {**getattr(self, "_forms", {}), prepared.run_id: form}
        return prepared

    def launch(self, prepared: PreparedRun, on_event: Callable[[dict[str, Any]], None]) -> PlayedRun:  # type: ignore[override]
        if prepared.executor == "terraform":
            played = PlayedRun([], on_event, gate=self.gate, fail=None, canceled=self.canceled,
                               events=self._play_infra(prepared))
            played.prepared = prepared  # as a RunHandle has it
            return played
        self.launched.append(self._forms[prepared.run_id])
        return PlayedRun(list(prepared.hosts), on_event, gate=self.gate, fail=self.fail_host, canceled=self.canceled)

    # -- infrastructure: two environments, `local` with a saved plan that adds a node --------------------------
    def infra_envs(self) -> list[InfraEnvInfo]:
        return [InfraEnvInfo("aws", Path("terraform/envs/aws"), "s3", False),
                InfraEnvInfo("local", Path("terraform/envs/local"), "local", True, self.saved_plans.get("local"))]

    def infra_detail(self, env_name: str) -> InfraEnvDetail:
        if env_name != "local":
            return InfraEnvDetail(env_name, problem="never initialised here: plan it first (p)")
        names = tuple(a.split('"')[1] for a in self.in_state["local"])
        return InfraEnvDetail("local", tuple(self.in_state["local"]),
                              {"connection": "modelfleet-sim", "nodes": [n.to_dict() for n in infra_nodes(*names)]},
                              infra_nodes(*names))

    def prepare_infra(self, action: str, env: str) -> PreparedRun:
        from modelfleet.runners.terraform import InfraApplyRequest, InfraPlanRequest

        run_id = self.new_run_id()
        details: dict[str, Any] = {"origin": "console", "env": env, "engine": "terraform (/usr/local/bin/terraform)"}
        if action == "apply":
            saved = self.saved_plans.get(env)
            if saved is None or saved.applied_by:
                raise RunError(f"environment {env} has no saved plan to apply",
                               hint=f"make a new plan: modelfleet infra plan --env {env}")
            request: Any = InfraApplyRequest(env, actor=self.actor, origin="console")
            details.update(plan_digest=saved.digest, plan=saved.summary)
            summary = f"apply the saved plan of {env} ({saved.plan_summary.line()})"
        else:
            request = InfraPlanRequest(env, destroy=action == "destroy", actor=self.actor, origin="console")
            summary = f"{'destroy plan' if action == 'destroy' else 'plan'} of {env} (terraform)"
        prepared = PreparedRun(request=request, run_id=run_id, kind=request.kind, summary=summary, hosts=(),
                               inventory=Path(), playbook="", extra_vars={}, details=details, executor="terraform")
        self.prepared.append(prepared)
        return prepared

    def _play_infra(self, prepared: PreparedRun) -> tuple[list[dict[str, Any]], InfraRunResult]:
        """What a Terraform run of ``prepared`` prints, and its result; the fake's environment changes as a real
        one would (a plan is saved, an apply creates or destroys what its plan said)."""
        env = str(prepared.details["env"])
        destroy = bool(getattr(prepared.request, "destroy", False))
        if prepared.kind == "infra_apply":
            saved = self.saved_plans[env]
            changes = saved.plan_summary.changes
            self.saved_plans[env] = dataclasses.replace(saved, applied_by=prepared.run_id)
            for c in changes:
                (self.in_state[env].append if c.action == "create" else self.in_state[env].remove)(c.address)
            plan = saved.plan_summary
        else:
            changes = (tuple(ResourceChange(a, "delete", "terraform_data") for a in self.in_state[env]) if destroy
                       else tuple(ResourceChange(a, "create", "terraform_data")
                                  for a in (CPU_NODE, ARM_NODE) if a not in self.in_state[env]))
            plan = PlanSummary(changes, destroy=destroy)
            self.saved_plans[env] = saved_plan(env, prepared.run_id, plan, destroy=destroy)
        result = InfraRunResult(status="successful", rc=0, started=datetime(2025, 6, 15, tzinfo=UTC),
                                ended=datetime(2025, 6, 15, tzinfo=UTC), artifact_dir=Path("/state/runs"),
                                run_id=prepared.run_id, kind=prepared.kind, env=env, plan=plan)
        return infra_records(prepared.kind, changes), result

    def infra_inventory(self, env: str) -> InfraInventory:
        names = tuple(a.split('"')[1] for a in self.in_state[env])
        fleet = {n.name for n in NODES}
        return InfraInventory(env, Path(f".modelfleet/infra/{env}/inventory.yml"), names,
                              Path(".modelfleet/sim/inventory.yml"), tuple(n for n in names if n not in fleet))

    # -- governance: mona (manager) looks at three prod requests -------------------------------------------------
    def approvals(self) -> ApprovalsData:
        rows = []
        for view in sorted(request_views(self.decided), key=lambda v: (v.status != "pending", -v.seq)):
            may, you = _may_decide(self.who_am_i, view, ("manager", "qa"))
            rows.append(ApprovalRow(view, GATE_FAILED if view.id == "b2e4d6f8" else None, may, you))
        return ApprovalsData(self.who_am_i, tuple(rows), {"prod": ("manager", "qa")})

    def decide(self, request_id: str, decision: str, reason: str) -> RequestView:
        if request_id == "b2e4d6f8" and decision == "approve":
            raise GovernanceError(f"cannot approve request {request_id}: {GATE_FAILED}",
                                  hint="approvals attest a passed gate; run the gate first")
        view = next(v for v in request_views(self.decided) if v.id == request_id)
        version = int(view.subject.version)
        self.decided.setdefault(request_id, []).append(_decision(request_id, version, "mona", decision, reason))
        return next(v for v in request_views(self.decided) if v.id == request_id)

    def version_governance(self, model: str, versions: list[ModelVersionInfo]) -> dict[str, VersionGovernance]:
        if model != "credit-risk":
            return {}
        when = datetime(2025, 6, 12, 10, tzinfo=UTC)
        return {
            "3": VersionGovernance((GateMark("prod", "passed", 7, when), GateMark("staging", "passed", 9, when)),
                                   {"prod": "pending"}),
            "2": VersionGovernance((GateMark("prod", "failed", 8, when, ("Equal opportunity (FPR gap)",)),),
                                   break_glass=(BreakGlassMark("prod", "omar", "fraud spike: roll now", 10, when),)),
        }

    def check_governance(self, prepared: PreparedRun) -> None:
        """As the pipeline's governance check (runners/deploy_governance.py), on fixed data: a deploy that reaches
        a production node lacks its approvals."""
        if prepared.kind == "deploy" and not prepared.check and any(
                n.environment == "production" for n in NODES if n.name in prepared.hosts):
            raise GovernanceError(
                f"deploy of credit-risk/{prepared.version} refused",
                missing=("production: request 3a7c19e2 still needs approval by manager (modelfleet approve 3a7c19e2)",
                         "production: no gate verdict for credit-risk/3 (run: modelfleet gate credit-risk/3 --env "
                         "production)"),
                hint="fix each missing piece, or an ops person may --break-glass \"reason\"")


class PlayedRun:
    """Plays a fixed runner event stream like a run handle does (``wait`` -> result, ``cancel``)."""

    def __init__(self, hosts: list[str], on_event: Callable[[dict[str, Any]], None], *,
                 gate: threading.Event | None, fail: str | None, canceled: threading.Event,
                 events: tuple[list[dict[str, Any]], InfraRunResult] | None = None) -> None:
        self.status, self.rc, self.problem = "running", None, None
        self.executor_result = events[1] if events else None
        self.prepared: PreparedRun | None = None
        self.held = False
        self._cancel = threading.Event()
        self._done = threading.Event()
        fail = fail if fail in hosts else None  # only the named host fails: a run without it succeeds

        def play() -> None:
            evs = events[0] if events else runner_events(hosts, fail=fail)
            for i, ev in enumerate(evs):
                if gate is not None and i == len(evs) // 2:
                    while not gate.wait(0.05):
                        if self._cancel.is_set():
                            canceled.set()
                            self.status, self.problem = "canceled", "cancelled"
                            self._done.set()
                            return
                on_event(ev)
            self.status, self.rc = ("failed", 2) if fail else ("successful", 0)
            self._done.set()

        threading.Thread(target=play, daemon=True).start()

    def hold(self) -> None:
        self.held = True

    def resume(self) -> None:
        self.held = False

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> PlayedRun:
        self._done.wait(timeout)
        return self
