"""Recorded runs: provision, deploy and rollback as the CLI and the console start them.

A recorded run writes ``run_start`` to the ledger before ``ansible-playbook`` starts (for a deploy: with the
pinned digest, the bundle and any probe warning), lets the ledger callback record one event per node, and writes
``run_end`` when the run is over, from the runner thread, whoever waits for it. A controller killed mid-run leaves
a ``run_start`` without ``run_end``: the ledger reports that run as incomplete. ::

    recorded = start_deploy(settings, "credit-risk@champion", options, on_event=show)
    result = recorded.wait()          # RunResult; recorded.release is what was pinned and bundled
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelfleet.core.deploy import (
    DeployOptions,
    Release,
    RunOutcome,
    RunRecorder,
    controller_identity,
    dead_runs,
    deploy_extra_vars,
    prepare_release,
    provision_extra_vars,
    release_summary,
    rollback_extra_vars,
)
from modelfleet.runners.ansible import AnsibleRun, EventCallback, RunResult, RunSpec, default_actor, new_run_id

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings


@dataclass
class RecordedRun:
    """A started run with its ledger records. ``release`` is set for deploys."""

    run: AnsibleRun
    kind: str
    release: Release | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def wait(self, timeout: float | None = None) -> RunResult:
        return self.run.wait(timeout)

    def cancel(self) -> None:
        self.run.cancel()


def target_hosts(settings: Settings, inventory: Any, limit: str | None) -> list[str]:
    """Names of the inventory's nodes that ``limit`` selects (raises NodeNotFound for an unknown term)."""
    from modelfleet.core.fleet import Inventory

    inv = Inventory.load(inventory, default_agent_port=settings.fleet.agent_port)
    return [n.name for n in inv.select(limit)]


def _start(
    settings: Settings,
    kind: str,
    spec: RunSpec,
    *,
    run_id: str,
    actor: str | None,
    model: str | None,
    version: str | None,
    digest: str | None,
    details: dict[str, Any],
    on_event: EventCallback | None,
    on_raw_event: Callable[[dict[str, Any]], None] | None,
) -> AnsibleRun:
    from modelfleet.core.ledger import Ledger

    actor = actor or default_actor()
    ledger = Ledger(settings.ledger.url)
    recorder = RunRecorder(ledger, run_id=run_id, kind=kind, actor=actor, target=spec.limit, model=model,
                           version=version, digest=digest)

    def finish(result: RunResult) -> None:
        try:
            recorder.end(RunOutcome(
                status=result.status, rc=result.rc, duration_s=result.duration_s, batches=result.batches,
                hosts={h: st.status.value for h, st in result.hosts.items()}, error=result.error,
            ), check=spec.check)
        finally:
            ledger.close()

    run = AnsibleRun(settings, spec, run_id=run_id, actor=actor, on_event=on_event, on_raw_event=on_raw_event,
                     on_finish=finish, ledger_owner=True)
    if model and kind in ("deploy", "rollback") and not spec.check:
        # runs of this model killed mid-way left their deploy locks on nodes: break them if they are surely dead
        dead, other = dead_runs(ledger, model)
        if dead and not other:
            spec.extra_vars.update(model_release_break_stale_lock=True, model_release_lock_timeout_s=0)
            details = {**details, "breaks_locks_of": dead}
            for dead_id in dead:  # close them, so that later runs do not break locks again
                ledger.mark_incomplete(dead_id, actor=actor,
                                       reason=f"controller process gone; run {run_id} breaks its deploy locks")
    recorder.start(check=spec.check, limit=spec.limit, hosts=len(spec.hosts), playbook=run.playbook.name,
                   artifacts=str(run.artifact_dir), **controller_identity(), **details)
    try:
        run.start()
    except BaseException as exc:
        recorder.end(RunOutcome(status="error", hosts={}, error=str(exc)))
        ledger.close()
        raise
    return run


def start_deploy(
    settings: Settings,
    ref: str | Release,
    options: DeployOptions,
    *,
    actor: str | None = None,
    run_id: str | None = None,
    on_event: EventCallback | None = None,
    on_raw_event: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> RecordedRun:
    """Pin and bundle ``ref`` once (unless a :class:`Release` is given), then start ``playbooks/deploy.yml``."""
    hosts = target_hosts(settings, options.inventory, options.limit)
    release = ref if isinstance(ref, Release) else prepare_release(settings, ref, progress=progress)
    run_id = run_id or new_run_id()
    spec = RunSpec("deploy.yml", options.inventory, extra_vars=deploy_extra_vars(release, options, run_id),
                   limit=options.limit, check=options.check, hosts=hosts, kind="deploy")
    details = {**release_summary(release), "waves": list(options.waves),
               "max_fail_percentage": options.max_fail_percentage, "revert_on_abort": options.revert_on_abort}
    run = _start(settings, "deploy", spec, run_id=run_id, actor=actor, model=release.model,
                 version=release.version, digest=release.digest, details=details, on_event=on_event,
                 on_raw_event=on_raw_event)
    return RecordedRun(run, "deploy", release)


def start_rollback(
    settings: Settings,
    model: str,
    *,
    to: str | None = None,
    limit: str | None = None,
    check: bool = False,
    inventory: Any = None,
    actor: str | None = None,
    run_id: str | None = None,
    on_event: EventCallback | None = None,
    on_raw_event: Callable[[dict[str, Any]], None] | None = None,
) -> RecordedRun:
    """Start ``playbooks/rollback.yml``: ``model`` back to its previous release, or to version ``to``."""
    from modelfleet.core.reference import validate_model_name

    validate_model_name(model)
    inventory = inventory or settings.fleet.inventory
    hosts = target_hosts(settings, inventory, limit)
    run_id = run_id or new_run_id()
    spec = RunSpec("rollback.yml", inventory, extra_vars=rollback_extra_vars(model, to, run_id), limit=limit,
                   check=check, hosts=hosts, kind="rollback")
    run = _start(settings, "rollback", spec, run_id=run_id, actor=actor, model=model, version=to, digest=None,
                 details={"to": to or "previous"}, on_event=on_event, on_raw_event=on_raw_event)
    return RecordedRun(run, "rollback")


def start_provision(
    settings: Settings,
    *,
    limit: str | None = None,
    check: bool = False,
    inventory: Any = None,
    actor: str | None = None,
    run_id: str | None = None,
    on_event: EventCallback | None = None,
    on_raw_event: Callable[[dict[str, Any]], None] | None = None,
) -> RecordedRun:
    """Start ``playbooks/provision.yml`` (the release key is created first: nodes get its public half)."""
    inventory = inventory or settings.fleet.inventory
    hosts = target_hosts(settings, inventory, limit)
    run_id = run_id or new_run_id()
    spec = RunSpec("provision.yml", inventory, extra_vars=provision_extra_vars(settings, run_id), limit=limit,
                   check=check, hosts=hosts, kind="provision")
    run = _start(settings, "provision", spec, run_id=run_id, actor=actor, model=None, version=None, digest=None,
                 details={}, on_event=on_event, on_raw_event=on_raw_event)
    return RecordedRun(run, "provision")


class ConsoleHandle:
    """What :func:`console_launch` returns (the console's RunHandle interface): ``run_id``, ``cancel()``,
    ``wait(timeout) -> bool``, ``done``, ``status``, ``rc``, ``artifact_dir``, ``error``, ``result``."""

    def __init__(self, run_id: str) -> None:
        import threading

        self.run_id = run_id
        self.cancel_requested = threading.Event()
        self.done = threading.Event()
        self.status = "running"
        self.rc: int | None = None
        self.artifact_dir: Any = None
        self.error: str | None = None
        self.result: RunResult | None = None
        self.recorded: RecordedRun | None = None

    def cancel(self) -> None:
        self.cancel_requested.set()
        if self.recorded is not None:
            self.recorded.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


def console_launch(settings: Settings, request: Any, on_event: Callable[[dict[str, Any]], None]) -> ConsoleHandle:
    """Start a run for the console from its run form (``kind``, ``model``, ``model_ref``, ``target``, ``waves``,
    ``max_fail``, ``check``, ``version``); ``on_event`` gets ansible-runner's raw event dicts. Returns at once;
    pinning and bundling happen in the run's own thread."""
    import threading

    handle = ConsoleHandle(new_run_id())
    actor = f"console:{default_actor()}"

    def work() -> None:
        try:
            limit = None if request.target in ("", "all", "edge") else request.target
            if request.kind == "deploy":
                options = DeployOptions.from_settings(settings, limit=limit, waves=request.waves,
                                                      max_fail=request.max_fail, check=request.check)
                recorded = start_deploy(settings, request.model_ref, options, actor=actor, run_id=handle.run_id,
                                        on_raw_event=on_event)
            elif request.kind == "rollback":
                to = None if request.version is None else str(request.version)
                recorded = start_rollback(settings, request.model, to=to, limit=limit, check=request.check,
                                          actor=actor, run_id=handle.run_id, on_raw_event=on_event)
            elif request.kind == "provision":
                recorded = start_provision(settings, limit=limit, check=request.check, actor=actor,
                                           run_id=handle.run_id, on_raw_event=on_event)
            else:
                hosts = target_hosts(settings, settings.fleet.inventory, limit)
                run = AnsibleRun(settings, RunSpec("healthcheck.yml", settings.fleet.inventory, limit=limit,
                                                   hosts=hosts, kind="healthcheck"),
                                 run_id=handle.run_id, actor=actor, on_raw_event=on_event)
                recorded = RecordedRun(run.start(), "healthcheck")
            handle.recorded = recorded
            handle.artifact_dir = recorded.run.artifact_dir
            if handle.cancel_requested.is_set():
                recorded.cancel()
            result = recorded.wait()
            handle.result, handle.status, handle.rc, handle.error = result, result.status, result.rc, result.error
        except Exception as exc:  # shown by the console; never kills its worker
            handle.status, handle.error = "error", str(exc)
        finally:
            handle.done.set()

    threading.Thread(target=work, name=f"console-run-{handle.run_id}", daemon=True).start()
    return handle
