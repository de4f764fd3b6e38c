"""The headless core must never pull in Textual, and `modelfleet --help` must not import heavy libraries."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

HEADLESS = [
    "modelfleet.core.config",
    "modelfleet.core.errors",
]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT,
    ).stdout
    return set(out.split())


def test_core_never_imports_textual() -> None:
    import pkgutil

    import modelfleet.core

    names = [f"modelfleet.core.{m.name}" for m in pkgutil.iter_modules(modelfleet.core.__path__)]
    assert set(HEADLESS) <= set(names)
    loaded = _modules_after("\n".join(f"import {n}" for n in names))
    assert not {m for m in loaded if m == "textual" or m.startswith("textual.")}


def test_cli_help_imports_no_heavy_library() -> None:
    loaded = _modules_after("import modelfleet.cli as c; c.build_parser()")
    heavy = {"mlflow", "textual", "ansible_runner", "sklearn", "pandas", "sqlalchemy", "boto3", "scipy"}
    assert not heavy & {m.split(".")[0] for m in loaded}
