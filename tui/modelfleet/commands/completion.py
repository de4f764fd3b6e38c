"""``modelfleet completion bash|zsh``: shell completion for commands, options and live names.

The printed script asks ``modelfleet __complete`` for candidates on every TAB. Commands and options come from the
argparse tree itself (so completion never drifts from ``--help``); values from live data
(:mod:`modelfleet.core.live_names`): model names and references (``credit-risk@champion``, ``credit-risk/2``) for
model arguments, node names for node arguments, nodes, groups and environments for ``--limit`` (comma lists,
``!`` and ``&`` included), file names for file options.

The ``__complete`` path is kept light and quiet: it imports no MLflow, httpx, SQLAlchemy or Textual (a test
checks it), prints nothing on stderr, never fails the shell (any error completes nothing), and skips the
settings checks and warnings of the normal commands. Its latency is measured by ``bench/completion.py``.

Protocol (between the scripts below and :func:`complete`, nothing else uses it)::

    modelfleet __complete bash WORDBREAKS LINE     LINE = the command line up to the cursor
    modelfleet __complete zsh WORD... CURRENT      the words up to the cursor, the last one being completed

Output: one candidate per line (zsh: ``value<TAB>description``); or the single line ``:files`` to let the shell
complete file names.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.live_names import LiveNames

SHELLS = ("bash", "zsh")
FILES = ":files"
_FILE_DESTS = ("inventory", "config", "output")
_NO_SPACE_AFTER = ("@", "/", "=", ",")

BASH_SCRIPT = r'''# modelfleet completion for bash. Load it in this shell:   eval "$(modelfleet completion bash)"
# or for every shell:  modelfleet completion bash > ~/.local/share/bash-completion/completions/modelfleet
_modelfleet() {
    local cur="${COMP_WORDS[COMP_CWORD]}" out
    out=$(command "${COMP_WORDS[0]}" __complete bash "$COMP_WORDBREAKS" "${COMP_LINE:0:$COMP_POINT}" \
          2>/dev/null) || return 0
    COMPREPLY=()
    if [[ "$out" == ":files" ]]; then
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return 0
    fi
    [[ -n "$out" ]] && mapfile -t COMPREPLY <<< "$out"
    if [[ ${#COMPREPLY[@]} -eq 1 && "${COMPREPLY[0]}" == *[@/=,] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}
complete -F _modelfleet modelfleet
'''

ZSH_SCRIPT = r'''#compdef modelfleet
# modelfleet completion for zsh. Load it in this shell (after compinit):   eval "$(modelfleet completion zsh)"
# or for every shell: modelfleet completion zsh > "${fpath[1]}/_modelfleet"   (then restart zsh)
_modelfleet() {
    local out line value desc
    local -a spaced spaced_shown nospace nospace_shown
    out="$(command ${words[1]} __complete zsh "${(@Q)words[1,CURRENT]}" 2>/dev/null)" || return 1
    if [[ "$out" == ":files" ]]; then
        _files
        return
    fi
    for line in "${(@f)out}"; do
        [[ -z "$line" ]] && continue
        value="${line%%$'\t'*}"
        desc=""
        [[ "$line" == *$'\t'* ]] && desc="${line#*$'\t'}"
        if [[ "$value" == *[@/=,] ]]; then
            nospace+=("$value"); nospace_shown+=("${value}${desc:+  -- $desc}")
        else
            spaced+=("$value"); spaced_shown+=("${value}${desc:+  -- $desc}")
        fi
    done
    (( ${#spaced} )) && compadd -l -d spaced_shown -- "${spaced[@]}"
    (( ${#nospace} )) && compadd -S '' -l -d nospace_shown -- "${nospace[@]}"
    return 0
}
if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then
    _modelfleet "$@"
else
    compdef _modelfleet modelfleet
fi
'''


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "completion", help="print the shell completion script for bash or zsh",
        description="Print a completion script: commands, options, and model, alias, version, node, group and "
                    "environment names read live from the registry and the inventory.",
        epilog='install:\n  bash: eval "$(modelfleet completion bash)"   (add it to ~/.bashrc)\n'
               '  zsh:  eval "$(modelfleet completion zsh)"    (add it to ~/.zshrc after compinit)',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    p.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace, settings: Any) -> int:
    sys.stdout.write(BASH_SCRIPT if args.shell == "bash" else ZSH_SCRIPT)
    return 0


# -- the __complete entry point --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    value: str
    help: str = ""


def complete(argv: Sequence[str]) -> int:
    """``modelfleet __complete SHELL ...``: print the candidates; always exit 0."""
    try:
        if argv[:1] == ["bash"] and len(argv) == 3:
            wordbreaks, line = argv[1], argv[2]
            words, current = split_line(line)
            found = candidates(words[1:], current)
            if found is None:
                sys.stdout.write(FILES + "\n")
                return 0
            # bash replaces only what follows the last word-break character (= : ...), except that "@" and "$"
            # (readline's special prefixes in bash) stay part of the word they start
            cut = max((current.rfind(ch) + (ch not in "@$") for ch in set(wordbreaks) if not ch.isspace()),
                      default=0)
            for c in found:
                sys.stdout.write(c.value[max(cut, 0):] + "\n")
        elif argv[:1] == ["zsh"] and len(argv) >= 2:
            words = list(argv[1:])
            found = candidates(words[1:-1], words[-1])
            if found is None:
                sys.stdout.write(FILES + "\n")
                return 0
            for c in found:
                sys.stdout.write(c.value + (f"\t{c.help}" if c.help else "") + "\n")
    except Exception:  # a TAB must never print a traceback into the prompt
        return 0
    return 0


def split_line(line: str) -> tuple[list[str], str]:
    """``"modelfleet deploy cr"`` -> (["modelfleet", "deploy"], "cr"); a trailing space starts a new word."""
    closed = ""
    for closing in ("", '"', "'"):  # an open quote: the current word is typed inside it
        try:
            words = shlex.split(line + closing)
            closed = closing
            break
        except ValueError:
            continue
    else:
        words = line.split()
    if not words or (line[-1:].isspace() and not closed):
        words.append("")
    return words[:-1], words[-1]


def candidates(words: Sequence[str], current: str,
               names: Callable[[str | None], LiveNames] | None = None) -> list[Candidate] | None:
    """What may follow ``modelfleet WORDS...`` at ``current`` (the partial word); None: complete file names."""
    from modelfleet.cli import build_parser

    parser = build_parser()
    pending: argparse.Action | None = None
    positionals = 0
    config: str | None = None
    for word in words:
        if pending is not None:
            config = word if pending.dest == "config" else config
            pending = None
            continue
        if word.startswith("-") and word != "-":
            option, eq, value = word.partition("=")
            action = parser._option_string_actions.get(option)
            if action is not None and action.nargs != 0:
                if eq:
                    config = value if action.dest == "config" else config
                else:
                    pending = action
            continue
        sub = _subcommands(parser)
        if sub is not None and word in sub.choices:
            parser = sub.choices[word]
            positionals = 0
            continue
        positionals += 1
    lookup = _Lazy(names, config)
    if pending is not None:
        return _values(pending, parser, current, "", lookup)
    if current.startswith("-"):
        option, eq, value = current.partition("=")
        action = parser._option_string_actions.get(option)
        if eq and action is not None and action.nargs != 0:
            return _values(action, parser, value, option + "=", lookup)
        return _options(parser, current)
    sub = _subcommands(parser)
    if sub is not None:
        if positionals:  # a word that is no sub-command: nothing valid can follow
            return []
        helps = {a.dest: a.help or "" for a in sub._choices_actions}
        return [Candidate(name, helps.get(name, "")) for name in sub.choices
                if name.startswith(current) and name in helps]
    slots = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    if positionals < len(slots):
        return _values(slots[positionals], parser, current, "", lookup)
    return []


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _options(parser: argparse.ArgumentParser, current: str) -> list[Candidate]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        for option in sorted(action.option_strings, key=lambda o: (not o.startswith("--"), o)):
            if option.startswith(current):
                out.append(Candidate(option, _help(parser, action)))
    return out


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    try:
        return parser._get_formatter()._expand_help(action).split(";")[0]
    except (TypeError, ValueError, KeyError):
        return action.help or ""


class _Lazy:
    """The live names, built on first use with the settings the command line names (``--config``)."""

    def __init__(self, factory: Callable[[str | None], LiveNames] | None, config: str | None) -> None:
        self._factory = factory or _live_names
        self._config = config
        self._names: LiveNames | None = None

    def __call__(self) -> LiveNames:
        if self._names is None:
            self._names = self._factory(self._config)
        return self._names


def _live_names(config: str | None) -> LiveNames:
    from pathlib import Path

    from modelfleet.core.config import load_settings
    from modelfleet.core.live_names import LiveNames

    return LiveNames(load_settings(config_file=Path(config) if config else None))


def _values(action: argparse.Action, parser: argparse.ArgumentParser, current: str, prefix: str,
            names: _Lazy) -> list[Candidate] | None:
    """Values for ``action`` that start with ``current``, each prefixed with ``prefix`` (``--limit=``)."""
    dest = action.dest
    if action.choices is not None:
        values = [str(c) for c in action.choices]
    elif dest in _FILE_DESTS or action.metavar == "FILE":
        return None if not prefix else []
    elif dest == "limit":
        return [Candidate(prefix + v) for v in _limit_values(current, names)]
    elif dest == "ref":
        values = names().refs()
    elif dest == "model":
        values = names().models() + (names().refs() if parser.prog.endswith("describe model") else [])
    elif dest == "node":
        values = names().nodes()
    elif dest in ("environment", "env"):
        values = names().environments()
    elif dest == "alias":
        values = names().aliases()
    else:
        return []
    return [Candidate(prefix + v) for v in values if v.startswith(current)]


def _limit_values(current: str, names: _Lazy) -> list[str]:
    """Ansible ``--limit`` terms: nodes, groups and environments, after a comma, ``!`` or ``&``."""
    head, sep, term = current.rpartition(",")
    head = head + sep
    mark = term[:1] if term[:1] in ("!", "&") else ""
    term = term[len(mark):]
    given = {t.lstrip("!&") for t in head.split(",")}
    pool = dict.fromkeys([*names().environments(), *names().groups(), *names().nodes()])
    return [f"{head}{mark}{v}" for v in pool if v.startswith(term) and v not in given]
