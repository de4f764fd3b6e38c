"""``python -m bench``: run every benchmark module in bench/ that has a ``main()``, one after the other."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))
    worst = 0
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        run = getattr(module, "main", None)
        if not callable(run):
            continue
        print(f"== bench.{info.name}", flush=True)
        worst = max(worst, int(run() or 0))
    return worst


if __name__ == "__main__":
    sys.exit(main())
