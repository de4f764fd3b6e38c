"""``modelfleet ledger list|runs|verify|export``: read and check the deployment ledger.

Standard library only at import time; the ledger (SQLAlchemy) is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from modelfleet.commands._args import whole_number
from modelfleet.commands._output import print_json, print_table
from modelfleet.core.errors import EXIT_OK, LedgerIntegrityError, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ledger", help="read, verify and export the deployment ledger",
        description="The append-only, hash-chained record of every deployment step.",
    )
    sub = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="list events (newest last)")
    p.add_argument("--model", help="only events of this model")
    p.add_argument("--node", help="only events on this node")
    p.add_argument("--action", help="only this action (run_start, node_deploy, node_rollback, run_end, ...)")
    p.add_argument("--actor", help="only events by this actor")
    p.add_argument("--run", dest="run_id", metavar="RUN_ID", help="only events of this run")
    p.add_argument("--limit", type=whole_number(1), default=50, help="the newest N matching events (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("runs", help="list runs; a run without run_end shows as incomplete")
    p.add_argument("--model", help="only runs of this model")
    p.add_argument("--limit", type=whole_number(1), default=20, help="the newest N runs (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("verify", help="recompute the hash chain (exit 1 naming the first bad event)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="write every event as jsonl, json or csv")
    p.add_argument("--format", choices=("jsonl", "json", "csv"), default="jsonl")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    p.set_defaults(func=cmd_export)


def _open(settings: Any) -> Any:
    from modelfleet.core.ledger import Ledger

    return Ledger(settings.ledger.url)


def cmd_list(args: argparse.Namespace, settings: Any) -> int:
    with _open(settings) as ledger:
        events = ledger.events(model=args.model, node=args.node, action=args.action, actor=args.actor,
                               run_id=args.run_id, limit=args.limit)
        shown_runs = {e.run_id for e in events if e.run_id}
        # runs with a run_start and no run_end (still going, or their controller died); a cancelled run has a
        # run_end whose outcome is "incomplete", and its own row says so
        open_runs = [r.run_id for r in ledger.runs() if r.ended is None and r.run_id in shown_runs]
    if args.json:
        print_json({"events": [e.to_dict() for e in events], "open_runs": open_runs})
        return EXIT_OK
    print_table(
        ("seq", "time (UTC)", "actor", "action", "model", "version", "node", "run", "outcome"),
        [(e.seq, e.ts.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.model, e.version, e.node,
          e.run_id, e.outcome) for e in events],
    )
    for run_id in open_runs:
        sys.stdout.write(f"run {run_id}: no run_end yet (still running, or its controller died)\n")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace, settings: Any) -> int:
    with _open(settings) as ledger:
        runs = ledger.runs(model=args.model, limit=args.limit)
    if args.json:
        print_json([r.to_dict() for r in runs])
        return EXIT_OK
    print_table(
        ("run", "kind", "started (UTC)", "ended (UTC)", "actor", "model", "version", "target", "events",
         "outcome"),
        [(r.run_id, r.action, r.started and r.started.strftime("%Y-%m-%d %H:%M:%S"),
          r.ended and r.ended.strftime("%Y-%m-%d %H:%M:%S"), r.actor, r.model, r.version, r.target, r.events,
          r.outcome) for r in runs],
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, settings: Any) -> int:
    with _open(settings) as ledger:
        result = ledger.verify()
    if args.json:
        print_json(result.to_dict())
    if not result.ok:
        raise LedgerIntegrityError(
            f"ledger chain broken at event {result.first_bad_seq}: {result.reason}",
            hint="restore the ledger from a backup or export; events before "
                 f"{result.first_bad_seq} still verify",
        )
    if not args.json:
        sys.stdout.write(f"ledger ok: {result.count} events, head {(result.head_hash or '-')[:16]}\n")
        if result.incomplete_runs:
            sys.stdout.write(f"incomplete runs: {', '.join(result.incomplete_runs)}\n")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, settings: Any) -> int:
    with _open(settings) as ledger:
        if args.output is None:
            ledger.export(args.format, sys.stdout)
            return EXIT_OK
        out: Path = args.output
        if out.is_dir():
            raise UsageError(f"{out} is a folder", hint="pass a file name to -o")
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
                count = ledger.export(args.format, stream)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    sys.stderr.write(f"exported {count} events to {out}\n")
    return EXIT_OK
