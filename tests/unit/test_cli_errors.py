"""Errors name the source really at fault, through the real ``modelfleet`` executable (issue 19, CLI part).

Each case runs the installed command in an empty project folder with no MODELFLEET_* variables but its own:
a bad environment value is blamed on the variable (not on modelfleet.toml), an unknown ``[console.keys]`` id is
refused by every command naming the file or variable and listing the valid ids, a misspelled variable is a
warning with "did you mean", and argparse's own errors look like every other error (one line, ``fix:``, exit 2,
no usage banner).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from modelfleet.core.config import OTHER_VARIABLES, config_variables
from tests.conftest import REPO_ROOT
from tests.unit.cli_support import run


def assert_one_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> list[str]:
    """Exit 2, stderr = ``modelfleet: ...`` and ``  fix: ...``, nothing on stdout, no traceback or usage."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("modelfleet: ") and lines[1].startswith("  fix: "), proc.stderr
    assert proc.stdout == ""
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    return lines


def test_a_bad_variable_value_is_blamed_on_the_variable(tmp_path: Path) -> None:
    (tmp_path / "modelfleet.toml").write_text("[deploy]\nmax_fail_percentage = 10\n", encoding="utf-8")
    message, fix = assert_one_error(run(tmp_path, "sim", "status", MODELFLEET_DEPLOY_WAVES="garbage"),
                                    "wave 'garbage'")
    assert message.startswith("modelfleet: MODELFLEET_DEPLOY_WAVES: deploy.waves: ")
    assert "modelfleet.toml" not in message and "embedded defaults" not in message
    assert fix == '  fix: fix or unset MODELFLEET_DEPLOY_WAVES; waves look like "1,25%,100%"'

    (tmp_path / "modelfleet.toml").write_text('[deploy]\nwaves = "1,0"\n', encoding="utf-8")
    message, fix = assert_one_error(run(tmp_path, "sim", "status"), "wave '0'")
    assert message.startswith(f"modelfleet: {tmp_path / 'modelfleet.toml'}: deploy.waves: ")
    assert fix.startswith(f"  fix: fix deploy.waves in {tmp_path / 'modelfleet.toml'}")


def test_slo_order_names_the_variable_that_broke_it(tmp_path: Path) -> None:
    message, fix = assert_one_error(run(tmp_path, "sim", "status", MODELFLEET_CONSOLE_SLO_P95_MS="500"),
                                    "slo_p50_ms <= slo_p95_ms <= slo_p99_ms")
    assert message.startswith("modelfleet: MODELFLEET_CONSOLE_SLO_P95_MS: ")
    assert "unset MODELFLEET_CONSOLE_SLO_P95_MS" in fix


@pytest.mark.parametrize("how", ["file", "variable"])
def test_unknown_console_key_is_refused_by_every_command(tmp_path: Path, how: str) -> None:
    env = {}
    if how == "file":
        (tmp_path / "modelfleet.toml").write_text('[console.keys]\nflet = "f2"\n', encoding="utf-8")
        source = str(tmp_path / "modelfleet.toml")
    else:
        env["MODELFLEET_CONSOLE_KEYS"] = "fleet=f2;flet=f3"
        source = "MODELFLEET_CONSOLE_KEYS"
    for command in (["sim", "status"], ["ledger", "verify"]):
        message, fix = assert_one_error(run(tmp_path, *command, **env), "unknown action 'flet'")
        assert message.startswith(f"modelfleet: {source}: [console.keys]")
        assert "fix: use one of: command, models, fleet, runs, ledger" in fix
    assert not (tmp_path / ".modelfleet").exists()  # refused before anything was created


def test_a_misspelled_variable_is_a_warning_with_the_right_name(tmp_path: Path) -> None:
    proc = run(tmp_path, "completion", "bash", MODELFLEET_FLEET_AGNT_PORT="9090")  # any command that exits 0
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "modelfleet: warning: MODELFLEET_FLEET_AGNT_PORT is not a modelfleet variable and is ignored; "
        "did you mean MODELFLEET_FLEET_AGENT_PORT?",
        "  fix: rename it to MODELFLEET_FLEET_AGENT_PORT, or unset MODELFLEET_FLEET_AGNT_PORT",
    ]
    assert "complete -F _modelfleet modelfleet" in proc.stdout  # the command still ran
    proc = run(tmp_path, "completion", "bash", MODELFLEET_SOMETHING_ELSE_ENTIRELY="1")
    assert "MODELFLEET_SOMETHING_ELSE_ENTIRELY is not a modelfleet variable" in proc.stderr
    assert "did you mean" not in proc.stderr


def test_known_variables_that_are_not_config_keys_do_not_warn(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text("", encoding="utf-8")
    env = {name: "x" for name in OTHER_VARIABLES}
    env.update(MODELFLEET_CONFIG=str(tmp_path / "other.toml"), MODELFLEET_CONTROLLER_PID="1",
               MODELFLEET_LEDGER_URL=f"sqlite:///{tmp_path}/ledger.db", MODELFLEET_FLEET_AGENT_PORT="9090")
    proc = run(tmp_path, "completion", "bash", **env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_every_modelfleet_variable_the_tree_uses_is_known() -> None:
    """A new MODELFLEET_* variable must be a config key or listed in core.config.OTHER_VARIABLES, or every
    command would warn about it."""
    known = set(config_variables()) | set(OTHER_VARIABLES)
    used: dict[str, str] = {}
    for folder in ("tui", "plugins", "roles", "playbooks", "scripts", "molecule", "bench", "inventory", "terraform"):
        for path in (REPO_ROOT / folder).rglob("*"):
            generated = any(part.endswith(".egg-info") or part == "__pycache__" for part in path.parts)
            if path.is_file() and not generated and path.suffix in (".py", ".yml", ".yaml", ".sh", ".j2", ".cfg",
                                                                    ".toml", ".tf", ""):
                text = path.read_text(encoding="utf-8", errors="replace")
                for name in re.findall(r"\bMODELFLEET_[A-Z0-9_]*[A-Z0-9]\b", text):
                    used.setdefault(name, str(path.relative_to(REPO_ROOT)))
    for path in (REPO_ROOT / "Makefile", REPO_ROOT / "ansible.cfg"):
        for name in re.findall(r"\bMODELFLEET_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")):
            used.setdefault(name, path.name)
    # MODELFLEET_<SECTION>_<KEY> in prose is a pattern, not a variable
    unknown = {n: where for n, where in used.items() if n not in known and not n.endswith(("_SECTION", "_KEY"))}
    assert not unknown, f"add these to core.config.OTHER_VARIABLES (or make them config keys): {unknown}"


@pytest.mark.parametrize(
    ("args", "message", "fix"),
    [
        (["deploy", "credit-risk@champion", "--max-fail", "500"],
         "modelfleet: deploy: --max-fail: 500 must be between 0 and 100",
         "  fix: --max-fail PCT: failure budget: % of a wave that may fail before the rollout stops"),
        (["deploy", "credit-risk@champion", "--maxfail", "5"],
         "modelfleet: deploy: unrecognized arguments: --maxfail 5",
         "  fix: did you mean --max-fail? `modelfleet deploy --help` shows the arguments and examples"),
        (["depoly"], "modelfleet: COMMAND: invalid choice: 'depoly'", "  fix: did you mean deploy?"),
        (["sim"], "modelfleet: sim: the following arguments are required: ACTION",
         "  fix: give ACTION: one of up, down, status, kill, start, add, remove;"),
        (["registry", "versions", "credit-risk", "--limit", "0"],
         "modelfleet: registry versions: --limit: 0 must be 1 or more", "  fix: --limit N: show at most N versions"),
        (["sim", "status", "--interval", "0"], "modelfleet: sim status: --interval: 0 must be between",
         "  fix: --interval SECONDS: seconds between refreshes with --watch"),
    ],
)
def test_argparse_errors_are_one_line_with_a_fix(tmp_path: Path, args: list[str], message: str, fix: str) -> None:
    got_message, got_fix = assert_one_error(run(tmp_path, *args))
    assert got_message.startswith(message), got_message
    assert got_fix.startswith(fix), got_fix


def test_short_version_flag(tmp_path: Path) -> None:
    from modelfleet import __version__

    for flag in ("-V", "--version"):
        proc = run(tmp_path, flag)
        assert (proc.returncode, proc.stdout.strip()) == (0, f"modelfleet {__version__}"), proc.stderr
