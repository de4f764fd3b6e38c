"""``modelfleet demo seed``: the credit-risk demo model (3 versions, champion -> 2, challenger -> 3)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelfleet.core.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="demo data: the credit-risk model after the lending case",
        description="Demo data after the lending case: synthetic loan applications with a protected "
        "applicant_group, a high-risk flagging model and its fairness metrics.",
    )
    actions = parser.add_subparsers(dest="demo_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "seed",
        help="register 3 versions of credit-risk and set champion/challenger (idempotent)",
        description="Train and register credit-risk versions 1-3 in the configured MLflow registry, with "
        "metrics (auc, accuracy, ece, fpr_gap, demographic_parity_difference), a reference data sample and "
        "aliases champion -> 2, challenger -> 3. A seeded registry is left unchanged.",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_seed)

    p = actions.add_parser(
        "traffic",
        help="send rows resampled from the reference sample to the agents, optionally shifted",
        description="Send scoring requests made of rows resampled from a version's reference sample to every "
        "agent (or the nodes --limit selects), at --rate requests per second per node, optionally shifted to "
        "inject drift on every node or on one. Stops after --duration or --requests, or on Ctrl+C; with "
        "--background it runs beside the simulated fleet, which stops it on `modelfleet sim down`.",
        epilog="examples:\n"
        "  modelfleet demo traffic --duration 60\n"
        "  modelfleet demo traffic --shift income=+25%% --shift purpose=new-category:5%%\n"
        "  modelfleet demo traffic --shift edge-cpu-01:income=+25%% --background     (what make run leaves)\n"
        "  modelfleet demo traffic --requests 500 --rate 0 --limit edge-cpu-01     (as fast as answered)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ref", default="credit-risk@champion", metavar="REF",
                   help="whose reference sample to resample (default: %(default)s)")
    p.add_argument("--limit", metavar="PATTERN", help="nodes or groups to send to (default: every node)")
    p.add_argument("--rate", type=float, default=2.0, metavar="RPS",
                   help="requests per second per node; 0 = as fast as answered (default: %(default)s)")
    p.add_argument("--batch", type=int, default=2, metavar="ROWS", help="rows per request (default: %(default)s)")
    p.add_argument("--duration", metavar="DURATION", help="stop after this long, e.g. 90s or 10m (default: never)")
    p.add_argument("--requests", type=int, metavar="N", help="stop after N requests per node")
    p.add_argument("--shift", action="append", default=[], metavar="[NODE:]FEATURE=SPEC",
                   help="FEATURE=+25%% scales a number, FEATURE=new-category:5%% adds unseen values; NODE: "
                        "limits it to one node (repeat for several)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the rows (default: %(default)s)")
    p.add_argument("--background", action="store_true",
                   help="run beside the simulated fleet (stopped by `modelfleet sim down`) and return")
    p.add_argument("--json", action="store_true", help="print the per-node tallies as JSON")
    p.set_defaults(func=run_traffic)


def run_seed(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._output import print_json, print_table, progress
    from modelfleet.demo.seed import seed

    result = seed(settings, progress=progress)
    if args.json:
        print_json(result.to_dict())
        return 0
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(result.aliases.items())) or "none"
    if not result.changed:
        versions = ", ".join(str(v) for v in sorted(result.existing.values()))
        print(f"{result.model} is already seeded (versions {versions}; {aliases}): nothing changed")
        return 0
    if result.created:
        print_table(
            ["VERSION", "DEMO", "AUC", "ACCURACY", "ECE", "FPR_GAP", "DP_DIFF", "PREDICT_MS(2 rows)"],
            [
                (v, key, *(f"{result.metrics[key][k]:.3f}" for k in (
                    "auc", "accuracy", "ece", "fpr_gap", "demographic_parity_difference")),
                 f"{result.predict_ms.get(key, 0.0):.3f}")
                for key, v in sorted(result.created.items(), key=lambda kv: kv[1])
            ],
        )
    if result.created:
        print(f"seeded {result.model} in {result.tracking_uri} in {result.seconds:.1f}s; aliases: {aliases}")
    for key, table in result.thresholds.items():
        shown = ", ".join(f"{g} {t:.3f}" for g, t in sorted(table.items()))
        print(f"{result.model}/{result.created[key]} ({key}) released with equal-opportunity thresholds: {shown}")
    if result.identities_created:
        print(f"demo identities {', '.join(result.identities_created)} in {result.identity_dir}; act as one with "
              f"MODELFLEET_GOVERNANCE_IDENTITY={result.identity_dir}/<name>.key")
    return 0


def _traffic_argv(args: argparse.Namespace) -> list[str]:
    import sys

    argv = [sys.executable, "-m", "modelfleet.cli", "demo", "traffic", "--ref", args.ref, "--rate", str(args.rate),
            "--batch", str(args.batch), "--seed", str(args.seed)]
    for flag, value in (("--limit", args.limit), ("--duration", args.duration), ("--requests", args.requests)):
        if value is not None:
            argv += [flag, str(value)]
    for shift in args.shift:
        argv += ["--shift", shift]
    return argv


def run_traffic(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from modelfleet.commands._output import print_json, print_table, progress
    from modelfleet.core.config import parse_duration
    from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
    from modelfleet.core.fleet import Inventory
    from modelfleet.demo.traffic import TrafficPlan, check_shifts, parse_shift, run

    shifts = [parse_shift(s) for s in args.shift]
    duration = parse_duration(args.duration, origin="--duration") if args.duration else None
    if args.batch < 1 or (args.requests is not None and args.requests < 1):
        raise UsageError("--batch and --requests must be at least 1", hint="e.g. --batch 2 --requests 100")
    nodes = Inventory.load(settings.fleet.inventory, default_agent_port=settings.fleet.agent_port).select(args.limit)
    if not nodes:
        raise UsageError(f"--limit {args.limit!r} selects no node", hint="see `modelfleet sim status`")
    if args.background:
        from pathlib import Path

        from modelfleet.sim.fleet import SimFleet

        check_shifts(shifts, [s.feature for s in shifts], [s.feature for s in shifts if s.kind == "scale"],
                     [n.name for n in nodes])
        log = SimFleet(settings, progress=progress).start_helper("traffic", _traffic_argv(args), cwd=Path.cwd())
        print(f"demo traffic runs beside the simulated fleet (stopped by `modelfleet sim down`); log: {log}")
        return EXIT_OK
    from modelfleet.core.registry import Registry

    registry = Registry(settings)
    version = registry.resolve(args.ref).version
    sample = registry.load_reference_sample(registry.resolve(args.ref).name, version)
    numeric = [c for c in sample.columns if sample[c].dtype.kind in "fiu"]
    check_shifts(shifts, list(sample.columns), numeric, [n.name for n in nodes])
    plan = TrafficPlan(nodes=nodes, sample=sample, shifts=shifts, rate=args.rate, batch=args.batch,
                       duration_s=duration, requests=args.requests, seed=args.seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    progress(f"sending {args.ref} (version {version}) reference rows to {len(nodes)} node(s)"
             + (f", shifted: {', '.join(str(s) for s in shifts)}" if shifts else ""))

    def report(tallies: Any) -> None:
        progress("  " + "; ".join(f"{n} {t.ok}/{t.sent}" for n, t in sorted(tallies.items())))

    try:
        tallies = run(plan, stop=stop, progress=report)
    except KeyboardInterrupt:
        stop.set()
        tallies = plan.tallies
    if args.json:
        print_json({n: vars(t) for n, t in sorted(tallies.items())})
    else:
        print_table(("NODE", "SENT", "OK", "FAILED", "LAST_ERROR"),
                    [(n, t.sent, t.ok, t.failed, t.last_error) for n, t in sorted(tallies.items())])
    return EXIT_CHECK_FAILED if any(t.failed for t in tallies.values()) else EXIT_OK
