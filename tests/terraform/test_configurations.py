"""Every module and environment under terraform/: fmt -check, validate, and the modules' `terraform test` files
(mock_provider "aws": no credentials, no API calls; the provider schema from the local mirror)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.runners.terraform_engine import Engine, flag
from tests.terraform.tfcli import TERRAFORM, default_engine, engines, require_aws_provider, run

CONFIGS = sorted([*(TERRAFORM / "modules").iterdir(), *(TERRAFORM / "envs").iterdir()])
TESTED = [c for c in CONFIGS if (c / "tests").is_dir()]


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("engine", engines(), ids=lambda e: e.kind)
def test_fmt_is_clean(engine: Engine, tmp_path: Path) -> None:
    proc = run(engine, TERRAFORM, tmp_path, "fmt", "-recursive", "-diff", check=flag())
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_validates(config: Path, tmp_path: Path) -> None:
    if config.name != "local":
        require_aws_provider()
    engine = default_engine()
    init = run(engine, config, tmp_path, "init", backend=False, input=False, no_color=flag())
    assert init.returncode == 0, init.stdout + init.stderr
    proc = run(engine, config, tmp_path, "validate", no_color=flag())
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("config", TESTED, ids=_id)
def test_terraform_test_passes(config: Path, tmp_path: Path) -> None:
    require_aws_provider()
    engine = default_engine()
    init = run(engine, config, tmp_path, "init", backend=False, input=False, no_color=flag())
    assert init.returncode == 0, init.stdout + init.stderr
    proc = run(engine, config, tmp_path, "test", no_color=flag())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout and "Success!" in proc.stdout


def test_the_module_tests_can_fail(tmp_path: Path) -> None:
    """The assertions bite: a copy of edge_node with IMDSv1 allowed and an unencrypted root fails its tests."""
    require_aws_provider()
    import shutil

    copy = tmp_path / "modules" / "edge_node"
    shutil.copytree(TERRAFORM / "modules" / "edge_node", copy, ignore=shutil.ignore_patterns(".terraform*"))
    main = copy / "main.tf"
    text = main.read_text()
    weakened = text.replace('http_tokens                 = "required"', 'http_tokens                 = "optional"')
    assert weakened != text
    main.write_text(weakened.replace("encrypted             = true", "encrypted             = false"))
    engine = default_engine()
    assert run(engine, copy, tmp_path / "data", "init", backend=False, input=False).returncode == 0
    proc = run(engine, copy, tmp_path / "data", "test", "-filter=tests/cpu.tftest.hcl", no_color=flag())
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "IMDSv2 must be required" in out and "every root volume must be encrypted" in out
