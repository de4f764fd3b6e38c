"""[console.keys] from modelfleet.toml reaches the console; an unknown binding id is a clear exit-2 error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet.console.app import ModelfleetApp
from modelfleet.console.screens.fleet import FleetScreen
from modelfleet.console.screens.ledger import LedgerScreen
from modelfleet.console.screens.models import ModelsScreen
from modelfleet.console.widgets.command_bar import CommandBar
from modelfleet.core.config import load_settings
from tests.conftest import REPO_ROOT
from tests.console.conftest import SIZE, settle
from tests.console.fakes import FakeServices


def _settings(tmp_path: Path, keys_toml: str) -> object:
    (tmp_path / "modelfleet.toml").write_text(f"[console.keys]\n{keys_toml}\n", encoding="utf-8")
    return load_settings(env={}, cwd=tmp_path)


@pytest.mark.anyio
async def test_keys_from_modelfleet_toml_remap_the_console(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 'fleet = "f2"\nmodels = "m"\ncommand = "semicolon"')
    assert settings.console.keys == {"fleet": "f2", "models": "m", "command": "semicolon"}  # type: ignore[attr-defined]
    services = FakeServices()
    services.settings = settings  # type: ignore[attr-defined]
    app = ModelfleetApp(services=services, refresh_s=0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("2")  # the old key does nothing any more
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("f2")
        await settle(pilot)
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("semicolon")  # the remapped command line
        await pilot.pause()
        bar = app.screen.query_one(CommandBar)
        assert bar.has_class("-open") and app.focused is bar
        await pilot.press(*"ledger", "enter")
        await settle(pilot)
        assert isinstance(app.screen, LedgerScreen)


def test_unknown_binding_id_is_a_config_error(tmp_path: Path) -> None:
    from modelfleet.core.errors import ConfigError

    settings = _settings(tmp_path, 'flet = "x"')
    services = FakeServices()
    services.settings = settings  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unknown action 'flet'") as info:
        ModelfleetApp(services=services, refresh_s=0)
    assert "fleet" in (info.value.hint or "")


@pytest.mark.parametrize("how", ["toml", "env"])
def test_unknown_binding_id_exits_2_through_the_cli(tmp_path: Path, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    env["PYTHONPATH"] = str(REPO_ROOT / "tui")
    if how == "toml":
        (tmp_path / "modelfleet.toml").write_text('[console.keys]\nflet = "x"\n', encoding="utf-8")
    else:
        env["MODELFLEET_CONSOLE_KEYS"] = "fleet=f2;flet=x"
    proc = subprocess.run([sys.executable, "-m", "modelfleet.cli"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "unknown action 'flet'" in proc.stderr and "fix: use one of: command, models, fleet" in proc.stderr
    assert "Traceback" not in proc.stderr
