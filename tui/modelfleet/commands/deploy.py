"""``modelfleet provision|deploy|rollback|unlock|reconcile|health|bundle``: runs from the command line.

Standard library only at import time (``modelfleet --help`` stays fast). Every run goes through the one run
pipeline (``runners/pipeline.py``): a typed request is prepared (refused before anything is written when it
cannot run: exit 2, or 1 when governance refuses a deploy to a protected environment), launched, and folded
into per-host outcomes. Live progress goes to stderr (one line per host as it fails or finishes its wave), the
recap table or ``--json`` to stdout. Exit 0 when the run's outcome
is ok, 1 when it failed (a host failed, was unreachable, was reverted or did not start, or a controller step
failed) or did not finish, 2 for usage and configuration errors.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from modelfleet.commands._output import print_json, print_table, progress
from modelfleet.commands._progress import TaskProgress
from modelfleet.commands._watch import add_watch_arguments, watched
from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError

FLEET_WIDE = ("", "all", "*", "edge")
#: runs that change nothing on the nodes (no confirmation asked)
READ_ONLY_KINDS = frozenset({"reconcile"})


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "provision", help="provision edge nodes (runtime, agent venv, release key); idempotent",
        description="Run playbooks/provision.yml on the inventory (default: the simulated fleet).",
    )
    _common(p, confirm=True)
    p.add_argument("--if-needed", action="store_true",
                   help="do nothing when the ledger shows every selected node provisioned by a run that ended ok")
    p.add_argument("--new-signing-key", action="store_true",
                   help="create a new release signing key although the fleet trusts one that is missing here, and "
                   "make the nodes trust the new one (bundles signed by the old key are refused afterwards)")
    p.set_defaults(func=cmd_provision)

    p = subparsers.add_parser(
        "deploy", help="roll a pinned, signed model release out in waves",
        description="Pin MODEL@ALIAS or MODEL/VERSION once, build its signed bundle once, then run "
        "playbooks/deploy.yml in waves with a failure budget. Every node is health-gated (probe answer, "
        "latency) and switched back on failure. Nodes in a protected environment (policy/approvals.yaml; a "
        "node's environment is its inventory variable modelfleet_environment) need the gate passed and the "
        "approvals for this exact digest: without them the deploy is refused (exit 1) before anything runs, "
        "naming what is missing; every node checks the clearance again before it switches.",
        epilog="examples:\n  modelfleet deploy credit-risk@champion --yes\n"
        "  modelfleet deploy credit-risk/3 --limit edge_cpu --waves 1,50%,100% --max-fail 0 --revert-on-abort\n"
        "  modelfleet deploy credit-risk/3 --limit prod --break-glass \"fraud spike, INC-4711\" --yes   # ops only",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ref", metavar="MODEL@ALIAS|MODEL/VERSION", help="what to deploy")
    _common(p, confirm=True)
    p.add_argument("--waves", help='serial batches, e.g. "1,25%%,100%%" (default: deploy.waves)')
    p.add_argument("--max-fail", type=_percent, metavar="PCT",
                   help="failure budget: %% of a wave that may fail before the rollout stops (default: deploy."
                   "max_fail_percentage)")
    p.add_argument("--revert-on-abort", action="store_true",
                   help="when the budget is spent, switch the nodes this run updated back to their previous release")
    p.add_argument("--if-needed", action="store_true",
                   help="do nothing when every selected node's agent already answers with the pinned version")
    p.add_argument("--source", choices=("push", "s3"),
                   help="how the bundle reaches the nodes: push (ansible copies it) or s3 (uploaded once, nodes pull "
                   "it through a short-lived presigned URL and check its digest; [artifacts] names the bucket); "
                   "default: artifacts.source")
    p.add_argument("--break-glass", metavar="REASON",
                   help="ops only (your governance identity): deploy to protected environments without the approvals; "
                   "signed, written to the ledger and as the MLflow tag modelfleet.break_glass.<env>, shown in red "
                   "until the approvals arrive after the fact")
    p.add_argument("--skip-deployed", action="store_true",
                   help="deploy only to selected nodes that never had MODEL (ledger) and whose agent does not serve "
                        "it; nodes running any version of it keep that version (what a second `make run` needs)")
    p.set_defaults(func=cmd_deploy)

    p = subparsers.add_parser(
        "rollback", help="switch a model back to its previous release (or --to VERSION)",
        description="Run playbooks/rollback.yml: every selected node switches MODEL back and is health-gated.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--to", metavar="VERSION", help="a version still on the nodes (default: the previous release)")
    _common(p, confirm=True)
    p.set_defaults(func=cmd_rollback)

    p = subparsers.add_parser(
        "unlock", help="remove a model's deploy lock left on nodes by a run that is over",
        description="Run playbooks/unlock.yml: on each named node, remove MODEL's deploy lock when the run that "
        "holds it is known to be over (the ledger has its run_end, or its controller process on this host is "
        "gone). A lock held by a run that may still be going is kept, and the node fails naming the holder.",
        epilog="examples:\n  modelfleet unlock credit-risk --node edge-cpu-01 --yes\n"
        "  modelfleet unlock credit-risk --node edge-cpu-01 --force --yes   # the holder is gone for sure",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--node", dest="limit", metavar="NODES", required=True,
                   help="the node(s) to unlock (Ansible --limit syntax)")
    p.add_argument("--force", action="store_true",
                   help="remove the lock even when its holder may still be running (two runs could then switch "
                   "the same node at once)")
    p.add_argument("--inventory", "-i", metavar="FILE", help="inventory (default: fleet.inventory)")
    p.add_argument("--check", action="store_true", help="say what would be removed; remove nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print every task result")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_unlock)

    p = subparsers.add_parser(
        "reconcile", help="read back what the nodes hold for a model and record it where a run lost them",
        description="Run playbooks/reconcile.yml: read, on each selected node, what it holds for MODEL (current "
        "release, its journal) and record in the ledger whether the ledger agrees. A node a run lost (it went dark "
        "after switching, or the run's controller was killed) is placed on the version the node's journal says that "
        "run put there; a version no recorded run put there is reported and left unplaced (health keeps saying "
        "wrong_version). Changes nothing on the nodes. Exit 1 when a node could not be read.",
        epilog="examples:\n  modelfleet reconcile credit-risk\n  modelfleet reconcile credit-risk --limit edge-cpu-02 "
        "--json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL")
    _common(p, confirm=False)
    p.set_defaults(func=cmd_reconcile)

    p = subparsers.add_parser(
        "health", help="ask every model agent for /health (node, model, version, URL, verdict)",
        description="Probe each model agent directly over HTTP; exit 1 if any is not healthy.",
    )
    p.add_argument("--limit", metavar="PATTERN", help="nodes or groups (Ansible --limit syntax)")
    p.add_argument("--model", help="only this model's agents")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_watch_arguments(p)
    p.set_defaults(func=watched(cmd_health))

    p = subparsers.add_parser(
        "bundle", help="pin a model version and build its signed release bundle (for ansible-playbook users)",
        description="Pin MODEL@ALIAS or MODEL/VERSION and build (or reuse) its signed bundle; prints the path, "
        "version and digest to pass to playbooks/deploy.yml.",
    )
    p.add_argument("ref", metavar="MODEL@ALIAS|MODEL/VERSION")
    p.add_argument("--json", action="store_true", help="print JSON (keys bundle, version, digest, ...)")
    p.set_defaults(func=cmd_bundle)


def _common(p: argparse.ArgumentParser, *, confirm: bool) -> None:
    p.add_argument("--limit", metavar="PATTERN", help="nodes or groups (Ansible --limit syntax); default: all")
    p.add_argument("--inventory", "-i", metavar="FILE", help="inventory (default: fleet.inventory)")
    p.add_argument("--check", action="store_true", help="dry run (Ansible check mode); changes nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print every task result")
    if confirm:
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def _percent(text: str) -> int:
    try:
        value = int(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 100")
    return value


# -- confirmation ----------------------------------------------------------------------------------------------


def confirm(args: argparse.Namespace, what: str, word: str, *, stream_in: Any = None) -> None:
    """Ask before changing nodes. ``--yes`` or ``--check`` skip it; no terminal and no ``--yes`` refuses."""
    if getattr(args, "yes", False) or getattr(args, "check", False):
        return
    stream_in = stream_in or sys.stdin
    if not (hasattr(stream_in, "isatty") and stream_in.isatty()):
        raise UsageError(f"refusing to {what} without confirmation: no terminal to ask on and no --yes",
                         hint="pass --yes (CI), or --check for a dry run")
    fleet_wide = (args.limit or "").strip() in FLEET_WIDE
    if fleet_wide:
        sys.stderr.write(f"{what}: this touches EVERY node of the fleet. Type {word!r} to confirm: ")
        sys.stderr.flush()
        answer = stream_in.readline().strip()
        ok = answer == word
    else:
        sys.stderr.write(f"{what} ({args.limit}). Continue? [y/N] ")
        sys.stderr.flush()
        ok = stream_in.readline().strip().lower() in ("y", "yes")
    if not ok:
        raise UsageError("not confirmed; nothing was changed")


# -- live progress ---------------------------------------------------------------------------------------------


class LiveProgress:
    """Prints one stderr line per host as it fails, becomes unreachable, is switched back or finishes its wave."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.handle: Any = None  # the RunHandle, set once launched
        self._printed: set[str] = set()
        self._wave_hosts: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        from modelfleet.runners.events import EventKind

        with self._lock:
            kind = event.kind
            if kind is EventKind.PLAY_START:
                self._close_wave()
                progress(f"== {event.play or 'play'}" + (f" (wave {event.batch})" if event.batch else ""))
            elif kind in (EventKind.HOST_FAILED, EventKind.HOST_UNREACHABLE):
                label = "UNREACHABLE" if kind is EventKind.HOST_UNREACHABLE else "FAILED"
                self._note(event.host)
                progress(f"   {event.host:<16} {label:<11} {event.task or ''}: {event.message or ''}".rstrip())
            elif kind in (EventKind.HOST_OK, EventKind.HOST_CHANGED, EventKind.HOST_SKIPPED):
                self._note(event.host)
                if event.switched_back:
                    progress(f"   {event.host:<16} {'SWITCHED BACK':<11} {event.task or ''}")
                if self.verbose:
                    progress(f"   {event.host:<16} {kind.value[5:]:<11} {event.task or ''}")
            elif kind is EventKind.STATS:
                self._close_wave()

    def _note(self, host: str | None) -> None:
        if host and host != "localhost" and host not in self._wave_hosts:
            self._wave_hosts.append(host)

    def _close_wave(self) -> None:
        if self.handle is None:
            return
        hosts = self.handle.hosts()
        for name in self._wave_hosts:
            hr = hosts.get(name)
            if hr is None or name in self._printed:
                continue
            self._printed.add(name)
            outcome = hr.outcome(self.handle.kind, final=True)
            progress(f"   {name:<16} {outcome.value:<11} ok={hr.ok} changed={hr.changed}"
                     + (f"  {hr.message}" if hr.message and outcome.bad else ""))
        self._wave_hosts = []


# -- handlers --------------------------------------------------------------------------------------------------


def _interrupt_cancels(handle: Any) -> None:
    """Ctrl-C cancels the run (ansible-playbook is stopped; run_end says incomplete) instead of orphaning it."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        progress("interrupted: stopping the run ...")
        handle.cancel()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _inventory(args: argparse.Namespace) -> Any:
    from pathlib import Path

    return Path(args.inventory) if getattr(args, "inventory", None) else None


def _run(args: argparse.Namespace, settings: Any, request: Any, *, confirm_word: str) -> int:
    """Prepare ``request`` (refused: exit 2, nothing written), confirm, launch, follow, recap."""
    from modelfleet.runners.pipeline import launch, prepare

    prepared = prepare(settings, request, progress=progress)
    for glass in prepared.governance.break_glass if prepared.governance is not None else ():
        progress(f"BREAK-GLASS by {glass.people[0][0] if glass.people else '?'} for {glass.subject.label}: deploying "
                 "WITHOUT the required approvals (recorded in the ledger; approvals are due after the fact)")
    if getattr(args, "if_needed", False) and not request.check and _nothing_needed(settings, prepared):
        return EXIT_OK
    if prepared.kind not in READ_ONLY_KINDS:
        confirm(args, prepared.summary.removesuffix(" (check mode)"), confirm_word)
    # provisioning is one wave: report it per task and per host as results arrive (commands/_progress.py)
    live = TaskProgress(prepared.hosts, verbose=args.verbose) if prepared.kind == "provision" else \
        LiveProgress(verbose=args.verbose)
    handle = launch(settings, prepared, on_event=live)
    live.handle = handle
    _interrupt_cancels(handle)
    progress(f"run {handle.run_id}: {prepared.summary}")
    return _finish(args, handle.wait(), settings)


def _finish_reconcile(args: argparse.Namespace, result: Any, settings: Any, exit_code: int) -> int:
    """A reconcile run's recap: per node what the ledger callback recorded (agrees, reconciled, unexplained)."""
    from modelfleet.core.ledger import Ledger

    with Ledger(settings.ledger.url) as ledger:
        events = ledger.events(run_id=result.run_id, action="node_reconcile")
    nodes = [{"node": e.node, "outcome": e.outcome, "observed_version": e.details.get("observed_version"),
              "placed_version": e.details.get("placed_version"), "by_run": e.details.get("by_run"),
              "message": e.details.get("message")} for e in events]
    if args.json:
        print_json({**result.to_dict(), "nodes": nodes})
        return exit_code
    print_table(("NODE", "LEDGER", "NODE HOLDS", "LEDGER HAD", "PUT THERE BY", "NOTE"),
                [(n["node"], n["outcome"], n["observed_version"], n["placed_version"], n["by_run"] or "",
                  (n["message"] or "")[:110] if n["outcome"] != "agrees" else "") for n in nodes])
    counts: dict[str, int] = {}
    for n in nodes:
        counts[str(n["outcome"])] = counts.get(str(n["outcome"]), 0) + 1
    sys.stdout.write(f"{result.summary}: run {result.run_id} {result.outcome}: "
                     + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no node recorded") + "\n")
    if result.problem:
        sys.stdout.write(f"problem: {result.problem}\n")
    return exit_code


def _nothing_needed(settings: Any, prepared: Any) -> bool:
    if prepared.kind == "provision" and _already_provisioned(settings, list(prepared.hosts)):
        progress(f"all {len(prepared.hosts)} node(s) are provisioned (ledger): nothing to do")
        return True
    if prepared.kind == "deploy" and _already_deployed(settings, prepared.release, prepared.limit,
                                                        list(prepared.hosts)):
        release = prepared.release
        progress(f"{release.model}/{release.version} already runs and answers on all {len(prepared.hosts)} "
                 "node(s): nothing to do")
        return True
    return False


def _finish(args: argparse.Namespace, result: Any, settings: Any = None) -> int:
    exit_code = EXIT_OK if result.ok else EXIT_CHECK_FAILED
    if result.kind == "reconcile" and settings is not None:
        return _finish_reconcile(args, result, settings, exit_code)
    if args.json:
        print_json(result.to_dict())
        return exit_code
    rows = []
    for name, hr in result.hosts.items():
        outcome = hr.outcome(result.kind, final=True)
        note = hr.message if outcome.bad else (f"now {hr.version}" if result.kind == "rollback" and hr.version
                                               else "")
        if hr.node_outcome and hr.node_outcome not in ("deployed", "rolled_back", "unchanged"):
            note = f"[{hr.node_outcome}] {note}".strip()
        rows.append((name, hr.batch, outcome.label, hr.ok, hr.changed, hr.failed, hr.unreachable,
                     (note or "")[:110]))
    print_table(("NODE", "WAVE", "OUTCOME", "OK", "CHANGED", "FAILED", "UNREACHABLE", "NOTE"), rows)
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.counts.items())
    line = f"{result.summary}: run {result.run_id} {result.outcome}: {counts or 'no hosts'}; {result.duration_s:.1f}s"
    if result.ok and result.changed == 0 and result.kind in ("deploy", "rollback", "provision") and not result.check:
        line += "; nothing changed"
    sys.stdout.write(line + "\n")
    if result.problem:
        sys.stdout.write(f"problem: {result.problem}\n")
    return exit_code


def cmd_deploy(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.commands._placement import limit_to_undeployed
    from modelfleet.runners.requests import DeployRequest

    if args.skip_deployed:  # the nodes that never had the model, or nothing to do (commands/_placement.py)
        if (undeployed := limit_to_undeployed(settings, args.ref, args.limit, _inventory(args))) is None:
            return EXIT_OK
        args.limit = undeployed
    request = DeployRequest(ref=args.ref, limit=args.limit, inventory=_inventory(args), check=args.check,
                            waves=args.waves, max_fail=args.max_fail, revert_on_abort=args.revert_on_abort,
                            source=args.source, break_glass=args.break_glass)
    return _run(args, settings, request, confirm_word=args.ref.split("@")[0].split("/")[0])


def _already_deployed(settings: Any, release: Any, limit: str | None, hosts: list[str]) -> bool:
    from modelfleet.runners.health import check_fleet

    rows = check_fleet(settings, limit=limit, model=release.model)
    good = {r.node for r in rows if r.healthy and r.version == release.version and r.digest in (None, release.digest)}
    return set(hosts) <= good


def _already_provisioned(settings: Any, hosts: list[str]) -> bool:
    from modelfleet.core.ledger import Ledger

    with Ledger(settings.ledger.url) as ledger:
        ok_runs = {r.run_id for r in ledger.runs() if r.action == "provision" and r.outcome == "ok"}
        done = {e.node for e in ledger.events(action="node_provision")
                if e.run_id in ok_runs and e.outcome in ("ok", "changed") and not e.details.get("check")}
    return bool(hosts) and set(hosts) <= done


def cmd_rollback(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.requests import RollbackRequest

    request = RollbackRequest(model=args.model, to=args.to, limit=args.limit, inventory=_inventory(args),
                              check=args.check)
    return _run(args, settings, request, confirm_word=args.model)


def cmd_unlock(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.requests import UnlockRequest

    request = UnlockRequest(model=args.model, limit=args.limit, inventory=_inventory(args), check=args.check,
                            force=args.force)
    return _run(args, settings, request, confirm_word=args.model)


def cmd_reconcile(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.requests import ReconcileRequest

    request = ReconcileRequest(model=args.model, limit=args.limit, inventory=_inventory(args), check=args.check)
    return _run(args, settings, request, confirm_word=args.model)


def cmd_provision(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.requests import ProvisionRequest

    request = ProvisionRequest(limit=args.limit, inventory=_inventory(args), check=args.check,
                               new_signing_key=args.new_signing_key)
    return _run(args, settings, request, confirm_word="provision")


def cmd_health(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.health import check_fleet

    rows = check_fleet(settings, limit=args.limit, model=args.model)
    if args.json:
        print_json([r.to_dict() for r in rows])
    else:
        print_table(("NODE", "MODEL", "VERSION", "URL", "VERDICT", "LATENCY_MS", "REASON"),
                    [(r.node, r.model, r.version, r.url, r.verdict, r.latency_ms, r.reason) for r in rows])
        healthy = sum(r.healthy for r in rows)
        sys.stdout.write(f"{healthy}/{len(rows)} agents healthy\n")
    return EXIT_OK if rows and all(r.healthy for r in rows) else EXIT_CHECK_FAILED


def cmd_bundle(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.core.deploy import prepare_release

    release = prepare_release(settings, args.ref, progress=progress)
    if args.json:
        print_json(release.to_dict())
    else:
        sys.stdout.write(
            f"bundle     {release.bundle}\nmodel      {release.model}\nversion    {release.version}\n"
            f"digest     {release.digest}\nsha256     {release.bundle_sha256}\n"
            f"public key {release.public_key}\nprobe      {release.probe_source}\n"
            f"\nansible-playbook -i {settings.fleet.inventory} playbooks/deploy.yml "
            f"-e model_release_model={release.model} -e model_release_version={release.version} "
            f"-e model_release_digest={release.digest} -e model_release_bundle={release.bundle}\n"
        )
    return EXIT_OK

