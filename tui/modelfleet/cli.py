"""The ``modelfleet`` command tree. Thin: parsing here, work in ``core/``, ``runners/`` and ``sim/``.

Exit codes: 0 success, 1 a check failed, 2 usage or configuration error. Expected errors print one line on
stderr (plus a ``fix:`` line) and never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from modelfleet import __version__
from modelfleet.core.errors import EXIT_USAGE, ModelfleetError

# One module per command group under modelfleet.commands; each has register(subparsers).
COMMAND_MODULES = (
    "registry",
    "demo",
    "sim",
    "agent_cmd",
    "deploy",
    "infra",
    "ledger",
    "gate",
    "fairness",
    "approvals",
    "identity",
    "console_cmd",
)

EPILOG = """\
examples:
  modelfleet                         open the operator console
  modelfleet demo seed               register the demo credit-risk model (3 versions)
  modelfleet sim up                  start the simulated edge fleet on loopback
  modelfleet registry versions credit-risk
  modelfleet registry show credit-risk@champion --json
  modelfleet gate credit-risk@challenger --env prod --explain-failures
  modelfleet deploy credit-risk@champion --yes
  modelfleet health --json
  modelfleet infra plan --env local    Terraform: plan, then `infra apply --env local`

configuration: modelfleet.toml (nearest upwards, or MODELFLEET_CONFIG) with MODELFLEET_<SECTION>_<KEY>
environment overrides. Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (and the usage) on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modelfleet",
        description="Roll machine-learning models out to fleets of edge nodes: registry, fleet, deploys, ledger.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modelfleet {__version__}")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="configuration file (default: nearest modelfleet.toml)"
    )
    parser.add_argument(
        "--read-only", action="store_true", help="open the console with every action disabled (browse only)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"modelfleet.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"modelfleet.commands.{name}":
                continue  # a command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    # Like any Unix filter: `modelfleet health --json | head` ends quietly when the reader has had enough
    # (SIGPIPE), instead of a BrokenPipeError traceback.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from modelfleet.core.config import load_settings

        settings = load_settings(config_file=args.config)
        if args.command is None:
            from modelfleet.commands import home

            return home.run(args, settings)
        return int(args.func(args, settings))
    except ModelfleetError as exc:
        sys.stderr.write(f"modelfleet: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"  fix: {exc.hint}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("modelfleet: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
