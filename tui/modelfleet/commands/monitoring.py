"""``modelfleet status`` and ``modelfleet drift``: fleet latency and drift verdicts per model version.

Standard library only at import time (``--help`` stays fast); the monitoring code is imported in the handlers.
Exit codes: ``status`` 0 all well, 1 a breach (dataset drift, group shift, SLO breach, latency regression) or an
agent that does not answer; ``drift`` 0 no drift, 1 drift (a feature, the dataset or a group), 3 too little data
to decide (INSUFFICIENT_DATA); 2 usage or configuration errors for both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.commands._watch import add_watch_arguments, watched
from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNDECIDED

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.drift_verdict import DriftReport
    from modelfleet.core.monitor import MonitorStatus, Scope

STATUS_EPILOG = """\
examples:
  modelfleet status                      every model version: nodes, p50/p95/p99 vs SLO, errors, drift
  modelfleet status credit-risk --json   for scripts (exit 1 on any breach)
  modelfleet status --watch              refresh every monitor.interval_s until Ctrl+C (-w --interval 5: every 5 s)

A latency verdict needs monitor.min_requests requests in the window (else INSUFFICIENT_DATA); SLO budgets are
[console] slo_p50_ms/slo_p95_ms/slo_p99_ms or per model in the monitoring policy (docs/monitoring.md).
"""

DRIFT_EPILOG = """\
examples:
  modelfleet drift credit-risk                       fleet-wide, the last monitor.window (15m)
  modelfleet drift credit-risk@2 --node edge-cpu-01  one version on one node
  modelfleet drift credit-risk --window 1h --explain every statistic and how the verdict was reached
  modelfleet drift credit-risk --source prometheus   read the counts kept by Prometheus

Verdict per feature: DRIFT needs significance (p-value under alpha) and effect size (distance at or above its
threshold); fewer than min_rows rows: INSUFFICIENT_DATA. Exit 0 no drift, 1 drift, 3 insufficient data.
"""


def _window(text: str) -> float:
    from modelfleet.core.config import parse_duration
    from modelfleet.core.errors import ConfigError

    try:
        return parse_duration(text, origin="--window")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _window_and_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=_window, metavar="DURATION", help="e.g. 15m, 1h (default: monitor.window)")
    p.add_argument("--source", choices=("agents", "prometheus"), help="where to read (default: monitor.source)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status", help="latency, errors and drift verdicts per model version (exit 1 on a breach)",
        description="Per model and version: nodes answering, fleet p50/p95/p99 against the SLO, error rate, "
                    "requests/s, drift verdict and groups whose positive share moved, over the last window.",
        epilog=STATUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", metavar="MODEL", help="only this model")
    _window_and_source(p)
    p.add_argument("--limit", metavar="PATTERN", help="nodes or groups, e.g. edge_cpu or edge-cpu-01")
    p.add_argument("--json", action="store_true", help="print JSON (every verdict and its evidence)")
    add_watch_arguments(p, default="monitor.interval_s")
    p.set_defaults(func=watched(cmd_status, default_interval=_monitor_interval))

    p = subparsers.add_parser(
        "drift", help="drift of a model's inputs and predictions, per feature and per group",
        description="Per feature of MODEL[@VERSION]: the test, its statistic and threshold, the p-value, the "
                    "effect size, the rows in the window and the verdict; the dataset verdict; each group's "
                    "positive share against the reference with its interval.",
        epilog=DRIFT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref", metavar="MODEL[@VERSION]", help="a model, optionally @version, e.g. credit-risk@2")
    p.add_argument("--node", metavar="NODE", help="one node (or an inventory pattern) instead of the fleet")
    _window_and_source(p)
    p.add_argument("--explain", action="store_true", help="every statistic, the largest bin changes, the rule")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_drift)

    p = subparsers.add_parser(
        "monitor", help="the monitoring loop (alerts and actions) and Prometheus targets",
        description="Run the monitoring loop that turns breaches into ledger events, webhooks and the models' "
                    "actions, or write Prometheus' file_sd targets from the inventory.")
    sub = p.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)
    r = sub.add_parser(
        "run", help="evaluate every interval; breaches -> ledger, webhook, action (notify | command | rollback)",
        description="Every monitor.interval_s: read the counters, decide, and for each new breach (dataset drift, "
                    "group shift, SLO breach, latency regression) write a ledger event, POST an Alertmanager-"
                    "compatible webhook (monitor.webhook_url) and run the model's action, rate-limited per breach "
                    "(policy cooldown). A breach that persists acts once; one that ends is resolved.",
        epilog="examples:\n  modelfleet monitor run --once          one pass (cron, CI)\n"
               "  modelfleet monitor run --webhook http://127.0.0.1:9095/alerts",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--once", action="store_true", help="one pass, then exit (1 when a breach is active)")
    r.add_argument("--limit", metavar="PATTERN", help="only these nodes or groups")
    _window_and_source(r)
    r.add_argument("--webhook", metavar="URL", help="Alertmanager-compatible receiver (default: monitor.webhook_url)")
    r.add_argument("--json", action="store_true", help="print each pass's outcome as JSON")
    r.set_defaults(func=cmd_monitor_run)
    t = sub.add_parser("targets", help="write Prometheus file_sd targets (one per node) from the inventory",
                       description="Write the JSON file Prometheus' file_sd reads (monitoring/prometheus.yml) "
                                   "with one target per node's agent, labelled node, node_class and environment.")
    t.add_argument("--out", type=Path, default=Path("monitoring/targets/agents.json"),
                   help="file to write (default: %(default)s)")
    t.add_argument("--limit", metavar="PATTERN", help="only these nodes or groups")
    t.set_defaults(func=cmd_monitor_targets)


# -- status ---------------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _drift_cell(scope: Scope) -> str:
    d = scope.drift
    if d is None:
        return "n/a"
    drifting = [f.feature for f in d.features if f.verdict == "DRIFT"]
    return d.verdict + (f" ({len(drifting)}/{len(d.features)})" if drifting else "")


def print_status(status: MonitorStatus) -> None:
    from modelfleet.commands._output import print_table

    rows = []
    for v in status.versions:
        f = v.fleet
        lat = f.latency
        groups = ",".join(f.drift.shifted_groups) if f.drift is not None else ""
        regressed = ",".join(f.regressed)
        rows.append((v.model, v.version, len(f.nodes), _fmt(lat.p50_ms), _fmt(lat.p95_ms), _fmt(lat.p99_ms),
                     lat.verdict, _fmt(None if f.error_rate is None else f.error_rate * 100, ".2f"),
                     _fmt(f.rps, ".2f"), _drift_cell(f), groups or "-", regressed or "-"))
    print_table(("MODEL", "VERSION", "NODES", "P50_MS", "P95_MS", "P99_MS", "LATENCY", "ERR_%", "RPS", "DRIFT",
                 "GROUPS_SHIFTED", "REGRESSED"), rows)
    for node, reason in sorted(status.unreachable.items()):
        sys.stdout.write(f"unreachable: {node}: {reason}\n")
    for v in status.versions:
        for reason in v.fleet.partial:
            sys.stdout.write(f"partial: {reason}\n")
    for b in status.breaches:
        sys.stdout.write(f"BREACH {b.kind}: {b.summary}\n")
    if not status.versions and not status.unreachable:
        sys.stdout.write("no agent serves a model in this selection\n")
    sys.stdout.write(f"window {status.window_s:g}s, source {status.source}, "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(status.at))}\n")


def _monitor_interval(settings: Settings) -> float:
    return float(settings.monitor.interval_s)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """One status; ``--watch`` (commands/_watch.py, as ``health`` and ``sim status``) calls it every interval."""
    from modelfleet.commands._output import print_json
    from modelfleet.core.monitor import monitor_status

    status = monitor_status(settings, model=args.model, limit=args.limit, window_s=args.window, source=args.source)
    if args.json:
        print_json(status.to_dict())
    else:
        print_status(status)
    return EXIT_CHECK_FAILED if status.breaches or status.unreachable else EXIT_OK


# -- drift ----------------------------------------------------------------------------------------------------


def _split_ref(text: str) -> tuple[str, str | None]:
    from modelfleet.core.errors import UsageError
    from modelfleet.core.reference import validate_model_name

    name, sep, version = text.partition("@")
    validate_model_name(name, ref=text)
    if sep and not version:
        raise UsageError(f"{text!r} has an empty version", hint="write MODEL or MODEL@VERSION, e.g. credit-risk@2")
    return name, version or None


def _resolve_version(settings: Settings, model: str, version: str | None) -> str | None:
    """A version number as given, or an alias resolved in the registry (``credit-risk@champion``)."""
    if version is None or version.isdigit():
        return version
    from modelfleet.core.registry import Registry

    return str(Registry(settings).resolve(f"{model}@{version}").version)


def print_drift(scope: Scope, explain: bool) -> None:
    from modelfleet.commands._output import print_table

    w = scope.window
    where = scope.nodes[0] if len(scope.nodes) == 1 else f"{len(scope.nodes)} nodes"
    d = scope.drift
    sys.stdout.write(f"{scope.model}@{scope.version} on {where}: window {w.seconds:.0f}s, {w.rows} rows\n")
    for reason in w.partial:
        sys.stdout.write(f"partial: {reason}\n")
    if d is None:
        sys.stdout.write(f"drift: not available: {scope.drift_note}\n")
        return
    rows = []
    for f in d.features:
        rows.append((f.feature, f.kind, f.test, _fmt(f.statistic, ".4g"), _fmt(f.threshold, ".4g"),
                     _fmt(f.p_value, ".3g"), f"{f.effect_test}={_fmt(f.effect, '.3g')}", f.rows,
                     f.verdict + (" (ignored)" if f.ignored else "")))
    print_table(("FEATURE", "KIND", "TEST", "STATISTIC", "THRESHOLD", "P_VALUE", "EFFECT", "ROWS", "VERDICT"), rows)
    share = "-" if d.drift_share is None else f"{d.drift_share:.2f}"
    sys.stdout.write(f"dataset: {d.verdict} ({len(d.drifted)} drifted of {len(d.features)}, share {share}, "
                     f"threshold {d.dataset_drift_share:g})\n")
    if d.prediction is not None:
        p = d.prediction
        sys.stdout.write(f"predictions: {p.verdict} ({p.test} {_fmt(p.statistic, '.4g')}, p {_fmt(p.p_value, '.3g')})"
                         "\n")
    if d.groups:
        print_table(("GROUP", "ROWS", f"SHARE_{d.positive_class}", "INTERVAL", "REFERENCE", "DIFFERENCE", "VERDICT"),
                    [(g.group, g.rows, _fmt(g.share, ".3f"),
                      "-" if g.interval is None else f"[{g.interval[0]:.3f}, {g.interval[1]:.3f}]",
                      _fmt(g.reference_share, ".3f"),
                      "-" if g.difference is None else f"[{g.difference[0]:+.3f}, {g.difference[1]:+.3f}]",
                      g.verdict) for g in d.groups])
    elif d.groups_note:
        sys.stdout.write(f"groups: {d.groups_note}\n")
    if explain:
        _explain(d)


def _explain(d: DriftReport) -> None:
    sys.stdout.write(
        f"\nrule: DRIFT when the p-value (ks for numeric, chisquare for categorical) is below alpha {d.alpha:g} "
        "and the effect reaches its threshold; INSUFFICIENT_DATA below min_rows rows.\n")
    for f in d.features:
        stats = ", ".join(f"{k}={_fmt(v, '.4g')}" for k, v in f.statistics.items())
        sys.stdout.write(f"\n{f.feature} ({f.kind}, {f.rows} rows vs {f.reference_rows} reference): {stats}\n")
        moves = sorted(zip(f.bins, f.reference_shares, f.current_shares, strict=True),
                       key=lambda b: -abs(b[2] - b[1]))[:3]
        for label, ref, cur in moves:
            if ref or cur:
                sys.stdout.write(f"  {label:<28} reference {ref:7.2%}  now {cur:7.2%}\n")


def _drift_exit(reports: list[DriftReport]) -> int:
    if any(r.drifted or r.verdict == "DRIFT" or r.shifted_groups for r in reports):
        return EXIT_CHECK_FAILED
    if any(r.verdict == "INSUFFICIENT_DATA" for r in reports):
        return EXIT_UNDECIDED
    return EXIT_OK


def cmd_drift(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json
    from modelfleet.core.errors import FleetError
    from modelfleet.core.monitor import monitor_status

    model, version = _split_ref(args.ref)
    version = _resolve_version(settings, model, version)
    status = monitor_status(settings, model=model, version=version, limit=args.node, window_s=args.window,
                            source=args.source)
    if not status.versions:
        where = f" on {args.node}" if args.node else ""
        unreachable = "; ".join(f"{n}: {r}" for n, r in sorted(status.unreachable.items()))
        raise FleetError(f"no agent{where} serves {args.ref}" + (f" (unreachable: {unreachable})" if unreachable
                                                                 else ""),
                         hint="deploy it, or check `modelfleet status` for what runs where")
    scopes = [v.nodes[v.fleet.nodes[0]] if args.node and len(v.fleet.nodes) == 1 else v.fleet
              for v in status.versions]
    if args.json:
        print_json({"source": status.source, "window_s": status.window_s, "at": status.at,
                    "unreachable": status.unreachable, "scopes": [s.to_dict() for s in scopes]})
    else:
        for i, scope in enumerate(scopes):
            if i:
                sys.stdout.write("\n")
            print_drift(scope, args.explain)
        for node, reason in sorted(status.unreachable.items()):
            sys.stdout.write(f"unreachable: {node}: {reason} (its rows are not in the window)\n")
    reports = [s.drift for s in scopes if s.drift is not None]
    return _drift_exit(reports) if reports else EXIT_UNDECIDED


# -- monitor ---------------------------------------------------------------------------------------------------


def cmd_monitor_targets(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.core.fleet import Inventory
    from modelfleet.core.prometheus_targets import file_sd, write_file_sd

    inventory = Inventory.load(settings.fleet.inventory, default_agent_port=settings.fleet.agent_port)
    groups = file_sd(inventory, args.limit)
    changed = write_file_sd(args.out, groups)
    print(f"{args.out}: {len(groups)} target(s){'' if changed else ' (unchanged)'}")
    return EXIT_OK


def cmd_monitor_run(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, progress
    from modelfleet.core.alerts import Alerter
    from modelfleet.core.monitor import monitor_status
    from modelfleet.core.monitor_policy import load_policy
    from modelfleet.runners.monitor_actions import rollback_node

    policy = load_policy(settings)
    alerter = Alerter.from_settings(settings, rollback=rollback_node,
                                    **({"webhook_url": args.webhook} if args.webhook else {}))
    while True:
        status = monitor_status(settings, limit=args.limit, window_s=args.window, source=args.source,
                                policy=policy)
        done = alerter.process(status.breaches)
        if args.json:
            print_json({"at": status.at, "breaches": [b.to_dict() for b in status.breaches], "fired": done.fired,
                        "resolved": done.resolved, "persisting": done.persisting,
                        "actions": [vars(a) for a in done.actions], "webhook_errors": done.webhook_errors,
                        "unreachable": status.unreachable})
        else:
            stamp = time.strftime("%H:%M:%S")
            progress(f"{stamp} {len(status.breaches)} breach(es): {len(done.fired)} fired, "
                     f"{len(done.resolved)} resolved, {len(done.persisting)} persisting")
            for a in done.actions:
                progress(f"  {a.key}: {a.action} -> {a.outcome} {a.detail}")
            for err in done.webhook_errors:
                progress(f"  webhook failed: {err}")
        if args.once:
            return EXIT_CHECK_FAILED if status.breaches else EXIT_OK
        time.sleep(settings.monitor.interval_s)
