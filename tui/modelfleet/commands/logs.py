"""``modelfleet logs NODE [--model M] [-f] [--lines N]``: a node's agent log, read over SSH as Ansible reaches it.

The CLI twin of the console's ``l``: ``ssh`` with the inventory's user, port, key and ssh args and ansible.cfg's
``[ssh_connection]`` (``core/node_access.py``) runs ``tail`` on the agent's log on the node; nothing else is
opened on the node. Without ``--model``, every model's agent log there (each under a ``==> file <==`` heading).
``-f`` follows the log until Ctrl-C (exit 0).

Exit 0 when the log was shown; 2 when the node is unknown, cannot be reached over SSH, or has no agent log for
that model (the message names the models it has logs for). Standard library only at import time.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelfleet.commands._args import whole_number
from modelfleet.core.errors import EXIT_OK

DEFAULT_LINES = 100  # as core.node_access.DEFAULT_LINES (not imported here: --help stays light)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "logs", help="a node's agent log over SSH (the console's l); -f follows it",
        description="Print the agent's log from a node, read over SSH with the inventory's connection settings "
                    "(user, port, key, ssh args) as Ansible uses them; nothing new is opened on the node.",
        epilog="examples:\n  modelfleet logs edge-cpu-01\n  modelfleet logs edge-cpu-01 --model credit-risk -f\n"
               "  modelfleet logs edge-arm-05 --lines 500 | grep -i error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("node", metavar="NODE", help="node name from the inventory, e.g. edge-cpu-01")
    p.add_argument("--model", metavar="MODEL", help="only this model's agent log (default: every model's on the node)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C (exit 0)")
    p.add_argument("-n", "--lines", type=whole_number(0), default=DEFAULT_LINES, metavar="N",
                   help=f"how many of the last lines to print first (default {DEFAULT_LINES})")
    p.set_defaults(func=cmd_logs)


def cmd_logs(args: argparse.Namespace, settings: Any) -> int:
    from modelfleet.core.fleet import Inventory
    from modelfleet.runners.node_ssh import open_agent_log

    inventory = Inventory.load(settings.fleet.inventory, default_agent_port=settings.fleet.agent_port)
    node = inventory.node(args.node)
    stream = open_agent_log(settings, node, model=args.model, lines=args.lines, follow=args.follow)
    try:
        for line in stream:
            sys.stdout.write(line + "\n")
            if args.follow:
                sys.stdout.flush()
        stream.wait()
    except KeyboardInterrupt:  # Ctrl-C ends a follow: the normal way out
        stream.close()
        return EXIT_OK
    error = stream.error()
    if error is not None:
        raise error
    return EXIT_OK
