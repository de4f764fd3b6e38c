"""``modelfleet-agent prime``: import, and so byte-compile, what the agent loads, once, at provisioning.

A fresh venv installed without byte-compiling (the edge_runtime role installs with ``--no-compile``: compiling
all of numpy, scipy, pandas and scikit-learn costs minutes on a small node) leaves the agent's first start to
compile every module it imports: ~7.5 s of CPU instead of ~2.3 s here. On a real node the agent runs as its own
user and cannot write ``__pycache__`` into the venv at all, so it would compile at every start. Priming as the
venv's owner writes the bytecode of exactly what the agent and common scikit-learn models import.

Prints one JSON object: modules imported, how many were compiled now (0 on a second run: the role reports
``changed`` from it), the ones that could not be imported (optional accelerators may be absent on some
architectures) and the seconds spent. Exit 0, or 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence

# The agent itself, the node-side release verifier, the server stack, and what a scikit-learn pipeline of
# preprocessing + a linear model (the demo's) loads. Other model families' modules (sklearn.ensemble, skops, ...)
# are compiled at the agent's first start unless the role is told to prime them (edge_runtime_prime_modules).
PRIME_MODULES: tuple[str, ...] = (
    "modelfleet.agent.main",
    "modelfleet.agent.app",
    "modelfleet.agent.release",
    "modelfleet.release_verify",
    "modelfleet.core.bundle",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.loops.uvloop",
    "numpy",
    "pandas",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.linear_model",
    "joblib",
    "cloudpickle",
)


def _compiled_since(started: float) -> int:
    count = 0
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        try:
            if os.stat(importlib.util.cache_from_source(path)).st_mtime >= started:
                count += 1
        except (OSError, NotImplementedError, ValueError):
            continue
    return count


def prime(modules: Sequence[str]) -> dict[str, object]:
    started = time.time() - 1.0  # a cache file written in this second counts even on coarse-mtime filesystems
    t0 = time.perf_counter()
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional part (uvloop, skops) may be missing on an architecture
            missing.append(f"{name}: {type(exc).__name__}: {exc}")
    return {"modules": len(sys.modules), "compiled": _compiled_since(started), "missing": missing,
            "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="modelfleet-agent prime", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="more modules to import (your models' libraries)")
    args = parser.parse_args(list(argv))
    print(json.dumps(prime((*PRIME_MODULES, *args.modules))))
    return 0
