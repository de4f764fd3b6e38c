"""``modelfleet describe node NODE`` / ``describe model MODEL[@REF]``: everything known about one object.

A node: its class, address, groups and environment (inventory), each model on it with the version the ledger
says should run and the version its agent answers with (``/health``), the releases on its disk (simulated
fleet), the last runs that touched it and the tail of its ledger events. A model: its aliases and versions with
their metrics, where each version runs (ledger and agents, with any disagreement), its last runs and ledger tail;
``MODEL@ALIAS`` or ``MODEL/VERSION`` narrows all of it to one version (all its metrics and params).

Standard library only at import time; the assembly is :mod:`modelfleet.core.describe`, fed from the inventory,
the ledger, the registry and ``runners.health`` (the agents are asked once, concurrently, with the timeouts of
``[fleet]``). Exit 0 when the object exists (whatever its health), 2 when it does not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelfleet.commands._args import whole_number
from modelfleet.commands._output import print_json, print_table

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.core.describe import ModelDescription, NodeDescription
    from modelfleet.core.ledger import Event, RunSummary

DEFAULT_TAIL = 10


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "describe", help="everything known about one node or model (versions, where they run, runs, ledger)",
        description="Everything known about one object, from the inventory, the registry, the ledger and the "
                    "agents' /health.",
        epilog="examples:\n  modelfleet describe node edge-cpu-01\n  modelfleet describe model credit-risk\n"
               "  modelfleet describe model credit-risk@champion --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="describe_command", metavar="KIND", required=True)

    p = sub.add_parser("node", help="class, address, groups, models and versions, health, last runs, ledger tail")
    p.add_argument("node", metavar="NODE", help="node name from the inventory, e.g. edge-cpu-01")
    _common(p)
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("model", help="versions, aliases, metrics, where each version runs, last runs, ledger tail")
    p.add_argument("model", metavar="MODEL[@REF]",
                   help="a model name, or one version: credit-risk@champion, credit-risk/2, credit-risk@latest")
    _common(p)
    p.set_defaults(func=cmd_model)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tail", type=whole_number(0), default=DEFAULT_TAIL, metavar="N",
                   help=f"how many of the latest runs and ledger events to show (default {DEFAULT_TAIL})")
    p.add_argument("--json", action="store_true", help="print JSON")


# -- gathering -------------------------------------------------------------------------------------------------


def _ledger_facts(settings: Settings, *, node: str | None = None,
                  model: str | None = None) -> tuple[list[Event], list[RunSummary], list[Event]]:
    """(the events on ``node`` or of ``model``, every run, every placing event) from the configured ledger."""
    from modelfleet.core.ledger import Ledger
    from modelfleet.core.placement import PLACING_ACTIONS

    with Ledger(settings.ledger.url) as ledger:
        events = ledger.events(node=node, model=model)
        placing = [e for e in ledger.events() if e.action in PLACING_ACTIONS]
        return events, ledger.runs(), placing


def cmd_node(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._placement import what_should_run_where
    from modelfleet.core.describe import describe_node
    from modelfleet.core.fleet import Inventory
    from modelfleet.runners.health import check_fleet

    inventory = Inventory.load(settings.fleet.inventory, default_agent_port=settings.fleet.agent_port)
    node = inventory.node(args.node)
    events, runs, placing = _ledger_facts(settings, node=node.name)
    answers = check_fleet(settings, limit=node.name)
    described = describe_node(node, events, runs, answers, what_should_run_where(placing), tail=args.tail)
    if args.json:
        print_json(described.to_dict())
    else:
        _print_node(described)
    return 0


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from modelfleet.commands._placement import serves_another, what_should_run_where
    from modelfleet.core.describe import describe_model
    from modelfleet.core.reference import parse_ref, validate_model_name
    from modelfleet.core.registry import Registry
    from modelfleet.runners.health import check_fleet

    text = args.model.strip()
    ref = parse_ref(text) if ("@" in text or "/" in text) else None
    name = ref.name if ref else text
    validate_model_name(name, ref=text)
    registry = Registry(settings)
    summary = registry.get_model(name)
    selected = registry.resolve(ref).version if ref else None
    versions = registry.list_versions(name)
    events, runs, placing = _ledger_facts(settings, model=name)
    answers = [a for a in check_fleet(settings) if not serves_another(a)]
    described = describe_model(summary, versions, events, [r for r in runs if r.model == name], answers,
                               what_should_run_where(placing), selected=selected, tail=args.tail)
    if args.json:
        print_json(described.to_dict())
    else:
        _print_model(described)
    return 0


# -- printing --------------------------------------------------------------------------------------------------


def _fields(rows: Sequence[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        sys.stdout.write(f"{key:<{width}}  {'-' if value in (None, '') else value}\n")


def _section(title: str) -> None:
    sys.stdout.write(f"\n{title}\n")


def _print_runs(runs: tuple[RunSummary, ...], what: str) -> None:
    _section(f"last runs ({what}, newest first)" if runs else f"no runs ({what}) in the ledger")
    if runs:
        print_table(("RUN", "KIND", "STARTED (UTC)", "ACTOR", "MODEL", "VERSION", "TARGET", "OUTCOME"),
                    [(r.run_id, r.action, r.started and r.started.strftime("%Y-%m-%d %H:%M:%S"), r.actor, r.model,
                      r.version, r.target, r.outcome) for r in runs])


def _print_events(events: tuple[Event, ...], what: str) -> None:
    _section(f"ledger: last {len(events)} events {what}" if events else f"ledger: no events {what}")
    if events:
        print_table(("SEQ", "TIME (UTC)", "ACTOR", "ACTION", "MODEL", "VERSION", "NODE", "RUN", "OUTCOME"),
                    [(e.seq, e.ts.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.model, e.version, e.node,
                      e.run_id, e.outcome) for e in events])


def _print_node(d: NodeDescription) -> None:
    _fields([("node", d.name), ("class", d.node_class), ("address", d.address), ("environment", d.environment),
             ("groups", ", ".join(d.groups)), ("agent", d.agent_url), ("root", d.root),
             ("health", f"{d.health} ({sum(m.verdict == 'healthy' for m in d.models)}/{len(d.models)} agents "
                        "healthy)")])
    _section("models")
    print_table(("MODEL", "SHOULD RUN", "RUNS", "DIGEST", "VERDICT", "LATENCY_MS", "URL", "REASON"),
                [(m.model, m.expected_version, m.running_version, (m.digest or "")[:12] or None, m.verdict,
                  m.latency_ms, m.url, m.reason) for m in d.models])
    if d.releases is not None:
        _section("releases on disk" if d.releases else "releases on disk: none")
        if d.releases:
            print_table(("MODEL", "RELEASE", "CURRENT", "PREVIOUS"),
                        [(r["model"], r["release"], "yes" if r["current"] else "", "yes" if r["previous"] else "")
                         for r in d.releases])
    _print_runs(d.runs, f"touching {d.name}")
    _print_events(d.events, f"on {d.name}")


def _print_model(d: ModelDescription) -> None:
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(d.aliases.items()))
    rows: list[tuple[str, object]] = [("model", d.name), ("description", d.description), ("aliases", aliases),
                                      ("latest version", d.latest_version)]
    if d.selected:
        rows.append(("selected version", d.selected))
    _fields(rows)
    _section("versions (newest first; nodes: where the ledger says it should run / where an agent answers with it)")
    metric_names = ["auc", "accuracy", "ece", "fpr_gap", "demographic_parity_difference"]
    short = {"accuracy": "ACC", "demographic_parity_difference": "DP_DIFF"}
    print_table(
        ("VERSION", "ALIASES", "STATUS", *(short.get(m, m.upper()) for m in metric_names), "LEDGER NODES",
         "AGENT NODES"),
        [(v.version, ",".join(v.aliases), v.status,
          *(f"{v.metrics[m]:.3f}" if m in v.metrics else None for m in metric_names),
          ",".join(v.ledger_nodes), ",".join(v.reported_nodes)) for v in (*d.versions, *d.unregistered)],
    )
    for line in (*d.alias_warnings, *d.disagreements):
        sys.stdout.write(f"warning: {line}\n")
    if d.selected and d.versions:  # one version: all its metrics and params
        for title, mapping in (("metrics", d.versions[0].metrics), ("params", d.versions[0].params)):
            if mapping:
                _section(title)
                _fields([(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in sorted(mapping.items())])
    what = f"of {d.name}" + (f" v{d.selected}" if d.selected else "")
    _print_runs(d.runs, what)
    _print_events(d.events, what)
