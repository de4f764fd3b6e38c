"""Configuration: embedded defaults, the project file, MODELFLEET_* overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.core.config import load_settings, parse_waves
from modelfleet.core.errors import ConfigError


def test_embedded_defaults_resolve_under_project(isolated_env: Path) -> None:
    s = load_settings(env={}, cwd=isolated_env)
    assert s.source == "embedded defaults"
    assert s.state_dir == isolated_env / ".modelfleet"
    assert s.registry.tracking_uri == f"sqlite:///{isolated_env}/.modelfleet/mlflow.db"
    assert s.effective_registry_uri == s.registry.tracking_uri
    assert s.ledger.url == f"sqlite:///{isolated_env}/.modelfleet/ledger.db"
    assert s.fleet.agent_port == 8080


def test_file_is_found_upwards_and_paths_resolve_against_it(isolated_env: Path) -> None:
    cfg = '[paths]\nstate_dir = "state"\n[fleet]\nagent_port = 9090\n'
    (isolated_env / "modelfleet.toml").write_text(cfg)
    sub = isolated_env / "a" / "b"
    sub.mkdir(parents=True)
    s = load_settings(env={}, cwd=sub)
    assert s.state_dir == isolated_env / "state"
    assert s.fleet.agent_port == 9090
    assert s.source.endswith("modelfleet.toml")


def test_environment_overrides_the_file(isolated_env: Path) -> None:
    (isolated_env / "modelfleet.toml").write_text("[fleet]\nagent_port = 9090\n")
    s = load_settings(
        env={"MODELFLEET_FLEET_AGENT_PORT": "9191", "MODELFLEET_CONSOLE_READ_ONLY": "yes"}, cwd=isolated_env
    )
    assert s.fleet.agent_port == 9191
    assert s.console.read_only is True


def test_repository_config_file_matches_embedded_defaults() -> None:
    """The shipped modelfleet.toml documents the defaults; it must not drift from them."""
    from dataclasses import asdict

    from tests.conftest import REPO_ROOT

    shipped = load_settings(config_file=REPO_ROOT / "modelfleet.toml", env={})

    from modelfleet.core import config as c

    for name, cls in c.SECTIONS.items():
        default = c._resolve_paths(cls(), REPO_ROOT)
        assert asdict(getattr(shipped, name)) == asdict(default), name


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[fleet]\nagent_port = 'eighty'\n", "fleet.agent_port = 'eighty'"),
        ("[fleet]\nagent_port = 70000\n", "TCP port"),
        ("[registry]\ntimeout_s = -1\n", "greater than 0"),
        ("[registry]\ntimeout_s = nan\n", "finite"),
        ("[console]\nread_only = 3\n", "true or false"),
        ("[fleet]\nagentport = 1\n", "unknown key fleet.agentport"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("fleet = 3\n", "[fleet] must be a table"),
        ("[fleet\n", "not valid TOML"),
        ("[console]\nslo_p50_ms = 200.0\n", "slo_p50_ms <= slo_p95_ms"),
        ("[deploy]\nwaves = '1,0%'\n", "wave '0%'"),
        ("[deploy]\nmax_fail_percentage = 101\n", "between 0 and 100"),
        ("[sim]\naddress_prefix = '10.0.0'\n", "127.0.0.0/8"),
    ],
)
def test_bad_file_values_name_key_and_file(isolated_env: Path, text: str, fragment: str) -> None:
    cfg = isolated_env / "modelfleet.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, cwd=isolated_env)
    assert fragment in str(info.value)
    assert str(cfg) in str(info.value)


def test_bad_environment_value_names_the_variable(isolated_env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"MODELFLEET_FLEET_AGENT_PORT": "x"}, cwd=isolated_env)
    assert "MODELFLEET_FLEET_AGENT_PORT" in str(info.value)
    assert info.value.hint and "unset" in info.value.hint


def test_missing_named_config_file(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_CONFIG", str(isolated_env / "missing.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings(cwd=isolated_env)


def test_parse_waves() -> None:
    assert parse_waves("1, 25%,100%") == [1, "25%", "100%"]
    with pytest.raises(ConfigError):
        parse_waves("1,abc")


def test_cli_turns_config_error_into_one_line_and_exit_2(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelfleet.cli import main

    (isolated_env / "modelfleet.toml").write_text("[fleet]\nagent_port = 'x'\n")
    code = main(["sim", "status"]) if _has_command("sim") else main([])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("modelfleet: ")
    assert "Traceback" not in err
    assert "fleet.agent_port" in err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from modelfleet.cli import main

    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _has_command(name: str) -> bool:
    from modelfleet.cli import build_parser

    return name in build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def test_console_key_overrides_from_file_and_env(isolated_env: Path) -> None:
    (isolated_env / "modelfleet.toml").write_text('[console.keys]\nfleet = "f2"\n')
    assert load_settings(env={}, cwd=isolated_env).console.keys == {"fleet": "f2"}
    s = load_settings(env={"MODELFLEET_CONSOLE_KEYS": "filter=slash,ctrl+f; fleet=f3"}, cwd=isolated_env)
    assert s.console.keys == {"filter": "slash,ctrl+f", "fleet": "f3"}


@pytest.mark.parametrize(
    "text", ["[console]\nkeys = 3\n", "[console.keys]\nfleet = 2\n", '[console.keys]\nfleet = ""\n']
)
def test_bad_console_keys(isolated_env: Path, text: str) -> None:
    (isolated_env / "modelfleet.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"console\.keys"):
        load_settings(env={}, cwd=isolated_env)
