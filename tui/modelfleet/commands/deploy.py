"""``modelfleet provision|deploy|rollback|health|bundle``: roll releases out from the command line.

Standard library only at import time (``modelfleet --help`` stays fast); the work is in ``core/deploy.py``,
``runners/rollout.py`` and ``runners/health.py``. Live progress goes to stderr (one line per host as it fails or
finishes its wave), the recap table or ``--json`` to stdout. Exit 0 when every host is fine, 1 when any host
failed, was unreachable or was rolled back (or the run did not finish), 2 for usage and configuration errors.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from modelfleet.commands._output import print_json, print_table, progress
from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError

FLEET_WIDE = ("", "all", "*", "edge")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "provision", help="provision edge nodes (runtime, agent venv, release key); idempotent",
        description="Run playbooks/provision.yml on the inventory (default: the simulated fleet).",
    )
    _common(p, confirm=True)
    p.add_argument("--if-needed", action="store_true",
                   help="do nothing when the ledger shows every selected node provisioned by a run that ended ok")
    p.set_defaults(func=cmd_provision)

    p = subparsers.add_parser(
        "deploy", help="roll a pinned, signed model release out in waves",
        description="Pin MODEL@ALIAS or MODEL/VERSION once, build its signed bundle once, then run "
        "playbooks/deploy.yml in waves with a failure budget. Every node is health-gated (probe answer, "
        "latency) and switched back on failure.",
        epilog="examples:\n  modelfleet deploy credit-risk@champion --yes\n"
        "  modelfleet deploy credit-risk/3 --limit edge_cpu --waves 1,50%,100% --max-fail 0 --revert-on-abort",
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
        "health", help="ask every model agent for /health (node, model, version, URL, verdict)",
        description="Probe each model agent directly over HTTP; exit 1 if any is not healthy.",
    )
    p.add_argument("--limit", metavar="PATTERN", help="nodes or groups (Ansible --limit syntax)")
    p.add_argument("--model", help="only this model's agents")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_health)

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
        sys.stderr.write(f"This will {what} on EVERY node of the fleet. Type {word!r} to confirm: ")
        sys.stderr.flush()
        answer = stream_in.readline().strip()
        ok = answer == word
    else:
        sys.stderr.write(f"This will {what} on {args.limit}. Continue? [y/N] ")
        sys.stderr.flush()
        ok = stream_in.readline().strip().lower() in ("y", "yes")
    if not ok:
        raise UsageError("not confirmed; nothing was changed")


# -- live progress ---------------------------------------------------------------------------------------------


class LiveProgress:
    """Prints one stderr line per host as it fails, becomes unreachable, is rolled back or finishes its wave."""

    def __init__(self, run_hosts: Any, verbose: bool = False) -> None:
        self._hosts = run_hosts  # callable returning {host: HostState}
        self.verbose = verbose
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
                if event.rolled_back:
                    progress(f"   {event.host:<16} {'ROLLING BACK':<11} {event.task or ''}")
                if self.verbose:
                    progress(f"   {event.host:<16} {kind.value[5:]:<11} {event.task or ''}")
            elif kind is EventKind.STATS:
                self._close_wave()

    def _note(self, host: str | None) -> None:
        if host and host != "localhost" and host not in self._wave_hosts:
            self._wave_hosts.append(host)

    def _close_wave(self) -> None:
        from modelfleet.runners.events import settled_status

        states = self._hosts()
        for host in self._wave_hosts:
            st = states.get(host)
            if st is None or host in self._printed:
                continue
            self._printed.add(host)
            status = settled_status(st)
            progress(f"   {host:<16} {status.value:<11} ok={st.ok} changed={st.changed}"
                     + (f"  {st.message}" if st.message and status.bad else ""))
        self._wave_hosts = []


# -- handlers --------------------------------------------------------------------------------------------------


def _interrupt_cancels(recorded: Any) -> None:
    """Ctrl-C cancels the run (ansible-playbook is stopped; run_end says incomplete) instead of orphaning it."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        progress("interrupted: stopping the run ...")
        recorded.cancel()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _finish(args: argparse.Namespace, kind: str, recorded: Any, release: Any = None) -> int:
    result = recorded.wait()
    hosts = result.hosts
    bad = [h for h, st in hosts.items() if st.status.bad]
    not_started = [h for h, st in hosts.items() if st.status.value == "pending"]
    exit_code = EXIT_OK if (result.status == "successful" and not bad and not not_started) else EXIT_CHECK_FAILED
    if args.json:
        print_json({
            "run_id": result.run_id, "kind": kind, "status": result.status, "rc": result.rc,
            "ok": exit_code == EXIT_OK, "release": release.to_dict() if release else None,
            "batches": result.batches, "duration_s": round(result.duration_s, 3),
            "hosts": {h: st.to_dict() for h, st in hosts.items()}, "artifacts": str(result.artifact_dir),
            "error": result.error,
        })
        return exit_code
    print_table(
        ("NODE", "WAVE", "OUTCOME", "OK", "CHANGED", "FAILED", "UNREACHABLE", "RESCUED", "MESSAGE"),
        [(h, st.batch, "not started" if st.status.value == "pending" else st.status.value, st.ok, st.changed,
          st.failed, st.unreachable, st.rescued, (st.message or "")[:100] if st.status.bad else "")
         for h, st in hosts.items()],
    )
    counts: dict[str, int] = {}
    for st in hosts.values():
        counts[st.status.value] = counts.get(st.status.value, 0) + 1
    what = f"{kind} {release.model}/{release.version} ({release.digest[:12]})" if release else kind
    summary = ", ".join(f"{n} {s.replace('pending', 'not started')}" for s, n in sorted(counts.items()))
    sys.stdout.write(f"{what}: run {result.run_id} {result.status}: {summary or 'no hosts'}; "
                     f"{result.duration_s:.1f}s; changed={sum(st.changed for st in hosts.values())}\n")
    if result.error:
        sys.stdout.write(f"error: {result.error}\n")
    return exit_code


def _inventory(args: argparse.Namespace, settings: Any) -> Any:
    from pathlib import Path

    return Path(args.inventory) if getattr(args, "inventory", None) else settings.fleet.inventory


def cmd_deploy(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.core.deploy import DeployOptions, normalize_ref, prepare_release
    from modelfleet.core.reference import parse_ref
    from modelfleet.runners.rollout import start_deploy, target_hosts

    ref = normalize_ref(args.ref)
    parse_ref(ref)  # a malformed reference fails before anything else
    options = DeployOptions.from_settings(settings, limit=args.limit, waves=args.waves, max_fail=args.max_fail,
                                          check=args.check, revert_on_abort=args.revert_on_abort,
                                          inventory=_inventory(args, settings))
    hosts = target_hosts(settings, options.inventory, options.limit)
    if not hosts:
        raise UsageError(f"--limit {args.limit!r} selects no node", hint="name a group or node of the inventory")
    release = prepare_release(settings, ref, progress=progress)
    if args.if_needed and not args.check and _already_deployed(settings, release, args.limit, hosts):
        progress(f"{release.model}/{release.version} already runs and answers on all {len(hosts)} node(s): "
                 "nothing to do")
        return EXIT_OK
    confirm(args, f"deploy {release.model} version {release.version} to {len(hosts)} node(s)", release.model)
    holder: dict[str, Any] = {}
    live = LiveProgress(lambda: holder["run"].run.hosts(), verbose=args.verbose)
    recorded = start_deploy(settings, release, options, on_event=live)
    holder["run"] = recorded
    _interrupt_cancels(recorded)
    progress(f"run {recorded.run_id}: deploying {release.model}/{release.version} to {len(hosts)} node(s), "
             f"waves {options.waves}, budget {options.max_fail_percentage}%"
             + (" (check mode)" if options.check else ""))
    return _finish(args, "deploy", recorded, release)


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
    from modelfleet.runners.rollout import start_rollback, target_hosts

    inventory = _inventory(args, settings)
    hosts = target_hosts(settings, inventory, args.limit)
    confirm(args, f"roll {args.model} back to {args.to or 'its previous release'} on {len(hosts)} node(s)",
            args.model)
    holder: dict[str, Any] = {}
    live = LiveProgress(lambda: holder["run"].run.hosts(), verbose=args.verbose)
    recorded = start_rollback(settings, args.model, to=args.to, limit=args.limit, check=args.check,
                              inventory=inventory, on_event=live)
    holder["run"] = recorded
    _interrupt_cancels(recorded)
    progress(f"run {recorded.run_id}: rolling {args.model} back on {len(hosts)} node(s)")
    return _finish(args, "rollback", recorded)


def cmd_provision(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.runners.rollout import start_provision, target_hosts

    inventory = _inventory(args, settings)
    hosts = target_hosts(settings, inventory, args.limit)
    if args.if_needed and not args.check and _already_provisioned(settings, hosts):
        progress(f"all {len(hosts)} node(s) are provisioned (ledger): nothing to do")
        return EXIT_OK
    confirm(args, f"provision {len(hosts)} node(s)", "provision")
    holder: dict[str, Any] = {}
    live = LiveProgress(lambda: holder["run"].run.hosts(), verbose=args.verbose)
    recorded = start_provision(settings, limit=args.limit, check=args.check, inventory=inventory, on_event=live)
    holder["run"] = recorded
    _interrupt_cancels(recorded)
    progress(f"run {recorded.run_id}: provisioning {len(hosts)} node(s)")
    return _finish(args, "provision", recorded)


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

