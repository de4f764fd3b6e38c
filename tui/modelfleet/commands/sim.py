"""``modelfleet sim up|down|status|kill|start|add|remove``: the simulated edge fleet on loopback.

Standard library only at import time (``modelfleet --help`` stays fast); the fleet code (psutil, ...) is imported
inside the handlers. Progress goes to stderr, results to stdout (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
from typing import Any

from modelfleet.commands._output import print_json, print_table, progress
from modelfleet.commands._watch import add_watch_arguments, watched
from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim", help="start, stop and inspect the simulated edge fleet",
        description="The simulated edge fleet: one loopback address, filesystem root and supervisord per node, "
                    "one OpenSSH server for all of them, and a generated Ansible inventory.",
    )
    sub = parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)

    p = sub.add_parser("up", help="start the fleet (a running fleet is left as it is)")
    p.add_argument("--nodes", metavar="SPEC", help='node classes and counts, e.g. "cpu=3,gpu=1,arm=2" '
                                                   "(default: sim.nodes)")
    p.add_argument("--json", action="store_true", help="print the fleet status as JSON")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop every process the fleet started")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="each node: address, class, ssh and supervisor answering (exit 1 if degraded)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_watch_arguments(p)
    p.set_defaults(func=watched(cmd_status))

    p = sub.add_parser("kill", help="make a node go dark (its supervisor stops, its ssh address stops answering)")
    p.add_argument("node", metavar="NODE", help="node name, e.g. edge-cpu-02")
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("start", help="bring a node that was killed back")
    p.add_argument("node", metavar="NODE", help="node name, e.g. edge-cpu-02")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser(
        "add", help="add one node (starting the fleet if none runs); idempotent",
        description="Add one node with its own address and class, as terraform/envs/local does for each node it "
                    "creates. A node already there as asked is left alone.",
        epilog="example:\n  modelfleet sim add edge-gpu-01 --class gpu --address 127.0.10.81",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("node", metavar="NODE", help="node name, e.g. edge-gpu-01")
    p.add_argument("--class", dest="node_class", required=True, choices=("cpu", "gpu", "arm"), help="node class")
    p.add_argument("--address", required=True, help="the node's loopback address, e.g. 127.0.10.81")
    p.add_argument("--ssh-port", type=int, help="the fleet's sshd port (default: sim.ssh_port, or the running fleet's)")
    p.add_argument("--owner", default="cli", help="who manages the node (recorded; e.g. terraform:local)")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("remove", help="stop one node and delete its folder (the last one stops sshd too)")
    p.add_argument("node", metavar="NODE", help="node name, e.g. edge-gpu-01")
    p.set_defaults(func=cmd_remove)


def _fleet(settings: Any) -> Any:
    from modelfleet.sim.fleet import SimFleet

    return SimFleet(settings, progress=progress)


def cmd_up(args: argparse.Namespace, settings: Any) -> int:
    result = _fleet(settings).up(args.nodes)
    if args.json:
        print_json({"already_up": result.already_up, **result.status.to_json()})
    else:
        if result.already_up:
            print("already up")
        _print_status(result.status)
    return EXIT_OK if _serving(result.status) else EXIT_CHECK_FAILED


def cmd_down(args: argparse.Namespace, settings: Any) -> int:
    _fleet(settings).down()
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Any) -> int:
    status = _fleet(settings).status()
    if args.json:
        print_json(status.to_json())
    else:
        _print_status(status)
    return EXIT_OK if _serving(status) else EXIT_CHECK_FAILED


def _serving(status: Any) -> bool:
    """Every node up and answering: a node killed on purpose still leaves the fleet short of a node."""
    return status.state == "up" and not any(n.killed for n in status.nodes)


def cmd_kill(args: argparse.Namespace, settings: Any) -> int:
    _fleet(settings).kill(args.node)
    return EXIT_OK


def cmd_start(args: argparse.Namespace, settings: Any) -> int:
    _fleet(settings).start(args.node)
    return EXIT_OK


def cmd_add(args: argparse.Namespace, settings: Any) -> int:
    _fleet(settings).add_node(args.node, args.node_class, args.address, ssh_port=args.ssh_port, owner=args.owner)
    return EXIT_OK


def cmd_remove(args: argparse.Namespace, settings: Any) -> int:
    _fleet(settings).remove_node(args.node)
    return EXIT_OK


def _print_status(status: Any) -> None:
    if status.state == "down":
        print("simulated fleet is down (start it with `modelfleet sim up`)")
        return
    print_table(
        ("node", "address", "class", "ssh", "supervisor", "note"),
        [
            (
                n.name,
                f"{n.address}:{status.ssh_port}",
                n.node_class,
                "up" if n.ssh else "down",
                n.supervisor or "down",
                f"killed (modelfleet sim start {n.name})" if n.killed else ("" if n.healthy else "NOT ANSWERING"),
            )
            for n in status.nodes
        ],
    )
    killed = [n.name for n in status.nodes if n.killed]
    state = "degraded" if killed and status.state == "up" else status.state
    print(f"fleet {state}: {len(status.nodes)} nodes ({status.spec})"
          + (f", {len(killed)} killed" if killed else "") + f"; inventory {status.inventory}")
