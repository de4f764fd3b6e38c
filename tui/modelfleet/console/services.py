"""The console's only door to the world: registry, inventory, agents, ledger and runs, all through ``core/``
and ``runners/``. Every method here may block; the app calls them from worker threads only.

Headless on purpose (no Textual import): tests and the benchmark swap in another :class:`ConsoleServices`
(fixed data for snapshots, a synthetic 1,000-version registry for the bench) without touching the screens.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.console.governance_services import GovernanceServices
from modelfleet.console.infra_services import InfraServices
from modelfleet.core.errors import ModelfleetError, RunError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.fleet import Inventory, Node
    from modelfleet.core.fleet_status import FleetProber, NodeStatus, Release
    from modelfleet.core.monitor_view import MonitorPass, MonitorView
    from modelfleet.core.notable import Notable
    from modelfleet.core.probe_worker import MonitorWorker, ProbeWorker
    from modelfleet.runners import requests as rq
    from modelfleet.runners.infra_state import InfraState
    from modelfleet.runners.node_ssh import LogStream
    from modelfleet.runners.pipeline import RunHandle
    from modelfleet.runners.requests import PreparedRun
    from modelfleet.runners.runstate import RunState

RUN_KINDS = ("deploy", "rollback", "healthcheck", "provision")
PLAYBOOKS = {"deploy": "deploy.yml", "rollback": "rollback.yml", "healthcheck": "healthcheck.yml",
             "provision": "provision.yml"}
CLI_VERBS = {"deploy": "deploy", "rollback": "rollback", "healthcheck": "health", "provision": "provision"}
NEEDS_MODEL = ("deploy", "rollback")
RUN_ID_PLACEHOLDER = "<run id>"


def _public_key(settings: Settings | None) -> Path:
    if settings is None:
        return Path("<release public key>")
    from modelfleet.core.signing import key_paths

    return key_paths(settings.state_dir)[1]


@dataclass(frozen=True)
class RunForm:
    """What the run form holds. ``version``/``digest`` are filled in by pinning for the preview; launching turns
    the form into the pipeline's typed request (:meth:`to_request`)."""

    kind: str
    model: str | None = None
    ref: str | None = None  # version or alias as typed: "7", "champion", "latest"
    target: str = "edge"  # inventory group(s) or an Ansible --limit
    waves: str = "1,25%,100%"
    max_fail: int = 20
    check: bool = False
    version: int | None = None
    digest: str | None = None

    @property
    def model_ref(self) -> str | None:
        if not self.model:
            return None
        if self.version is not None:
            return f"{self.model}/{self.version}"
        if not self.ref:
            return f"{self.model}@champion"
        return f"{self.model}/{self.ref}" if self.ref.isdigit() else f"{self.model}@{self.ref}"

    def validate(self) -> None:
        if self.kind not in RUN_KINDS:
            raise UsageError(f"unknown run kind {self.kind!r}; one of {', '.join(RUN_KINDS)}")
        if self.kind in NEEDS_MODEL and not self.model:
            raise UsageError(f"a {self.kind} needs a model", hint="type a registered model's name (:models lists them)")
        if not self.target.strip():
            raise UsageError("no target", hint="name a group (edge, edge_cpu, staging) or nodes")
        if not 0 <= self.max_fail <= 100:
            raise UsageError(f"failure budget {self.max_fail} must be 0-100 (% of hosts per wave)")
        from modelfleet.core.config import parse_waves

        parse_waves(self.waves, origin="waves")

    def to_request(self, actor: str) -> rq.RunRequest:
        """The run pipeline's request for this form (``runners/requests.py``)."""
        from modelfleet.runners import requests as rq

        common: dict[str, Any] = {"limit": self.target or None, "check": self.check, "actor": actor,
                                  "origin": "console"}
        if self.kind == "deploy":
            ref = f"{self.model}/{self.version}" if self.version is not None else (self.model_ref or "")
            return rq.DeployRequest(ref=ref, waves=self.waves, max_fail=self.max_fail, expect_digest=self.digest,
                                    **common)
        if self.kind == "rollback":
            return rq.RollbackRequest(model=self.model or "", to=None if self.version is None else str(self.version),
                                      **common)
        if self.kind == "provision":
            return rq.ProvisionRequest(**common)
        return rq.HealthCheckRequest(**common)

    def cli_command(self) -> list[str]:
        """The equivalent ``modelfleet`` command line (flags as ``commands/deploy.py`` parses them)."""
        cmd = ["modelfleet", CLI_VERBS[self.kind]]
        if self.kind == "deploy":
            cmd.append(self.model_ref or "MODEL")  # (a placeholder in capitals, as in --help: never a value)
        elif self.kind == "rollback":
            cmd.append(self.model or "MODEL")
            if self.version is not None:
                cmd += ["--to", str(self.version)]
        cmd += ["--limit", self.target]
        if self.kind == "deploy":
            cmd += ["--waves", self.waves, "--max-fail", str(self.max_fail)]
        if self.kind != "healthcheck":  # `modelfleet health` only reads /health: no check mode, nothing to confirm
            if self.check:
                cmd.append("--check")
            cmd.append("--yes")
        return cmd

    def extravars(self, settings: Settings | None = None, run_id: str = RUN_ID_PLACEHOLDER) -> dict[str, Any]:
        """The playbook's extra variables, built by the same ``core.deploy`` functions the launch uses; what is
        only known at launch (bundle, its checksum, the run id, an unpinned version) is a ``<placeholder>``."""
        from modelfleet.core import deploy as d
        from modelfleet.core.config import parse_waves

        if self.kind == "deploy":
            release = d.Release(
                ref=self.model_ref or "", model=self.model or "<model>",
                version=str(self.version) if self.version is not None else "<pinned at launch>",
                digest=self.digest or "<pinned at launch>", bundle=Path("<signed bundle built at launch>"),
                bundle_sha256="<bundle sha256>", public_key=_public_key(settings), probe_source="none")
            try:
                waves: list[int | str] = parse_waves(self.waves)
            except ModelfleetError:
                waves = [self.waves]
            options = d.DeployOptions(inventory=Path("-"), limit=self.target or None, waves=waves,
                                      max_fail_percentage=self.max_fail, check=self.check,
                                      keep_releases=settings.deploy.keep_releases if settings else 3)
            return d.deploy_extra_vars(release, options, run_id)
        if self.kind == "rollback":
            to = str(self.version) if self.version is not None else None
            return d.rollback_extra_vars(self.model or "<model>", to, run_id)
        if self.kind == "provision":  # d.provision_extra_vars would create the signing key: same keys, no side effect
            state = str(settings.state_dir) if settings else "<state dir>"
            return {"modelfleet_state_dir": state, "modelfleet_release_public_key": str(_public_key(settings)),
                    "modelfleet_run_id": run_id}
        return {"modelfleet_run_id": run_id}  # as runners.requests.HealthCheckRequest

    def playbook_command(self, inventory: str, settings: Settings | None = None,
                         playbook_dir: str = "playbooks") -> list[str]:
        """The equivalent plain ``ansible-playbook`` command line, shaped as the runner's own
        (``AnsibleRun.command()``): inventory, playbook, ``--limit``, ``--check``, one JSON ``-e``."""
        import json

        cmd = ["ansible-playbook", "-i", inventory, f"{playbook_dir}/{PLAYBOOKS[self.kind]}"]
        if self.target:
            cmd += ["--limit", self.target]
        if self.check:
            cmd.append("--check")
        cmd += ["-e", json.dumps(self.extravars(settings), sort_keys=True)]
        return cmd

    @staticmethod
    def shell(cmd: list[str]) -> str:
        return shlex.join(cmd)


@dataclass
class RunInfo:
    """A past or running run, from the ledger and/or its folder under ``<state_dir>/runs/``."""

    run_id: str
    kind: str
    started: float | None
    outcome: str  # ok | failed | incomplete | running, as the ledger's run_end says it
    model: str | None = None
    version: str | None = None
    target: str | None = None
    actor: str | None = None
    replayable: bool = False


@dataclass
class VersionDetail:
    digest: str | None = None
    digest_source: str = ""
    signature: dict[str, Any] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ConsoleServices(InfraServices, GovernanceServices):
    """Real services on the configured registry, inventory, agents and ledger."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 probe_process: bool | None = None) -> None:
        self.settings = settings
        self.clock = clock
        # The fleet probe runs in a child process (core/probe_worker.py) unless a clock is injected (it cannot
        # follow the probe there): then in the calling thread, as probe_process=False asks.
        self.probe_process = clock is time.time if probe_process is None else probe_process
        self._registry: Any = None
        self._ledger: Any = None
        self._prober: FleetProber | None = None
        self._probe_worker: ProbeWorker | None = None
        self._monitor_worker: MonitorWorker | None = None
        self._monitor_pass: MonitorPass | None = None  # (when probe_process is off: passes in the calling thread)
        self._inventory: tuple[float, Inventory] | None = None
        self._lock = threading.Lock()

    # -- context -------------------------------------------------------------------------------------------
    def context(self) -> dict[str, str]:
        s = self.settings
        return {"registry": _short_uri(s.effective_registry_uri), "inventory": _short_path(s.fleet.inventory),
                "ledger": _short_uri(s.ledger.url)}

    @property
    def actor(self) -> str:
        import getpass

        try:
            return f"console:{getpass.getuser()}"
        except Exception:
            return "console"

    # -- registry ------------------------------------------------------------------------------------------
    @property
    def registry(self) -> Any:
        with self._lock:
            if self._registry is None:
                from modelfleet.core.registry import Registry

                self._registry = Registry.from_settings(self.settings)
            return self._registry

    def models(self) -> list[Any]:
        return list(self.registry.list_models())

    def versions(self, model: str) -> list[Any]:
        return list(self.registry.list_versions(model))

    def version_detail(self, model: str, version: int) -> VersionDetail:
        """Digest and signature of a version: from the artifact cache (downloaded once, content-addressed)."""
        try:
            pinned = self.registry.pin(f"{model}/{version}")
        except ModelfleetError as exc:
            return VersionDetail(error=exc.message)
        signature = None
        try:
            from modelfleet.core.registry import read_signature

            signature = read_signature(Path(pinned.path))
        except Exception as exc:  # a missing MLmodel must not break the pane
            signature = {"error": str(exc)}
        return VersionDetail(digest=pinned.digest, digest_source="artifact cache (sha256 of the tree)",
                             signature=signature)

    def new_run_id(self) -> str:
        from modelfleet.runners.ansible import new_run_id

        return str(new_run_id())

    def pin(self, model: str, ref: str | None) -> tuple[int, str]:
        req = RunForm("deploy", model=model, ref=ref)
        pinned = self.registry.pin(req.model_ref or model)
        return int(pinned.version), str(pinned.digest)

    # -- fleet ---------------------------------------------------------------------------------------------
    def inventory(self) -> Inventory:
        from modelfleet.core.fleet import Inventory

        path = Path(self.settings.fleet.inventory)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        with self._lock:
            if self._inventory is None or self._inventory[0] != mtime:
                self._inventory = (mtime, Inventory.load(path, default_agent_port=self.settings.fleet.agent_port))
            return self._inventory[1]

    def nodes(self) -> list[Node]:
        return self.inventory().nodes

    @property
    def prober(self) -> FleetProber:
        if self._prober is None:
            from modelfleet.core.fleet_status import FleetProber

            self._prober = FleetProber.from_settings(self.settings, clock=self.clock)
        return self._prober

    def probe(self) -> list[NodeStatus]:
        """Probe the inventory's agents (blocking: the console calls it from a worker thread)."""
        if not self.probe_process:
            return self.prober.probe_sync(self.nodes())
        with self._lock:
            if self._probe_worker is None:
                from modelfleet.core.probe_worker import ProbeWorker

                self._probe_worker = ProbeWorker(self.settings)
            worker = self._probe_worker
        return worker.probe(self.nodes())

    def monitor(self) -> MonitorView:
        """One monitoring pass over the inventory's agents (blocking): drift and latency verdicts per model version,
        fleet and node, over ``monitor.window``, and the p95 history of the passes so far. In a child process of
        its own, niced (core/probe_worker.py), unless ``probe_process`` is off: then in the calling thread."""
        nodes = self.nodes()
        if not self.probe_process:
            with self._lock:
                if self._monitor_pass is None:
                    from modelfleet.core.monitor_view import MonitorPass

                    self._monitor_pass = MonitorPass(self.settings)
                monitor = self._monitor_pass
            return monitor.run(nodes)
        with self._lock:
            if self._monitor_worker is None:
                from modelfleet.core.probe_worker import MonitorWorker

                self._monitor_worker = MonitorWorker(self.settings)
            worker = self._monitor_worker
        return worker.monitor(nodes)

    async def aclose(self) -> None:
        """Stop the child processes (no connection is held open between refreshes)."""
        import asyncio

        workers = [w for w in (self._probe_worker, self._monitor_worker) if w is not None]
        self._probe_worker = self._monitor_worker = None
        for worker in workers:
            await asyncio.to_thread(worker.close)

    def releases(self, node_name: str) -> list[Release] | None:
        from modelfleet.core.fleet_status import releases_on_disk

        return releases_on_disk(self.inventory().node(node_name))

    def resolve_target(self, target: str) -> list[str]:
        return [n.name for n in self.inventory().select(target)]

    def is_fleet_wide(self, target: str) -> bool:
        """True when the target selects every node, or any node of a protected (production) environment."""
        inv = self.inventory()
        chosen = inv.select(target)
        return len(chosen) == len(inv) or any(n.environment == "production" for n in chosen)

    # -- ledger --------------------------------------------------------------------------------------------
    @property
    def ledger(self) -> Any:
        with self._lock:
            if self._ledger is None:
                from modelfleet.core.ledger import Ledger

                self._ledger = Ledger(self.settings.ledger.url)
                self._ledger.ensure_schema()
            return self._ledger

    def ledger_events(self, filters: Mapping[str, str | None] | None = None, limit: int = 500) -> list[Any]:
        f = {k: v for k, v in (filters or {}).items() if v}
        return list(self.ledger.events(limit=limit, **f))

    def ledger_verify(self) -> Any:
        return self.ledger.verify()

    def placement_events(self, model: str) -> list[Any]:
        return list(self.ledger.events(model=model))

    def ledger_head(self) -> int:
        """The ledger's last sequence number (0 when empty): views that follow the ledger poll it."""
        last = self.ledger_events(limit=1)
        return int(last[-1].seq) if last else 0

    NOTABLE_SCAN = 2000  # the newest events the Events view classifies

    def notable_events(self, limit: int = 300) -> list[Notable]:
        """The newest events that need attention (``core/notable.py``), newest first."""
        from modelfleet.core.notable import notable

        return notable(self.ledger_events(limit=self.NOTABLE_SCAN), limit=limit)

    # -- nodes over ssh ------------------------------------------------------------------------------------
    def agent_log(self, node: str, model: str | None, *, lines: int = 200, follow: bool = True) -> LogStream:
        """Start streaming ``node``'s agent log over ssh, as ``modelfleet logs`` does (``runners/node_ssh.py``)."""
        from modelfleet.runners.node_ssh import open_agent_log

        return open_agent_log(self.settings, self.inventory().node(node), model=model, lines=lines, follow=follow)

    def shell_command(self, node: str) -> list[str]:
        """The ssh command line of an interactive shell on ``node`` (the inventory's user, port and key)."""
        from modelfleet.runners.node_ssh import shell_command, ssh_config

        return shell_command(self.inventory().node(node), ssh_config(self.settings))

    # -- runs ----------------------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return Path(self.settings.state_dir) / "runs"

    def runs(self, limit: int = 200) -> list[RunInfo]:
        """Runs newest first: the ledger's, and any run folder the ledger does not know."""
        from modelfleet.runners.ansible import list_runs

        out: dict[str, RunInfo] = {}
        try:
            for r in self.ledger.runs(limit=limit):
                out[r.run_id] = RunInfo(r.run_id, r.action or "run", r.started.timestamp() if r.started else None,
                                        r.outcome, r.model, r.version, r.target, r.actor)
        except ModelfleetError:
            pass
        for past in list_runs(self.settings.state_dir, limit=limit):
            info = out.get(past.run_id)
            if info is None:
                info = out[past.run_id] = RunInfo(past.run_id, past.kind or "run", _timestamp(past.started),
                                                  _outcome_of_status(past.status))
            info.replayable = ((past.run_dir / "artifacts" / past.run_id / "job_events").is_dir()
                               or (past.run_dir / "events.jsonl").is_file())  # (a Terraform run's)
        return sorted(out.values(), key=lambda r: (r.started or 0.0, r.run_id), reverse=True)

    def replay(self, run: RunInfo) -> RunState | InfraState:
        from modelfleet.runners.pipeline import replay_any

        if not run.replayable:
            raise RunError(f"run {run.run_id} has no events to replay",
                           hint="only runs started from this machine keep their events (artifacts)")
        return replay_any(self.settings, run.run_id)

    def prepare(self, form: RunForm, *, progress: Callable[[str], None] | None = None) -> PreparedRun:
        """Check, pin and bundle what the form asks for (blocking; writes nothing): what the confirmation
        shows is what :meth:`launch` starts."""
        from modelfleet.runners.pipeline import prepare

        form.validate()
        return prepare(self.settings, form.to_request(self.actor), progress=progress)

    def launch(self, prepared: PreparedRun, on_event: Callable[[dict[str, Any]], None]) -> RunHandle:
        """Start a prepared run through the run pipeline; raw runner events go to ``on_event`` from the
        runner's thread."""
        from modelfleet.runners.pipeline import launch

        return launch(self.settings, prepared, on_raw_event=on_event)


def _timestamp(iso: str | None) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


def _outcome_of_status(status: str | None) -> str:
    return {"successful": "ok", "failed": "failed"}.get(status or "", "incomplete")


def _short_path(path: Path | str) -> str:
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _short_uri(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        return "sqlite:///" + _short_path(uri[len("sqlite:///"):])
    from modelfleet.core.registry import redact_uri

    return redact_uri(uri)
