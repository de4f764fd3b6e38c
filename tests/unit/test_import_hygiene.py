"""Import hygiene: the layers of docs/architecture.md hold (import-linter), the headless core loads no Textual at
run time, and `modelfleet --help` imports nothing heavy.

The contracts live in pyproject.toml (``[tool.importlinter]``) and also run in ``make check``; this test runs the
same command so that ``make test`` alone catches a broken layer, and proves each contract can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT,
    ).stdout
    return set(out.split())


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(root / "tui"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], capture_output=True, text=True, cwd=root, env=env,
                          timeout=300, check=False)


def test_layer_contracts_hold() -> None:
    done = _lint_imports(REPO_ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_layer_violation_fails_the_contracts(tmp_path: Path) -> None:
    """A copy of the package where core imports the console and the agent imports mlflow: both contracts break."""
    shutil.copytree(REPO_ROOT / "tui", tmp_path / "tui", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "tui" / "modelfleet" / "core" / "latency.py").open("a") as fh:
        fh.write("\nimport modelfleet.console.fmt  # noqa\n")
    with (tmp_path / "tui" / "modelfleet" / "agent" / "scoring.py").open("a") as fh:
        fh.write("\nimport mlflow.pyfunc  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout[-4000:]
    assert "core is headless: no front end, no runner, no Textual BROKEN" in done.stdout
    assert "modelfleet.core.latency -> modelfleet.console.fmt" in done.stdout
    assert "modelfleet.agent.scoring -> mlflow" in done.stdout


def test_core_never_imports_textual_at_run_time() -> None:
    """What the static contracts cannot see: a dynamic import, or a third-party library pulling Textual in."""
    import pkgutil

    import modelfleet.core

    names = [f"modelfleet.core.{m.name}" for m in pkgutil.iter_modules(modelfleet.core.__path__)]
    assert {"modelfleet.core.config", "modelfleet.core.errors", "modelfleet.core.fleet_status"} <= set(names)
    loaded = _modules_after("\n".join(f"import {n}" for n in names) + "\nimport modelfleet.console.services")
    assert not {m for m in loaded if m == "textual" or m.startswith("textual.")}


def test_cli_help_imports_no_heavy_library() -> None:
    loaded = _modules_after("import modelfleet.cli as c; c.build_parser()")
    heavy = {"mlflow", "textual", "ansible_runner", "sklearn", "pandas", "sqlalchemy", "boto3", "scipy"}
    assert not heavy & {m.split(".")[0] for m in loaded}
