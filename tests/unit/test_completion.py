"""Shell completion, in real interactive bash and zsh (tmux): TAB completes commands, options, model references
from the embedded registry, node names and --limit terms from the inventory; the ``__complete`` path imports no
heavy library and stays silent on stderr.

The registry is the session's seeded demo registry (tests/unit/registry_support.py); the inventory a small
hand-written one. No fleet is needed: completion reads names, it never asks an agent.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.test_tmux import Tmux, tmux_session
from tests.unit.cli_support import MODELFLEET, clean_env, run, write_inventory
from tests.unit.registry_support import seeded_project

NODES = {"edge-cpu-01": ("cpu", "127.0.0.1"), "edge-cpu-02": ("cpu", "127.0.0.2"), "edge-arm-01": ("arm", "127.0.0.3")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = seeded_project()[0]  # credit-risk 1-3, champion -> 2, challenger -> 3
    inventory = write_inventory(tmp_path_factory.mktemp("inv") / "inventory.yml", NODES, agent_port=8080)
    return folder, {"MODELFLEET_FLEET_INVENTORY": str(inventory)}


def _complete(project: tuple[Path, dict[str, str]], line: str) -> list[str]:
    folder, env = project
    proc = run(folder, "__complete", "bash", " \t\n\"'@><=;|&(:", line, **env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("modelfleet de", ["demo", "deploy", "describe"]),
        ("modelfleet describe ", ["node", "model"]),
        # bash replaces the word from its last word-break character on ("@" stays in the word, "=" does not)
        ("modelfleet deploy credit-risk@ch", ["@challenger", "@champion"]),
        ("modelfleet deploy cr", ["credit-risk@challenger", "credit-risk@champion", "credit-risk@latest",
                                  "credit-risk/3", "credit-risk/2", "credit-risk/1"]),
        ("modelfleet rollback ", ["credit-risk"]),
        ("modelfleet health --model c", ["credit-risk"]),
        ("modelfleet describe node edge-c", ["edge-cpu-01", "edge-cpu-02"]),
        ("modelfleet deploy x --limit edge_", ["edge_arm", "edge_cpu", "edge_gpu"]),
        ("modelfleet deploy x --limit st", ["staging"]),
        ("modelfleet deploy x --limit edge-cpu-01,!edge-c", ["edge-cpu-01,!edge-cpu-02"]),
        ("modelfleet deploy x --limit=edge-a", ["edge-arm-01"]),
        ("modelfleet deploy x --max", ["--max-fail"]),
        ("modelfleet sim status --", ["--help", "--json", "--watch", "--interval"]),
        ("modelfleet completion ", ["bash", "zsh"]),
        ("modelfleet deploy x -i ", [":files"]),
        ("modelfleet nosuch ", []),
    ],
)
def test_candidates(project: tuple[Path, dict[str, str]], line: str, expected: list[str]) -> None:
    assert _complete(project, line) == expected


def test_complete_path_imports_nothing_heavy(project: tuple[Path, dict[str, str]]) -> None:
    folder, env = project
    code = ("import sys; from modelfleet.cli import main; main(['__complete', 'bash', '@=:', "
            "'modelfleet deploy credit-risk@ch']); main(['__complete', 'bash', '@=:', 'modelfleet describe node e']);"
            "print(' '.join(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, env=clean_env(**env), capture_output=True,
                          text=True, timeout=60, check=True)
    out = proc.stdout.splitlines()
    assert out[:2] == ["@challenger", "@champion"] and "edge-arm-01" in out
    loaded = {m.split(".")[0] for m in out[-1].split()}
    assert not loaded & {"mlflow", "httpx", "sqlalchemy", "textual", "pandas", "numpy", "ansible_runner"}


def _shell(kind: str, folder: Path, env: dict[str, str], tmp: Path) -> Iterator[Tmux]:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in
                       {**env, "PATH": f"{Path(MODELFLEET).parent}:/usr/bin:/bin"}.items())
    if kind == "bash":
        rc = tmp / "bashrc"
        rc.write_text("PS1='$ '\neval \"$(modelfleet completion bash)\"\necho READY\n", encoding="utf-8")
        start = f"bash --noprofile --rcfile {rc} -i"
    else:
        (tmp / ".zshrc").write_text("PS1='$ '\nautoload -U compinit && compinit -u\n"
                                    "eval \"$(modelfleet completion zsh)\"\necho READY\n", encoding="utf-8")
        start = f"env ZDOTDIR={tmp} zsh -i"
    with tmux_session(f"mf-complete-{kind}", f"cd {folder} && export {exports} && exec {start}") as t:
        t.wait_for("READY")
        yield t


def _last(screen: str) -> str:
    return screen.rstrip().splitlines()[-1]


def _tab(t: Tmux, typed: str, *, twice: bool = False) -> str:
    """Type ``typed``, press TAB (twice: the list), return the screen once it changed; then clear the line."""
    t.keys("-l", typed)
    t.wait_until(lambda s: _last(s) == f"$ {typed}", "the typed line")
    t.keys("Tab", *(["Tab"] if twice else []))
    try:
        screen = t.wait_until(lambda s: _last(s) != f"$ {typed}", "completion", 15)
    except AssertionError:
        screen = t.screen()
    t.keys("C-u", "C-l")
    t.wait_until(lambda s: _last(s) == "$", "a clean prompt")
    return screen


@pytest.mark.parametrize("kind", ["bash", "zsh"])
def test_tab_in_a_real_shell(project: tuple[Path, dict[str, str]], kind: str, tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is not installed; fix: sudo apt-get install -y tmux (make test does it)"
    assert shutil.which(kind), f"{kind} is not installed; fix: sudo apt-get install -y {kind} (make test does it)"
    folder, env = project
    for t in _shell(kind, folder, env, tmp_path):
        assert _last(_tab(t, "modelfleet descr")) == "$ modelfleet describe"
        assert _last(_tab(t, "modelfleet describe node edge-a")) == "$ modelfleet describe node edge-arm-01"
        assert _last(_tab(t, "modelfleet deploy credit-risk@champ")) == "$ modelfleet deploy credit-risk@champion"
        assert _last(_tab(t, "modelfleet deploy x --limit edge-cpu-01,edge-a")) == \
            "$ modelfleet deploy x --limit edge-cpu-01,edge-arm-01"
        listed = _tab(t, "modelfleet describe node edge-", twice=True)
        assert all(n in listed for n in NODES), listed


def test_a_dead_tracking_server_completes_nothing_quietly(tmp_path: Path) -> None:
    from tests.unit.cli_support import closed_port

    env = {"MODELFLEET_REGISTRY_TRACKING_URI": f"http://127.0.0.1:{closed_port()}",
           "MODELFLEET_PATHS_STATE_DIR": str(tmp_path / "state")}
    for _ in range(2):  # the second TAB reads the kept failure instead of asking again
        proc = run(tmp_path, "__complete", "bash", "=:", "modelfleet deploy c", **env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert '"entries": []' in (tmp_path / "state" / "completion-cache.json").read_text(encoding="utf-8")
