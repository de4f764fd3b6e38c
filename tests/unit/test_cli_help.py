"""Every command's and sub-command's ``--help`` renders (argparse expands ``%`` in help strings when it prints)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modelfleet.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                                     argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_parsers(sub, (*path, name)))
    return found


PARSERS = _parsers(build_parser())


def test_every_command_is_collected() -> None:
    names = {path[0] for path, _ in PARSERS if path}
    assert {"deploy", "rollback", "provision", "health", "ledger", "sim", "registry", "bundle"} <= names


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[" ".join(p) or "modelfleet" for p, _ in PARSERS])
def test_help_renders(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert text.startswith("usage: modelfleet")
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS and action.option_strings:
            assert action.option_strings[0] in text


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`modelfleet ledger list --json | head` ends quietly (SIGPIPE, as any Unix filter), never with a
    BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    from modelfleet.core.ledger import Ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as ledger:
        for i in range(400):
            ledger.append("note", actor="t", details={"i": i, "pad": "x" * 200})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    env["MODELFLEET_LEDGER_URL"] = url
    modelfleet = Path(sys.executable).parent / "modelfleet"
    proc = subprocess.run(f"{modelfleet} ledger list --json --limit 400 | head -1; echo \"rc=${{PIPESTATUS[0]}}\"",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120, check=False)
    assert proc.stdout.split() == ["{", "rc=141"] and proc.stderr == "", proc.stdout + proc.stderr


def test_the_cli_in_process_leaves_sigpipe_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    """cli.main run in-process (tests, the console) keeps Python's SIGPIPE disposition. It used to set the
    default, so a later write to a connection its peer had closed (test_ten_megabyte_body_is_413: the agent
    answers 413 before reading the whole body) ended the whole pytest worker without a word."""
    import signal
    import socket

    from modelfleet.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    capsys.readouterr()
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    left, right = socket.socketpair()
    right.close()
    with left, pytest.raises(BrokenPipeError):
        for _ in range(64):
            left.sendall(b"x" * 65536)
