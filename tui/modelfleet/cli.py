"""The ``modelfleet`` command tree. Thin: parsing here, work in ``core/``, ``runners/`` and ``sim/``.

Exit codes: 0 success, 1 a check failed, 2 usage or configuration error. Expected errors print one line on
stderr (plus a ``fix:`` line) and never a traceback; argparse's own errors (a bad option, a missing argument)
take the same form, naming the command and the option, with the option's help as the fix.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    "describe",
    "logs",
    "completion",
    "monitoring",
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
  modelfleet describe node edge-cpu-01
  modelfleet describe model credit-risk@champion
  modelfleet status                  latency, errors and drift per model version
  modelfleet drift credit-risk       drift per feature and group
  modelfleet logs edge-cpu-01 -f     the agent's log on a node, over SSH

configuration: modelfleet.toml (nearest upwards, or MODELFLEET_CONFIG) with MODELFLEET_<SECTION>_<KEY>
environment overrides. Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error.
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors look like every other error: ``modelfleet: COMMAND: problem`` and a ``fix:`` line,
    exit 2, no usage banner."""

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # blame the (sub)command the words were given to, not the top level
            _selected(self, parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("modelfleet").strip()
        text = message.removeprefix("argument ")
        sys.stderr.write(f"modelfleet: {command + ': ' if command else ''}{text}\n  fix: {self._fix(message)}\n")
        raise SystemExit(EXIT_USAGE)

    def _fix(self, message: str) -> str:
        more = f"`{self.prog} --help` shows the arguments and examples"
        if message.startswith("unrecognized arguments: "):
            options = [o for a in self._actions for o in a.option_strings]
            for word in message.split(": ", 1)[1].split():
                guess = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
                if word.startswith("-") and guess:
                    return f"did you mean {guess[0]}? {more}"
            return f"remove {'them' if ' ' in message.split(': ', 1)[1] else 'it'}; {more}"
        required = re.match(r"the following arguments are required: (.+)", message)
        if required:
            names = required.group(1)
            choices = [c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices]
            return f"give {names}" + (f": one of {', '.join(choices)}" if choices else "") + f"; {more}"
        choice = re.match(r"argument (\S+): invalid choice: '([^']*)'", message)
        if choice:
            known = [c for a in self._actions if choice.group(1) in (a.metavar, a.dest, *a.option_strings)
                     for c in (a.choices or ())]
            guess = difflib.get_close_matches(choice.group(2), [str(k) for k in known], n=1, cutoff=0.6)
            return (f"did you mean {guess[0]}? " if guess else "") + more
        bad = re.match(r"argument (.+?): ", message)
        action = next((a for a in self._actions if bad and bad.group(1) == argparse._get_action_name(a)), None)
        if action is not None and action.help not in (None, argparse.SUPPRESS):
            value = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
            usage = " ".join([*action.option_strings[-1:], str(value)]) if action.nargs != 0 else \
                action.option_strings[-1]
            return f"{usage}: {self._get_formatter()._expand_help(action)}"
        return more


def _selected(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest sub-command parser that ``parsed`` went through."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
            if chosen is not None:
                return _selected(chosen, parsed)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modelfleet",
        description="Roll machine-learning models out to fleets of edge nodes: registry, fleet, deploys, ledger.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"modelfleet {__version__}")
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


#: what a shell reports for a filter its reader stopped (128 + SIGPIPE)
READER_GONE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Like any Unix filter, `modelfleet ledger list --json | head` ends quietly
    when the reader has had enough, with no BrokenPipeError traceback.

    SIGPIPE keeps Python's disposition (ignored): set to the default, it would end the process silently on any
    write to a connection its peer closed (an agent that answers 413 before reading a whole body), and, when
    main runs in-process (tests, the console), it would take that whole process with it."""
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        _discard_stdout()
        return READER_GONE


def _stdout_reader_gone() -> bool:
    """stdout is a pipe or socket whose reader has closed it."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not raise again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["__complete"]:  # the shell's TAB: no warnings, no settings checks, nothing on stderr
        from modelfleet.commands.completion import complete

        return complete(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _warn_unknown_variables()
    try:
        from modelfleet.core.config import load_settings

        settings = load_settings(config_file=args.config)
        _check_console_keys(settings)
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


def _warn_unknown_variables() -> None:
    """A misspelled MODELFLEET_* variable is a warning on stderr (why not an error: core.config.unknown_variables)."""
    from modelfleet.core.config import unknown_variables

    for unknown in unknown_variables():
        sys.stderr.write(f"modelfleet: warning: {unknown.message}\n  fix: {unknown.hint}\n")


def _check_console_keys(settings: Any) -> None:
    """An unknown binding id in [console.keys] is refused by every command, naming the file or variable."""
    from modelfleet.console.keys import check_keys

    try:
        check_keys(settings.console.keys)
    except ModelfleetError as exc:
        raise type(exc)(f"{settings.origin_of('console.keys')}: {exc.message}", hint=exc.hint) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
