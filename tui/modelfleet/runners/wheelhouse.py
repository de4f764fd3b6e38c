"""Build the per-architecture wheelhouse that provisions the edge agent on nodes without internet access.

The controller runs this once per node architecture; the ``edge_runtime`` role pushes the folder to each node and
installs with ``pip install --no-index --find-links``. Layout of ``<out>/<arch>/``::

    modelfleet-<version>-py3-none-any.whl     the project itself, built with --no-deps (never its console deps)
    <dependency wheels>                       the agent's runtime dependencies, binary wheels for <arch>
    requirements.txt                          what the node installs (the runtime dependencies, by name)
    wheelhouse.json                           stamp: arch, python version, dependency list, source hash

Cross-building works: ``pip download --only-binary=:all: --platform <manylinux tag> --python-version 3.11`` fetches
aarch64 wheels on an x86_64 controller. A wheelhouse whose stamp matches the current sources is left untouched,
so repeated provisioning is a no-op (and the modelfleet wheel stays byte-identical: SOURCE_DATE_EPOCH is fixed).

Command line (exit 0 ok, 1 the build failed, 2 usage)::

    python -m modelfleet.runners.wheelhouse --arch aarch64 --out .modelfleet/wheelhouse

The simulated fleet's nodes share the controller's disk. For them ``--seed-venv PYTHON`` also keeps
``<out>/<arch>-seed-venv`` (beside the folder nodes receive, never inside it): one venv with the runtime
dependencies, installed from this wheelhouse by the same ``pip install --no-index`` a node runs. A simulated
node hard-links its venv's site-packages from it (0.1 s) instead of unpacking the same wheels again (10-30
CPU-seconds a node), then runs the role's pip task, which finds everything satisfied. Real nodes never get a
seed (the ``edge_runtime_venv_seed`` role variable is off).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# The agent's runtime dependencies. Never mlflow: bundles carry a plain pickled/joblib model.
AGENT_REQUIREMENTS: tuple[str, ...] = (
    "numpy>=1.26",
    "pandas>=2.0",
    "scipy>=1.11",
    "scikit-learn>=1.4",
    "joblib>=1.3",
    "prometheus-client>=0.20",
    "psutil>=5.9",
    "cryptography>=42",
    "pyyaml>=6.0",
    "uvicorn>=0.30",
    "uvloop>=0.19",
    "httptools>=0.6",
    "cloudpickle>=3.0",
    "skops>=0.10",
)

# manylinux tags pip may pick for each node architecture (newest first is not required; pip takes any listed).
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"),
    "aarch64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "armv7l": ("manylinux_2_31_armv7l", "manylinux_2_17_armv7l", "manylinux2014_armv7l", "linux_armv7l"),
}
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l"}
STAMP_NAME = "wheelhouse.json"
SEED_NAME = "seed-venv"
SEED_STAMP = ".modelfleet-seed.json"
AGENT_PARTS = ("agent", "core")  # package folders the node-side code imports
FIXED_EPOCH = "315532800"  # 1980-01-01: zip timestamps of the modelfleet wheel, so rebuilds are byte-identical
REPO_ROOT = Path(__file__).resolve().parents[3]


class WheelhouseError(Exception):
    """The wheelhouse could not be built; the message names the step and the fix."""


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    arch: str
    python_version: str
    built: bool  # False when an up-to-date wheelhouse was reused
    seed_built: bool = False  # True when the seed venv (--seed-venv) was (re)built

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "arch": self.arch, "python_version": self.python_version, "built": self.built,
                "seed_built": self.seed_built}


def normalise_arch(arch: str) -> str:
    arch = ARCH_ALIASES.get(arch, arch)
    if arch not in PLATFORM_TAGS:
        raise WheelhouseError(f"unsupported architecture {arch!r}; fix: use one of {', '.join(PLATFORM_TAGS)}")
    return arch


def pin_to_controller(requirements: Sequence[str]) -> list[str]:
    """``numpy>=1.26`` -> ``numpy==<the controller's numpy>``: nodes unpickle models with the versions that built
    them. A requirement the controller does not have installed keeps its range."""
    pinned = []
    for req in requirements:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pinned.append(req)
    return pinned


def source_hash(source: Path, requirements: Sequence[str]) -> str:
    """sha256 over what nodes run (the agent, core/, release_verify), pyproject.toml and the requirements.

    Console or CLI changes do not rebuild the wheelhouse, so they do not reinstall every node's agent."""
    digest = hashlib.sha256()
    pkg = source / "tui" / "modelfleet"
    files = [source / "pyproject.toml", pkg / "__init__.py", pkg / "release_verify.py"]
    files += [f for part in AGENT_PARTS for f in sorted((pkg / part).rglob("*"))]
    for path in files:
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        digest.update(str(path.relative_to(source)).encode())
        digest.update(path.read_bytes())
    digest.update("\n".join(requirements).encode())
    return digest.hexdigest()


def _run(cmd: list[str], step: str) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH=FIXED_EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise WheelhouseError(f"{step} failed (exit {proc.returncode}): {' | '.join(tail)}")


def build(
    out: Path,
    arch: str,
    python_version: str = "3.11",
    source: Path = REPO_ROOT,
    requirements: Sequence[str] | None = None,
    force: bool = False,
    seed_python: str | None = None,
) -> Wheelhouse:
    """Build (or reuse) ``out/<arch>``; returns where it is and whether anything was rebuilt.

    ``requirements`` default to the agent's runtime dependencies pinned to the controller's installed versions.
    ``seed_python``: also keep ``out/<arch>-seed-venv`` up to date, made with that interpreter (simulated fleet)."""
    arch = normalise_arch(arch)
    if requirements is None:
        requirements = pin_to_controller(AGENT_REQUIREMENTS)
    target = out / arch
    wanted = {
        "arch": arch,
        "python_version": python_version,
        "requirements": list(requirements),
        "source_hash": source_hash(source, requirements),
    }
    out.mkdir(parents=True, exist_ok=True)
    # One build per wheelhouse at a time (two provisions, or two test workers, on one controller): the second
    # waits, then finds the stamp up to date instead of replacing the folder while the first one's nodes read it.
    with (out / f".{arch}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = target / STAMP_NAME
        built = True
        if not force and stamp.is_file():
            with contextlib.suppress(ValueError):
                built = json.loads(stamp.read_text()) != wanted
        if built:
            _build_into(target, arch, python_version, source, requirements, wanted)
        seed_built = _seed_venv(target, seed_python, requirements) if seed_python else False
    return Wheelhouse(target, arch, python_version, built=built, seed_built=seed_built)


def _seed_venv(target: Path, python: str, requirements: Sequence[str]) -> bool:
    """Keep ``<target>-seed-venv`` holding ``requirements`` from the wheelhouse ``target``; True when (re)built.

    Built beside the final folder and renamed into place, so a node never links from a half-installed seed."""
    seed = target.parent / f"{target.name}-{SEED_NAME}"
    primed = _seed_prime_modules()
    # the prime script is in the stamp too: a seed primed by another script (or not at all) is built again
    script = hashlib.sha256(_PRIME_SCRIPT.encode()).hexdigest()[:12]
    wanted = {"python": python, "requirements": list(requirements), "primed": primed, "prime_script": script}
    try:
        if json.loads((seed / SEED_STAMP).read_text()) == wanted:
            return False
    except (OSError, ValueError):
        pass
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-{SEED_NAME}-", dir=target.parent) as tmp:
        staging = Path(tmp) / SEED_NAME
        _run([python, "-m", "venv", str(staging)], f"creating the seed venv with {python}")
        env_cmd = [
            str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-compile",
            "--find-links", str(target), *requirements,
        ]  # fmt: skip
        _run(env_cmd, "installing the runtime dependencies into the seed venv")
        # Nodes hard-link the bytecode too: written once here, instead of by every node's `modelfleet-agent prime`
        # (~2 CPU-s a node). A .pyc is checked against its source's mtime and size, which the links share.
        _run([str(staging / "bin" / "python"), "-c", _PRIME_SCRIPT, *primed], "byte-compiling the seed venv")
        (staging / SEED_STAMP).write_text(json.dumps(wanted, sort_keys=True) + "\n")
        if seed.exists():
            shutil.rmtree(seed)
        staging.rename(seed)
    return True


#: imports each module named on the command line (an optional one may be missing on an architecture)
_PRIME_SCRIPT = """
import importlib, sys
sys.dont_write_bytecode = False  # writing it is the point, whatever PYTHONDONTWRITEBYTECODE says
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
"""


def _seed_prime_modules() -> list[str]:
    """The third-party modules the agent's prime step imports (the seed holds no modelfleet)."""
    from modelfleet.agent.prime import PRIME_MODULES

    return [name for name in PRIME_MODULES if name.split(".")[0] != "modelfleet"]


@contextlib.contextmanager
def _source_build_lock(source: Path) -> Iterator[None]:
    """Hold the lock of ``source``'s wheel build. pip builds a source tree in place (its ``build/`` and
    ``*.egg-info`` folders), so two builds of one tree at the same time break each other ("Failed building wheel
    for modelfleet"), even into two wheelhouses or for two architectures, whose locks are separate."""
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"modelfleet-wheel-build-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_into(target: Path, arch: str, python_version: str, source: Path, requirements: Sequence[str],
                wanted: Mapping[str, object]) -> None:
    out = target.parent
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix=f".wheelhouse-{arch}-", dir=out) as tmp:
        staging = Path(tmp) / arch
        staging.mkdir()
        with _source_build_lock(source):
            _run(
                [py, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(staging),
                 str(source)],
                "building the modelfleet wheel",
            )
        platform_args = [arg for tag in PLATFORM_TAGS[arch] for arg in ("--platform", tag)]
        major_minor = python_version.replace(".", "")
        _run(
            [
                py, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *platform_args,
                "--python-version", python_version, "--implementation", "cp", "--abi", f"cp{major_minor}",
                "-d", str(staging), *requirements,
            ],
            f"downloading {arch} wheels for Python {python_version}",
        )  # fmt: skip
        (staging / "requirements.txt").write_text("".join(f"{req}\n" for req in requirements))
        (staging / STAMP_NAME).write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
        # Replace the old folder only once the new one is complete; keep byte-identical files where possible.
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet.runners.wheelhouse",
        description="Build the offline wheelhouse the edge_runtime role installs the agent from.",
    )
    parser.add_argument("--arch", action="append", required=True, help="node architecture (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="wheelhouse root; each arch goes to <out>/<arch>/")
    parser.add_argument("--python-version", default="3.11", help="the nodes' Python (default 3.11)")
    parser.add_argument("--source", type=Path, default=REPO_ROOT, help="the modelfleet source tree")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    parser.add_argument("--json", action="store_true", help="print one JSON object per arch")
    parser.add_argument(
        "--seed-venv", metavar="PYTHON", default=None,
        help="also keep <out>/<arch>-seed-venv made with PYTHON (simulated fleets: nodes hard-link it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        for arch in args.arch:
            result = build(args.out, arch, args.python_version, args.source, force=args.force,
                           seed_python=args.seed_venv)
            if args.json:
                print(json.dumps(result.to_json(), sort_keys=True))
            else:
                print(f"{result.arch}: {result.path} ({'built' if result.built else 'up to date'})")
    except WheelhouseError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1 if "failed" in str(exc) else 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
