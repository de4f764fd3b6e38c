"""Shared helpers for the registry and demo tests: settings for a project folder, and one seeded registry per
test session (seeding costs seconds, so it happens once and the folder is removed at exit)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from modelfleet.core.config import Settings, load_settings

_SEEDED: dict[str, Any] = {}
SEED_ROWS = 6_000  # fewer loans than the real demo: same shape, faster


def make_settings(project: Path, **env: str) -> Settings:
    """Settings rooted in ``project`` (with an empty modelfleet.toml), ignoring the caller's environment."""
    project.mkdir(parents=True, exist_ok=True)
    config = project / "modelfleet.toml"
    if not config.exists():
        config.write_text("# test project\n", encoding="utf-8")
    return load_settings(config_file=config, env=dict(env), cwd=project)


def seeded_project() -> tuple[Path, Any]:
    """A project folder whose embedded registry holds the seeded demo, and the first seed's result."""
    if not _SEEDED:
        from modelfleet.demo.seed import seed

        root = Path(tempfile.mkdtemp(prefix="mf-seeded-"))
        atexit.register(shutil.rmtree, root, True)
        project = root / "project"
        result = seed(make_settings(project), rows=SEED_ROWS)
        _SEEDED["project"] = project
        _SEEDED["result"] = result
    return _SEEDED["project"], _SEEDED["result"]


def record_connects(monkeypatch: Any) -> list[tuple[tuple[str, int], float | None]]:
    """Record every ``socket.create_connection`` (address, timeout) the code under test makes, then make it.

    The registry's reachability check connects once with ``registry.timeout_s`` and, when that fails, reports
    the server unreachable without retrying: tests assert that behaviour on this list, not on a stopwatch.
    """
    import socket

    calls: list[tuple[tuple[str, int], float | None]] = []
    real = socket.create_connection

    def spy(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT, *args: Any,
            **kwargs: Any) -> socket.socket:
        calls.append((address, timeout if isinstance(timeout, (int, float)) else None))
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    return calls
