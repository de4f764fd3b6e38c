"""Every command's and sub-command's ``--help`` renders (argparse expands ``%`` in help strings when it prints)."""

from __future__ import annotations

import argparse

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
