"""The headless parts the console relies on never import Textual; the console imports only through them."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=REPO_ROOT).stdout
    return {m.split(".")[0] for m in out.split()}


def test_importing_modelfleet_core_never_imports_textual() -> None:
    import pkgutil

    import modelfleet.core

    names = [f"modelfleet.core.{m.name}" for m in pkgutil.iter_modules(modelfleet.core.__path__)]
    assert "modelfleet.core.fleet_status" in names
    assert "textual" not in _loaded("\n".join(f"import {n}" for n in names))


def test_console_data_layer_is_headless() -> None:
    loaded = _loaded("import modelfleet.console.services, modelfleet.runners.runstate, modelfleet.core.fleet_status")
    assert "textual" not in loaded


def test_console_holds_no_network_code() -> None:
    """httpx is used by core.fleet_status only; the console package never imports it directly."""
    from pathlib import Path

    console = Path(REPO_ROOT, "tui", "modelfleet", "console")
    offenders = [p.name for p in console.rglob("*.py") if "import httpx" in p.read_text() or "socket" in p.read_text()]
    assert offenders == []
