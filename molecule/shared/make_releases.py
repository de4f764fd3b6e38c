"""Build signed releases 1 and 2 of credit-risk for molecule; writes <state_dir>/molecule-releases.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tui"), str(REPO)]

from tests.integration.test_playbooks import make_release  # noqa: E402

state = Path(os.environ["MODELFLEET_PATHS_STATE_DIR"])
work = state / "molecule-models"
work.mkdir(parents=True, exist_ok=True)
out = {}
for version in ("1", "2"):
    b = make_release(state, "credit-risk", version, work)
    out[version] = {"bundle": str(b.path), "version": b.manifest.version, "digest": b.manifest.digest,
                    "release": b.manifest.release_name}
(state / "molecule-releases.json").write_text(json.dumps(out, indent=2) + "\n")
