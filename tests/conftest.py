"""Shared fixtures: every test runs against its own state directory, never the developer's .modelfleet/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.core.config import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder with no modelfleet.toml and no MODELFLEET_* variables; cwd is that folder."""
    import os

    for key in list(os.environ):
        if key.startswith("MODELFLEET_"):
            monkeypatch.delenv(key)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    yield project


@pytest.fixture
def settings(isolated_env: Path) -> Settings:
    """Embedded-default settings rooted in a fresh temporary project folder."""
    return load_settings(cwd=isolated_env)
